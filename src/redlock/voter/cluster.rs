//! A Redis Cluster as one RedLock voter.
//!
//! A lock key's vote in this voter is cast by the master (shard) that serves
//! the key's slot. Each shard is a [`Master`] of its own — a pipelined,
//! reconnecting connection with its owed releases and its restart guard — so
//! everything a plain master does holds per shard; the voter routes.
//!
//! - **Routing.** A request goes to the shard of its first key's slot (a
//!   multi-key request needs its keys in one slot, as in any cluster). A
//!   `MOVED` updates the slot map at once and sends the request on; `ASK`
//!   sends it to the migration's target after `ASKING`; `TRYAGAIN` retries
//!   shortly; past [`MAX_HOPS`] the vote is an error (unknown). The topology is
//!   read from the shards, then the seed, every [`REFRESH_EVERY`] and soon
//!   after a redirection or a failed shard.
//! - **Migrations need no quarantine**: `MIGRATE` moves a lock key with its
//!   TTL. Releases owed on a shard whose key moved go where it lives now.
//! - **A failover is a restart.** A replica promoted to master may have lost
//!   grants its master had not replicated: a shard that takes over slots and
//!   was seen as a replica is quarantined like a restarted master (until the
//!   longest TTL has passed), and a shard's own restart (a new `run_id`) is
//!   caught by its restart guard. Quarantined slots vote no in this voter;
//!   the others vote as usual.
//! - **A shard that is down** makes only the keys of its slots unknown here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::Endpoint;
use crate::backend::cluster::{NodeAddr, Redirect, Topology, UNOWNED, ask_topology, key_slot};
use crate::config::RedisUrl;
use crate::protocol::elements;
use crate::redlock::master::identity::Guard;
use crate::redlock::master::{
    Debt, LockRef, Master, MasterState, MasterStats, Preload, Request, Role, Router,
};
use crate::redlock::vote::NoReply;

/// Redirections one request follows before its vote is an error.
const MAX_HOPS: u8 = 16;
/// The topology is read again this often, besides after redirections and
/// failed shards.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// At most one read this often (a burst of redirections asks for many).
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// The slot map and the shards that serve it.
#[derive(Debug, Default)]
struct Routing {
    topology: Option<Topology>,
    /// `topology.masters`' shards, in the same order.
    masters: Vec<Arc<Master>>,
}

/// Every node with a shard connection, and what the voter has seen of the
/// cluster (the writers' lock for `routing` too).
#[derive(Debug, Default)]
struct Nodes {
    shards: HashMap<NodeAddr, Arc<Master>>,
    /// Nodes ever seen as replicas: one that turns up serving slots was
    /// promoted by a failover.
    replicas: HashSet<NodeAddr>,
}

/// Redirections followed, by kind.
#[derive(Debug, Default)]
pub struct RedirectStats {
    /// `MOVED`.
    pub moved: AtomicU64,
    /// `ASK`.
    pub ask: AtomicU64,
    /// `TRYAGAIN`.
    pub tryagain: AtomicU64,
}

/// A Redis Cluster voting as one master.
#[derive(Debug)]
pub struct ClusterVoter {
    index: usize,
    seed: Endpoint,
    cad: Arc<Preload>,
    guard: Arc<Guard>,
    routing: ArcSwap<Routing>,
    nodes: Mutex<Nodes>,
    refresh: Notify,
    /// Stops the voter's own tasks (its shards stop with the proxy's token).
    stopped: CancellationToken,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    me: Weak<ClusterVoter>,
    /// Its votes, as the engine counts them.
    pub stats: MasterStats,
    /// Redirections its shards answered.
    pub redirections: RedirectStats,
    /// Topology reads that gave a slot map.
    pub refreshes: AtomicU64,
}

impl ClusterVoter {
    /// Voter `index`, the cluster `seed` belongs to; its shards run on
    /// `tracker` until `shutdown` (owed releases by the script `cad`, under
    /// the restart `guard`). The topology is learned in the background.
    pub(crate) fn start(
        index: usize,
        seed: Endpoint,
        (cad, guard): (Arc<Preload>, Arc<Guard>),
        shutdown: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<ClusterVoter> {
        let voter = Arc::new_cyclic(|me| ClusterVoter {
            index,
            seed,
            cad,
            guard,
            routing: ArcSwap::default(),
            nodes: Mutex::default(),
            refresh: Notify::new(),
            stopped: CancellationToken::new(),
            shutdown,
            tracker: tracker.clone(),
            me: me.clone(),
            stats: MasterStats::default(),
            redirections: RedirectStats::default(),
            refreshes: AtomicU64::new(0),
        });
        tracker.spawn(Arc::clone(&voter).maintain());
        voter
    }

    /// Its position among the voters.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The seed node's URL.
    pub fn seed(&self) -> &RedisUrl {
        self.seed.url()
    }

    /// Its shards now (the masters serving slots).
    pub fn shards(&self) -> Vec<Arc<Master>> {
        self.routing.load().masters.clone()
    }

    /// Slots no shard serves now (all of them before the topology is known).
    pub fn unserved_slots(&self) -> usize {
        self.routing
            .load()
            .topology
            .as_ref()
            .map_or(crate::backend::cluster::SLOTS, Topology::unowned)
    }

    /// Up: the slot map is known, every slot served and every shard up.
    pub(super) fn state(&self) -> MasterState {
        let routing = self.routing.load();
        let Some(topology) = &routing.topology else {
            return MasterState::Connecting;
        };
        let states = routing.masters.iter().map(|m| m.state());
        let mut state = if topology.unowned() > 0 {
            MasterState::Down
        } else {
            MasterState::Up
        };
        for s in states {
            state = match (state, s) {
                (MasterState::Down, _) | (_, MasterState::Down) => MasterState::Down,
                (MasterState::Connecting, _) | (_, MasterState::Connecting) => {
                    MasterState::Connecting
                }
                _ => MasterState::Up,
            };
        }
        state
    }

    /// The shard serving `slot` now.
    fn shard_of(&self, slot: u16) -> Option<Arc<Master>> {
        let routing = self.routing.load();
        let topology = routing.topology.as_ref()?;
        let i = topology
            .owner
            .get(usize::from(slot))
            .copied()
            .unwrap_or(UNOWNED);
        routing.masters.get(usize::from(i)).cloned()
    }

    /// Sends a request to the shard of its key's slot.
    pub(super) fn send(&self, req: Request) {
        let shard = route_key(&req.cmd).and_then(|k| self.shard_of(key_slot(k)));
        match shard {
            Some(shard) => shard.send(req),
            None => {
                // No slot map yet, or a slot no shard serves (its master
                // failed; a replica may be taking over): look again soon.
                self.refresh.notify_one();
                self.refuse(req, NoReply::Down);
            }
        }
    }

    /// Answers a request no shard can take: its vote is unknown, and what it
    /// was to release is owed where its key lives once that is known.
    fn refuse(&self, req: Request, why: NoReply) {
        req.reply_to.push((self.index, Err(why)));
        if let Role::Releases(lock) = req.lock {
            self.owe(&lock);
        }
    }

    /// Owes the release of `lock`: each key to the shard of its slot.
    pub(super) fn owe(&self, lock: &LockRef) {
        for debt in lock.debts(&self.cad.sha) {
            self.rehome(debt);
        }
    }

    /// Asks every shard to deliver what is queued and stop.
    pub(super) fn stop(&self) {
        self.stopped.cancel();
        if let Ok(nodes) = self.nodes.lock() {
            nodes.shards.values().for_each(|m| m.stop());
        }
    }

    /// The shard at `addr` (started at first use: a node an `ASK` names may
    /// not serve slots yet).
    fn node(&self, addr: &NodeAddr) -> Arc<Master> {
        let Ok(mut nodes) = self.nodes.lock() else {
            return self.spawn(addr, false);
        };
        self.node_in(&mut nodes, addr)
    }

    fn node_in(&self, nodes: &mut Nodes, addr: &NodeAddr) -> Arc<Master> {
        if let Some(m) = nodes.shards.get(addr) {
            return Arc::clone(m);
        }
        let promoted = nodes.replicas.contains(addr);
        let m = self.spawn(addr, promoted);
        nodes.shards.insert(addr.clone(), Arc::clone(&m));
        m
    }

    /// Starts a shard connection to `addr`; quarantined from the start when
    /// it is a replica promoted by a failover.
    fn spawn(&self, addr: &NodeAddr, promoted: bool) -> Arc<Master> {
        let router: Weak<dyn Router> = self.me.clone();
        let m = Master::spawn_with(
            self.index,
            self.seed.at(&addr.host, addr.port),
            (Arc::clone(&self.cad), Arc::clone(&self.guard)),
            Some(router),
            self.shutdown.clone(),
            &self.tracker,
        );
        if promoted {
            m.quarantine_as_restarted(
                "a replica took over slots of this cluster voter (a failover): it may have lost grants its master had not replicated",
            );
        }
        m
    }

    /// A `MOVED` said `slot` lives at `addr`: the map says so from now on.
    fn learn(&self, slot: u16, addr: &NodeAddr) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let routing = self.routing.load();
        let Some(topology) = &routing.topology else {
            return;
        };
        if topology.master_of(slot) == Some(addr) {
            return;
        }
        let mut topology = topology.clone();
        let mut masters = routing.masters.clone();
        let i = match topology.masters.iter().position(|m| m == addr) {
            Some(i) => i,
            None => {
                masters.push(self.node_in(&mut nodes, addr));
                topology.masters.push(addr.clone());
                topology.masters.len() - 1
            }
        };
        if let (Some(o), Ok(i)) = (topology.owner.get_mut(usize::from(slot)), u16::try_from(i)) {
            *o = i;
        }
        self.routing.store(Arc::new(Routing {
            topology: Some(topology),
            masters,
        }));
    }

    /// Installs a topology read from a node: new masters get shards (a
    /// promoted replica quarantined), nodes no longer masters retire and hand
    /// their queues and owed releases back.
    fn install(&self, topology: Topology) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let masters: Vec<Arc<Master>> = topology
            .masters
            .iter()
            .map(|a| self.node_in(&mut nodes, a))
            .collect();
        for (i, m) in masters.iter().enumerate() {
            if let Some(tag) = tag_for(&topology, i) {
                m.set_marker_tag(tag);
            }
        }
        nodes.replicas.extend(topology.replicas.iter().cloned());
        let gone: Vec<NodeAddr> = nodes
            .shards
            .keys()
            .filter(|a| !topology.masters.contains(a))
            .cloned()
            .collect();
        let unowned = topology.unowned();
        self.routing.store(Arc::new(Routing {
            topology: Some(topology),
            masters,
        }));
        for addr in gone {
            if let Some(m) = nodes.shards.remove(&addr) {
                m.retire();
            }
        }
        if unowned > 0 {
            tracing::warn!(
                voter = %self.seed.url(),
                unowned,
                "cluster voter: some hash slots have no master serving them"
            );
        }
    }

    /// Learns the topology, then keeps it current until stopped.
    async fn maintain(self: Arc<Self>) {
        let mut known = false;
        loop {
            match self.read_topology().await {
                Some(t) => {
                    if !known {
                        tracing::info!(voter = %self.seed.url(), shards = t.masters.len(), "cluster voter topology learned");
                    }
                    known = true;
                    self.refreshes.fetch_add(1, Ordering::Relaxed);
                    self.install(t);
                }
                None => {
                    tracing::warn!(voter = %self.seed.url(), "cluster voter: no node gave the topology");
                }
            }
            let wait = if known {
                REFRESH_EVERY
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.refresh.notified() => {}
                _ = self.stopped.cancelled() => return,
                _ = self.shutdown.cancelled() => return,
            }
            tokio::time::sleep(REFRESH_AT_MOST_EVERY).await;
        }
    }

    /// Asks the shards, then the seed, for the topology.
    async fn read_topology(&self) -> Option<Topology> {
        let seed = NodeAddr {
            host: self.seed.url().host.clone(),
            port: self.seed.url().port,
        };
        let mut candidates: Vec<NodeAddr> = self
            .routing
            .load()
            .topology
            .as_ref()
            .map(|t| t.masters.clone())
            .unwrap_or_default();
        if !candidates.contains(&seed) {
            candidates.push(seed);
        }
        let tls = self.seed.url().tls;
        for addr in candidates {
            let endpoint = self.seed.at(&addr.host, addr.port);
            let ask = ask_topology(&endpoint, &addr, tls);
            if let Ok(Some(t)) = tokio::time::timeout(Duration::from_secs(2), ask).await {
                return Some(t);
            }
        }
        None
    }

    /// Answers a request that followed too many redirections: an error vote.
    fn give_up(&self, req: Request, last: &Redirect) {
        let text = format!("TRYAGAIN too many cluster redirections, last {last}");
        req.reply_to
            .push((self.index, Ok(BytesFrame::Error(text.into()))));
        if let Role::Releases(lock) = req.lock {
            self.owe(&lock);
        }
    }
}

impl Router for ClusterVoter {
    fn redirect(&self, redirect: Redirect, mut req: Request) {
        req.route.hops = req.route.hops.saturating_add(1);
        if req.route.hops > MAX_HOPS {
            return self.give_up(req, &redirect);
        }
        let counter = match redirect {
            Redirect::Moved(..) => &self.redirections.moved,
            Redirect::Ask(..) => &self.redirections.ask,
            Redirect::TryAgain => &self.redirections.tryagain,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match redirect {
            Redirect::Moved(slot, addr) => {
                self.learn(slot, &addr);
                self.refresh.notify_one();
                req.route.asking = false;
                self.node(&addr).send(req);
            }
            Redirect::Ask(_, addr) => {
                req.route.asking = true;
                self.node(&addr).send(req);
            }
            Redirect::TryAgain => {
                // A migration splits the keys, or the shard left: a moment
                // later the map says where they are.
                req.route.asking = false;
                let me = self.me.clone();
                let pause = Duration::from_millis(5 * u64::from(req.route.hops));
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    if let Some(voter) = me.upgrade() {
                        voter.send(req);
                    }
                });
            }
        }
    }

    fn rehome(&self, debt: Debt) {
        if let Some(shard) = self.shard_of(key_slot(&debt.key)) {
            shard.owe_debt(debt);
        } else {
            // No shard serves its slot now: the lock expires with its TTL.
            self.refresh.notify_one();
        }
    }

    fn failed(&self) {
        self.refresh.notify_one();
    }
}

/// A hash tag whose slot master `i` of `topology` serves, for its restart
/// guard's marker key.
fn tag_for(topology: &Topology, i: usize) -> Option<Bytes> {
    let i = u16::try_from(i).ok()?;
    (0..100_000u32)
        .map(|n| format!("m{n}"))
        .find(|t| topology.owner.get(usize::from(key_slot(t.as_bytes()))) == Some(&i))
        .map(Bytes::from)
}

/// The key a lock request's slot is decided by: the first key of `EVALSHA
/// sha numkeys key ...`, else the first argument after the command's name.
pub(crate) fn route_key(cmd: &[u8]) -> Option<&[u8]> {
    fn payload(el: &[u8]) -> Option<&[u8]> {
        let start = el.iter().position(|&c| c == b'\n')? + 1;
        el.get(start..el.len().checked_sub(2)?)
    }
    let args = elements(cmd, 2)?;
    let name = payload(args.first()?)?;
    let at = if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        3
    } else {
        1
    };
    payload(args.get(at)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::encode_command;

    fn cmd(args: &[&[u8]]) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        encode_command(&mut out, args.iter().copied());
        out.to_vec()
    }

    #[test]
    fn requests_route_by_their_first_key() {
        let set = cmd(&[b"SET", b"lock:a", b"t", b"NX", b"PX", b"100"]);
        assert_eq!(route_key(&set), Some(&b"lock:a"[..]));
        let script = cmd(&[b"EVALSHA", b"abc", b"2", b"lock:{x}", b"fence:{x}", b"t"]);
        assert_eq!(route_key(&script), Some(&b"lock:{x}"[..]));
        assert_eq!(route_key(&cmd(&[b"EVALSHA", b"abc", b"0"])), None);
        assert_eq!(route_key(b"garbage"), None);
    }
}
