//! A Redis Cluster as the passthrough backend (`passthrough.cluster = true`).
//!
//! The proxy learns which master serves each hash slot (`CLUSTER SHARDS`, or
//! `CLUSTER SLOTS` on servers without it) from the seed node and then from
//! any known master, keeps one shared connection per master and protocol, and
//! sends each request to the master of its keys' slot. Clients see one
//! ordinary Redis: redirections are followed here (`MOVED` updates the slot
//! map at once and asks for a refresh, `ASK` is sent on with `ASKING`,
//! `TRYAGAIN` is retried after a pause), multi-key commands across slots are
//! split and merged (`gather.rs`), and keyless commands follow a table
//! (`plan.rs`).
//!
//! - Below, in `backend/cluster/`: slots and hash tags, the slot map as a
//!   node reports it, and reading `MOVED`/`ASK`/`TRYAGAIN`.
//! - `plan.rs`: where a command goes. `gather.rs`: merging split replies.
//! - `mod.rs`: the router, its nodes and the refresh task.

mod gather;
mod plan;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub(crate) use self::gather::{Gather, Merge, split_cursor};
pub(crate) use self::plan::{Plan, plan, upper};
pub(crate) use super::multiplex::OwnConnections;
use super::multiplex::{
    Lane, LaneStats, Lanes, Redirects, ReplyTo, Routed, SPARE_IDLE, SharedConnection, Timeouts,
};
use crate::backend::Endpoint;
use crate::backend::cluster::{NodeAddr, SLOTS, Topology, UNOWNED, ask_topology};
pub(crate) use crate::backend::cluster::{Redirect, key_slot};
use crate::config::RedisUrl;
use crate::errors;
use crate::protocol::Proto;
use crate::tls::TlsClient;

/// Redirections one request follows before the client gets an error.
const MAX_HOPS: u8 = 16;
/// The topology is read again this often, besides after redirections and
/// failed connections.
const REFRESH_EVERY: Duration = Duration::from_secs(10);
/// At most one refresh this often (a burst of redirections asks for many).
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// One master: its shared connections (lanes per protocol).
#[derive(Debug)]
pub(crate) struct Node {
    addr: NodeAddr,
    endpoint: Endpoint,
    lanes: [Lanes; 2],
}

/// How a request reaches a master: its protocol, the lane of the shared
/// connections (see `multiplex/lanes.rs`), or the client's own connections
/// (`multiplex = false`).
pub(crate) type Conduit<'a> = (Proto, usize, Option<&'a Arc<OwnConnections>>);

/// The master a client's own connection is opened to (transactions, blocking
/// commands, subscriptions).
#[derive(Debug, Clone)]
pub(crate) struct Pin {
    /// The master's address.
    pub(crate) addr: NodeAddr,
    /// How to reach it.
    pub(crate) endpoint: Endpoint,
}

impl Node {
    /// The lanes of protocol `proto`.
    fn lanes(&self, proto: Proto) -> &Lanes {
        &self.lanes[(proto == Proto::Resp3) as usize]
    }

    fn retire(&self) {
        self.lanes.iter().for_each(Lanes::retire);
    }
}

/// What routing reads on every request: the slot map and its masters' nodes.
#[derive(Debug, Default)]
struct Routing {
    topology: Option<Topology>,
    /// `topology.masters`' nodes, in the same order.
    masters: Vec<Arc<Node>>,
}

/// The cluster router: the slot map and a connection per master.
#[derive(Debug)]
pub(crate) struct Cluster {
    seed: RedisUrl,
    connect_timeout: Duration,
    reply_timeout: Duration,
    /// Lanes per master and protocol, and when one counts as stalled.
    lanes: (usize, Duration),
    max_depth: usize,
    tls: Option<TlsClient>,
    routing: ArcSwap<Routing>,
    /// Every node with connections (masters, and nodes an `ASK` named);
    /// also the writers' lock for `routing`.
    nodes: Mutex<HashMap<NodeAddr, Arc<Node>>>,
    refresh: Notify,
    me: Weak<Cluster>,
    /// Counters for the operations endpoint.
    pub(crate) stats: ClusterStats,
}

/// What the router counts.
#[derive(Debug, Default)]
pub(crate) struct ClusterStats {
    /// `MOVED` replies followed.
    pub(crate) moved: AtomicU64,
    /// `ASK` replies followed.
    pub(crate) ask: AtomicU64,
    /// `TRYAGAIN` replies retried.
    pub(crate) tryagain: AtomicU64,
    /// Topology reads that gave a topology.
    pub(crate) refreshes: AtomicU64,
}

impl Cluster {
    /// A router for the cluster `seed` belongs to; the topology is learned by
    /// [`maintain`](Self::maintain).
    pub(crate) fn new(
        seed: RedisUrl,
        (connect_timeout, reply_timeout): (Duration, Duration),
        max_depth: usize,
        tls: Option<TlsClient>,
        lanes: (usize, Duration),
    ) -> Arc<Cluster> {
        Arc::new_cyclic(|me| Cluster {
            seed,
            connect_timeout,
            reply_timeout,
            lanes,
            max_depth,
            tls,
            routing: ArcSwap::default(),
            nodes: Mutex::new(HashMap::new()),
            refresh: Notify::new(),
            me: me.clone(),
            stats: ClusterStats::default(),
        })
    }

    fn endpoint(&self, addr: &NodeAddr) -> Endpoint {
        let mut url = self.seed.clone();
        url.host.clone_from(&addr.host);
        url.port = addr.port;
        Endpoint::new(url, self.connect_timeout, self.max_depth).with_tls(self.tls.clone())
    }

    /// The node at `addr`, with its connections (made at first use).
    fn node(&self, addr: &NodeAddr) -> Arc<Node> {
        let Ok(mut nodes) = self.nodes.lock() else {
            return self.make_node(addr);
        };
        Arc::clone(
            nodes
                .entry(addr.clone())
                .or_insert_with(|| self.make_node(addr)),
        )
    }

    fn make_node(&self, addr: &NodeAddr) -> Arc<Node> {
        let endpoint = self.endpoint(addr);
        let redirects: Weak<dyn Redirects> = self.me.clone();
        let lanes = |proto| {
            Lanes::new(self.lanes.0, self.lanes.1, |i| {
                let r = Some(redirects.clone());
                let t = Timeouts {
                    reply: Lanes::reply_timeout(i, self.reply_timeout),
                    idle: (!Lanes::first_of_group(i)).then_some(SPARE_IDLE),
                };
                SharedConnection::new(proto, endpoint.clone(), r, t)
            })
        };
        Arc::new(Node {
            addr: addr.clone(),
            lanes: [lanes(Proto::Resp2), lanes(Proto::Resp3)],
            endpoint,
        })
    }

    /// Adds every node's lanes to `stats`.
    pub(crate) fn lane_stats(&self, stats: &mut LaneStats) {
        if let Ok(nodes) = self.nodes.lock() {
            nodes
                .values()
                .flat_map(|n| &n.lanes)
                .for_each(|l| stats.add(l));
        }
    }

    /// How many masters serve slots now.
    pub(crate) fn masters(&self) -> usize {
        self.routing.load().masters.len()
    }

    /// Slots no master serves now (all of them before the topology is known).
    pub(crate) fn unserved_slots(&self) -> usize {
        self.routing
            .load()
            .topology
            .as_ref()
            .map_or(SLOTS, Topology::unowned)
    }

    /// The master serving `slot`, or the error a client gets instead.
    fn master_of(&self, slot: u16) -> Result<Arc<Node>, crate::protocol::Reply> {
        let routing = self.routing.load();
        let Some(topology) = &routing.topology else {
            self.refresh.notify_one();
            return Err(errors::topology_unknown(&self.seed));
        };
        let i = topology
            .owner
            .get(usize::from(slot))
            .copied()
            .unwrap_or(UNOWNED);
        routing.masters.get(usize::from(i)).cloned().ok_or_else(|| {
            // A master failed: a replica may be taking over. Look again soon.
            self.refresh.notify_one();
            errors::slot_not_served()
        })
    }

    /// Master `i` (in the topology's order), or the error a client gets.
    fn master(&self, i: usize) -> Result<Arc<Node>, crate::protocol::Reply> {
        let routing = self.routing.load();
        if routing.topology.is_none() {
            return Err(errors::topology_unknown(&self.seed));
        }
        routing
            .masters
            .get(i)
            .cloned()
            .ok_or_else(errors::slot_not_served)
    }

    /// The connection of protocol `proto` to `node`: the shared lane `lane`,
    /// or the client's own (`own`, opened at first use).
    fn conn(
        &self,
        node: &Node,
        (proto, lane): (Proto, usize),
        own: Option<&OwnConnections>,
    ) -> Arc<SharedConnection> {
        let shared = || Arc::clone(node.lanes(proto).get(lane));
        let Some(own) = own else {
            return shared();
        };
        let redirects: Weak<dyn Redirects> = self.me.clone();
        let open = || {
            let t = Timeouts {
                reply: Some(self.reply_timeout),
                idle: None,
            };
            SharedConnection::new(proto, node.endpoint.clone(), Some(redirects), t)
        };
        own.get_or_open(&node.addr, proto == Proto::Resp3, open)
            .unwrap_or_else(shared)
    }

    /// The lane a client with nothing in flight takes for a request to the
    /// master of `slot` (master `i` for `Err(i)`): see `multiplex/lanes.rs`.
    pub(crate) fn lane(
        &self,
        to: Result<u16, usize>,
        proto: Proto,
        lane: Lane,
        now: Option<u64>,
    ) -> usize {
        let node = match to {
            Ok(slot) => self.master_of(slot),
            Err(i) => self.master(i),
        };
        match (node, lane) {
            (Ok(node), lane) => node.lanes(proto).resolve(lane, now),
            (Err(_), Lane::Keep(i)) => i,
            (Err(_), _) => 0,
        }
    }

    /// The master of `slot` (the first master for `None`), for a client's own
    /// connection.
    pub(crate) fn pin(&self, slot: Option<u16>) -> Result<Pin, crate::protocol::Reply> {
        let node = match slot {
            Some(s) => self.master_of(s)?,
            None => self.master(0)?,
        };
        Ok(Pin {
            addr: node.addr.clone(),
            endpoint: node.endpoint.clone(),
        })
    }

    /// Sends `request` to the master of `slot`, following redirections; its
    /// reply goes to `to`.
    pub(crate) fn send_slot(
        &self,
        (proto, lane, own): Conduit<'_>,
        slot: u16,
        request: &[u8],
        to: ReplyTo,
    ) {
        let routed = Box::new(Routed {
            request: Bytes::copy_from_slice(request),
            to,
            slot,
            hops: 0,
            lane,
            own: own.map(Arc::downgrade),
        });
        self.resend(routed, proto);
    }

    /// Sends `request` to master `i` (keyless commands); its reply goes to `to`.
    pub(crate) fn send_master(
        &self,
        (proto, lane, own): Conduit<'_>,
        i: usize,
        request: &[u8],
        to: ReplyTo,
    ) {
        match self.master(i) {
            Ok(node) => {
                let own = own.map(|o| &**o);
                self.conn(&node, (proto, lane), own).send(request, to);
            }
            Err(e) => to.deliver(e.to_bytes(proto)),
        }
    }

    /// Sends requests of the proxy's own to the master of `slot`; nobody reads
    /// their replies.
    pub(crate) fn send_unanswered(&self, slot: u16, requests: &[u8], n: usize) {
        if let Ok(node) = self.master_of(slot) {
            node.lanes(Proto::Resp2).get(0).send_unanswered(requests, n);
        }
    }

    /// Sends a routed request to its slot's master as the map says now.
    fn resend(&self, routed: Box<Routed>, proto: Proto) {
        let node = match self.master_of(routed.slot) {
            Ok(node) => node,
            Err(e) => return routed.to.deliver(e.to_bytes(proto)),
        };
        self.send_routed(&node, routed, proto, false);
    }

    /// Sends a routed request to `node`, on the client's own connection if
    /// it has them (a request of a client gone is dropped).
    fn send_routed(&self, node: &Node, routed: Box<Routed>, proto: Proto, asking: bool) {
        let own = match &routed.own {
            Some(weak) => match weak.upgrade() {
                Some(own) => Some(own),
                None => return,
            },
            None => None,
        };
        self.conn(node, (proto, routed.lane), own.as_deref())
            .send_routed(routed, asking);
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
                let node = Arc::clone(
                    nodes
                        .entry(addr.clone())
                        .or_insert_with(|| self.make_node(addr)),
                );
                topology.masters.push(addr.clone());
                masters.push(node);
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

    /// Installs a topology read from a node; nodes no longer masters retire.
    fn install(&self, topology: Topology) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        let masters: Vec<Arc<Node>> = topology
            .masters
            .iter()
            .map(|a| Arc::clone(nodes.entry(a.clone()).or_insert_with(|| self.make_node(a))))
            .collect();
        nodes.retain(|addr, node| {
            let keep = topology.masters.contains(addr);
            if !keep {
                node.retire();
            }
            keep
        });
        let unowned = topology.unowned();
        if unowned > 0 {
            tracing::warn!(
                unowned,
                "cluster: some hash slots have no master serving them"
            );
        }
        self.routing.store(Arc::new(Routing {
            topology: Some(topology),
            masters,
        }));
    }

    /// Learns the topology, then keeps it current: every [`REFRESH_EVERY`],
    /// and soon after a redirection or a failed connection, until `shutdown`.
    pub(crate) async fn maintain(self: Arc<Self>, shutdown: CancellationToken) {
        let mut known = false;
        loop {
            match self.read_topology().await {
                Some(t) => {
                    if !known {
                        tracing::info!(masters = t.masters.len(), "cluster topology learned");
                    }
                    known = true;
                    self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                    self.install(t);
                }
                None => tracing::warn!(seed = %self.seed, "cluster: no node gave the topology"),
            }
            let wait = if known {
                REFRESH_EVERY
            } else {
                Duration::from_millis(500)
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.refresh.notified() => {}
                _ = shutdown.cancelled() => return,
            }
            tokio::time::sleep(REFRESH_AT_MOST_EVERY).await;
        }
    }

    /// Asks the known masters, then the seed, for the topology.
    async fn read_topology(&self) -> Option<Topology> {
        let mut candidates: Vec<NodeAddr> = self
            .routing
            .load()
            .masters
            .iter()
            .map(|n| n.addr.clone())
            .collect();
        let seed = NodeAddr {
            host: self.seed.host.clone(),
            port: self.seed.port,
        };
        if !candidates.contains(&seed) {
            candidates.push(seed);
        }
        for addr in candidates {
            let endpoint = self.endpoint(&addr);
            let ask = ask_topology(&endpoint, &addr, self.seed.tls);
            if let Ok(Some(t)) = tokio::time::timeout(self.connect_timeout * 2, ask).await {
                return Some(t);
            }
        }
        None
    }
}

impl Redirects for Cluster {
    fn redirect(&self, redirect: Redirect, mut routed: Box<Routed>, proto: Proto) {
        routed.hops += 1;
        if routed.hops > MAX_HOPS {
            let e = errors::too_many_redirections(&redirect);
            return routed.to.deliver(e.to_bytes(proto));
        }
        let counter = match redirect {
            Redirect::Moved(..) => &self.stats.moved,
            Redirect::Ask(..) => &self.stats.ask,
            Redirect::TryAgain => &self.stats.tryagain,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match redirect {
            Redirect::Moved(slot, addr) => {
                self.learn(slot, &addr);
                self.refresh.notify_one();
                self.send_routed(&self.node(&addr), routed, proto, false);
            }
            Redirect::Ask(_, addr) => self.send_routed(&self.node(&addr), routed, proto, true),
            Redirect::TryAgain => {
                // The keys are split by a migration in progress: a moment later
                // they are on one side.
                let me = self.me.clone();
                let pause = Duration::from_millis(5 * u64::from(routed.hops));
                tokio::spawn(async move {
                    tokio::time::sleep(pause).await;
                    if let Some(cluster) = me.upgrade() {
                        cluster.resend(routed, proto);
                    }
                });
            }
        }
    }

    fn failed(&self) {
        self.refresh.notify_one();
    }
}
