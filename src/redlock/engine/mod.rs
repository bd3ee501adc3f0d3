//! The RedLock engine: runs each lock operation on every master at once and
//! turns their answers into one truthful reply.
//!
//! Choices, where the algorithm leaves room:
//! - **Deadlines fit the operation.** An acquisition waits for votes at most
//!   `node_timeout` (capped at a tenth of the TTL): a safety rule, since the
//!   time spent eats the lock's validity. Releases, extensions, reads and `DEL`
//!   are not safety-bound and wait up to `op_timeout` for a decision.
//! - **Decided or undecided.** Every operation stops as soon as the answers
//!   decide it (`vote.rs`: every possible answer of the missing masters would
//!   give the same reply). A release, extension or read the answers do not
//!   decide by the deadline gets a `NOQUORUM` error naming the masters and what
//!   each did — never a 0, nil or -2. A refused acquisition answers nil, as
//!   clients expect, and when too few masters could vote (rather than others
//!   holding the lock) a rate-limited warning names them.
//! - **A reply is true for a while.** A grant (and a successful extension)
//!   carries a [`Lease`]: the connection writes its reply only within the
//!   validity, which counts from the start of the operation; past it the grant
//!   is released and the acquisition runs again, as Redis would have run it then.
//! - **No stale tokens.** A refused acquisition is released on every master,
//!   and so is a grant whose client vanished; a release that fails on a master
//!   (not sent, lost, an error reply) is owed to it. Masters retry what they are
//!   owed until they confirm or the lock's TTL has passed (`master/owed.rs`).
//! - Scripts run as the client wrote them, by `EVALSHA` after a `SCRIPT LOAD`
//!   on each master, and the per-master replies are voted on by the script's
//!   convention.
//! - Extensions that fail never release anything. `DEL` of a lock key is a force
//!   release with no retry on masters that missed it: a delayed blind delete
//!   could remove a later owner's lock.

mod acquire;
mod collect;
mod fence;
mod ops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::master::identity::{Guard, GuardConfig};
use super::master::{LockRef, Master, Preload};
use super::op::{LockOp, ScriptAction, Takeback, Tokens};
use super::quorum::{self, Params};
use super::scripts::sha1_hex;
use super::vote;
use super::voter::{ClusterVoter, Voter, VoterSpec};
use crate::config::RedlockConfig;
use crate::errors;
use crate::metrics::{LockKind, LockMetrics, LockOutcome};
use crate::protocol::{Reply, encode_command};

/// Compare-and-delete over every key (owed releases).
const CAD_SCRIPT: &str = "local n = 0\nfor _, k in ipairs(KEYS) do\n  if redis.call('get', k) == ARGV[1] then n = n + redis.call('del', k) end\nend\nreturn n\n";
/// Value and PTTL of one key, atomically.
const QUERY_SCRIPT: &str = "return {redis.call('get', KEYS[1]), redis.call('pttl', KEYS[1])}\n";
/// DEL of each key, with each key's count.
const DEL_SCRIPT: &str =
    "local r = {}\nfor i, k in ipairs(KEYS) do r[i] = redis.call('del', k) end\nreturn r\n";

/// Counters of lock operations.
#[derive(Debug, Default)]
pub struct LockStats {
    /// Acquisitions granted.
    pub granted: AtomicU64,
    /// Acquisitions refused for lack of a quorum.
    pub refused: AtomicU64,
    /// Acquisitions refused because too little validity was left.
    pub expired: AtomicU64,
    /// Releases (scripts and DEL).
    pub releases: AtomicU64,
    /// Extensions that succeeded.
    pub extended: AtomicU64,
    /// Extensions that failed.
    pub extend_failed: AtomicU64,
    /// Reads of lock keys.
    pub queries: AtomicU64,
    /// Operations whose answers did not decide them (answered `NOQUORUM`).
    pub undecided: AtomicU64,
    /// Fencing tokens issued.
    pub fences: AtomicU64,
    /// Operations by kind and outcome, and their latency.
    pub ops: LockMetrics,
}

/// A lock the proxy granted: enough to release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    keys: Vec<Bytes>,
    /// One token for every key, or one per key (a batch).
    tokens: Tokens,
    /// How it is taken off a master.
    takeback: Takeback,
    ttl: Option<Duration>,
}

impl Grant {
    /// Whether the lock expires by itself.
    pub fn has_ttl(&self) -> bool {
        self.ttl.is_some()
    }

    /// A grant, for unit tests of what carries one.
    #[cfg(test)]
    pub(crate) fn for_test(key: &'static str, token: &'static str, ttl: Option<Duration>) -> Grant {
        Grant {
            keys: vec![Bytes::from_static(key.as_bytes())],
            tokens: Tokens::One(Bytes::from_static(token.as_bytes())),
            takeback: Takeback::CompareAndDelete,
            ttl,
        }
    }

    /// Whether `op` releases this lock (a release of its token, or a `DEL`).
    pub fn released_by(&self, op: &LockOp) -> bool {
        let touches = |keys: &[Bytes]| keys.iter().any(|k| self.keys.contains(k));
        match op {
            LockOp::Delete { keys } => touches(keys),
            LockOp::Script(s) => match &s.action {
                ScriptAction::Release { token } => {
                    token.as_ref().is_some_and(|t| self.tokens.contains(t)) && touches(&s.call.keys)
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// What makes a reply true only for a while: a grant, or a successful extension.
#[derive(Debug, Clone)]
pub struct Lease {
    /// Until when the reply may be written: the validity, counted from the
    /// start of the operation (`None`: the lock does not expire).
    pub valid_until: Option<Instant>,
    /// The lock the reply grants, to release if the reply cannot be delivered
    /// in time (acquisitions only).
    pub grant: Option<Grant>,
    /// What the client is told instead once the validity is gone.
    pub instead: Reply,
    /// For acquisitions: the operation, to run again at that point, as Redis
    /// would have run it then.
    pub again: Option<LockOp>,
}

/// The result of one operation.
#[derive(Debug)]
pub struct Outcome {
    /// What the client is told.
    pub reply: Reply,
    /// Set when the reply is true only for a while (boxed: an outcome is
    /// returned up through every level of the engine's futures, and most
    /// outcomes have none).
    pub lease: Option<Box<Lease>>,
}

impl Outcome {
    /// `SETNX`'s replies: 1 where `SET NX` says `OK`, 0 where it says nil
    /// (errors stay errors).
    fn into_setnx(mut self) -> Self {
        fn one_zero(r: &mut Reply) {
            match r {
                Reply::Simple(_) | Reply::Status(_) => *r = Reply::Int(1),
                Reply::Nil => *r = Reply::Int(0),
                _ => {}
            }
        }
        one_zero(&mut self.reply);
        if let Some(lease) = &mut self.lease {
            one_zero(&mut lease.instead);
        }
        self
    }
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Outcome { reply, lease: None }
    }
}

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// The algorithm's parameters.
    pub params: Params,
    /// How long releases, extensions and reads wait for a decision.
    pub op_timeout: Duration,
    /// Extra acquisition attempts.
    pub retry_count: u32,
    /// Delay between attempts (plus up to 50% jitter).
    pub retry_delay: Duration,
    /// The longest TTL any lock can have: owed releases of unknown TTL are
    /// moot after it.
    pub max_ttl: Option<Duration>,
    /// The restart guard's settings.
    pub guard: GuardConfig,
}

impl From<&RedlockConfig> for EngineConfig {
    fn from(r: &RedlockConfig) -> Self {
        EngineConfig {
            params: Params {
                node_timeout: r.node_timeout,
                drift_factor: r.drift_factor,
                drift_floor: r.drift_floor,
                min_validity: r.min_validity,
            },
            op_timeout: r.op_timeout,
            retry_count: r.retry_count,
            retry_delay: r.retry_delay,
            max_ttl: (!r.max_ttl.is_zero()).then_some(r.max_ttl),
            guard: GuardConfig {
                max_ttl: (!r.max_ttl.is_zero()).then_some(r.max_ttl),
                quarantine_on_start: r.quarantine_on_start,
                health_interval: r.health_interval,
                drift_factor: r.drift_factor,
                drift_floor: r.drift_floor,
                volatile_expected: r.volatile_masters,
            },
        }
    }
}

/// A request's command, and another for cluster voters when they need one
/// (a fence counter must be in its lock key's slot there).
#[derive(Debug, Clone)]
pub(super) struct Cmd {
    /// What every voter runs.
    pub(super) plain: Bytes,
    /// What a cluster voter runs instead.
    pub(super) cluster: Option<Bytes>,
}

impl From<Bytes> for Cmd {
    fn from(plain: Bytes) -> Self {
        Cmd {
            plain,
            cluster: None,
        }
    }
}

impl Cmd {
    /// What `voter` runs.
    fn for_voter(&self, voter: &Voter) -> Bytes {
        match (&self.cluster, voter) {
            (Some(c), Voter::Cluster(_)) => c.clone(),
            _ => self.plain.clone(),
        }
    }
}

/// An internal script: its text, SHA1 and preload.
#[derive(Debug)]
struct Internal {
    sha: Bytes,
    preload: Arc<Preload>,
}

impl Internal {
    fn new(text: &'static str) -> Self {
        let sha = Bytes::from(sha1_hex(text.as_bytes()).into_bytes());
        Internal {
            preload: Preload::new(sha.clone(), text.as_bytes()),
            sha,
        }
    }

    /// `EVALSHA` of this script over `keys` and `argv`.
    fn call(&self, keys: &[Bytes], argv: &[&[u8]]) -> Bytes {
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &self.sha, numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| &k[..]));
        args.extend(argv);
        command(&args)
    }
}

/// Runs lock operations on the masters.
///
/// A configuration reload makes a new engine ([`Engine::reconfigured`]) that
/// keeps the masters still configured (their connections, owed releases and
/// quarantines), the counters and the restart guard; operations under way
/// finish on the engine they started on.
#[derive(Debug)]
pub struct Engine {
    voters: Vec<Voter>,
    cfg: EngineConfig,
    query: Internal,
    del: Internal,
    fence_read: Internal,
    fence_issue: Internal,
    cad: Internal,
    /// Counters.
    pub stats: Arc<LockStats>,
    /// The restart guard the masters share.
    guard: Arc<Guard>,
    /// Rate-limits warnings about acquisitions too few masters could vote on.
    warned: Arc<Mutex<collect::WarnLimiter>>,
    /// Each client script's `SCRIPT LOAD` for masters that lack it, by SHA1,
    /// built once: encoding it per call cost a release about 2,100
    /// instructions (callgrind), for a preload masters rarely need.
    preloads: Mutex<HashMap<Bytes, Arc<Preload>>>,
}

/// Most scripts whose preloads are kept (more are built per call).
const MAX_PRELOADS: usize = 1024;

impl Engine {
    /// An engine over the voters `specs` describe, whose connection tasks it
    /// spawns on `tracker`.
    pub(crate) fn start(
        cfg: EngineConfig,
        specs: Vec<VoterSpec>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Self {
        let cad = Internal::new(CAD_SCRIPT);
        let guard = Arc::new(Guard::new(cfg.guard));
        let voters = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| spawn_voter(i, spec, (&cad, &guard), shutdown, tracker))
            .collect();
        Engine::assemble(voters, cfg, Arc::default(), guard, Arc::default())
    }

    /// An engine over running voters, with the state engines share across a
    /// reload (counters, the restart guard, the warning limiter).
    fn assemble(
        voters: Vec<Voter>,
        cfg: EngineConfig,
        stats: Arc<LockStats>,
        guard: Arc<Guard>,
        warned: Arc<Mutex<collect::WarnLimiter>>,
    ) -> Engine {
        Engine {
            voters,
            cfg,
            query: Internal::new(QUERY_SCRIPT),
            del: Internal::new(DEL_SCRIPT),
            fence_read: Internal::new(fence::FENCE_READ_SCRIPT),
            fence_issue: Internal::new(fence::FENCE_ISSUE_SCRIPT),
            cad: Internal::new(CAD_SCRIPT),
            stats,
            guard,
            warned,
            preloads: Mutex::default(),
        }
    }

    /// The engine for a new configuration: voters of the same kind and URL
    /// in the same place are kept (connections, owed releases, quarantines),
    /// others are started; returns it with the voters no longer configured,
    /// for the caller to stop once the new engine is in place.
    pub(crate) fn reconfigured(
        &self,
        cfg: EngineConfig,
        specs: Vec<VoterSpec>,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> (Engine, Vec<Voter>) {
        self.guard.set_max_ttl(cfg.guard.max_ttl);
        let mut kept = vec![false; self.voters.len()];
        let voters = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let old = self
                    .voters
                    .iter()
                    .position(|v| spec.describes(v) && v.index() == i);
                match old {
                    Some(j) => {
                        kept[j] = true;
                        self.voters[j].clone()
                    }
                    None => spawn_voter(i, spec, (&self.cad, &self.guard), shutdown, tracker),
                }
            })
            .collect();
        let removed = self
            .voters
            .iter()
            .zip(kept)
            .filter(|(_, k)| !k)
            .map(|(v, _)| v.clone())
            .collect();
        let engine = Engine::assemble(
            voters,
            cfg,
            Arc::clone(&self.stats),
            Arc::clone(&self.guard),
            Arc::clone(&self.warned),
        );
        (engine, removed)
    }

    /// The voters (single masters and clusters).
    pub fn voters(&self) -> &[Voter] {
        &self.voters
    }

    /// Every master connection: the plain masters, and the cluster voters'
    /// shards now.
    pub fn masters(&self) -> Vec<Arc<Master>> {
        self.voters.iter().flat_map(Voter::shards).collect()
    }

    fn quorum(&self) -> usize {
        quorum::quorum(self.voters.len())
    }

    /// Votes an acquisition or extension needs: a majority, or for a
    /// semaphore of `limit` seats what keeps the limit.
    fn quorum_for(&self, limit: Option<u64>) -> usize {
        match limit {
            Some(l) => quorum::quorum_for_limit(self.voters.len(), l),
            None => self.quorum(),
        }
    }

    /// How many voters make a quorum.
    pub fn quorum_size(&self) -> usize {
        self.quorum()
    }

    /// Voters whose connections are up.
    pub fn masters_up(&self) -> usize {
        self.voters
            .iter()
            .filter(|v| v.state() == super::master::MasterState::Up)
            .count()
    }

    /// Whether a quorum of voters is up and trusted: acquisitions can be granted.
    pub fn quorum_available(&self) -> bool {
        let trusted = self.voters.iter().filter(|v| v.trusted()).count();
        trusted >= self.quorum()
    }

    /// Runs one operation to completion, and counts how it ended.
    pub async fn run(&self, op: LockOp) -> Outcome {
        let kind = op.kind();
        // The reply a failure gives, for the scripts whose failure is a value.
        let failure = match &op {
            LockOp::Script(s) => Some(vote::failure_reply(s.convention, &[], self.quorum())),
            _ => None,
        };
        let start = Instant::now();
        let outcome = self.dispatch(op).await;
        let result = match (&outcome.reply, kind) {
            (Reply::Error(e), LockKind::Fence) if e.starts_with(errors::NOT_HOLDER) => {
                LockOutcome::Refused
            }
            (Reply::Error(_), _) => LockOutcome::Error,
            (_, LockKind::Acquire) if outcome.lease.is_none() => LockOutcome::Refused,
            (Reply::Int(0), LockKind::Delete) => LockOutcome::Refused,
            (r, LockKind::Release | LockKind::Extend) if Some(r) == failure.as_ref() => {
                LockOutcome::Refused
            }
            _ => LockOutcome::Ok,
        };
        self.stats.ops.record(kind, result, start.elapsed());
        outcome
    }

    async fn dispatch(&self, op: LockOp) -> Outcome {
        match op {
            LockOp::Acquire {
                key,
                token,
                ttl,
                at_ms,
                setnx,
            } => {
                let outcome = self.acquire_set(key, token, ttl, at_ms, setnx).await;
                if setnx { outcome.into_setnx() } else { outcome }
            }
            LockOp::Get { key } => self.get(key).await,
            LockOp::Exists { keys } => self.exists(keys).await,
            LockOp::Ttl { key, millis } => self.ttl(key, millis).await,
            LockOp::Delete { keys } => self.delete(keys).await,
            LockOp::Script(op) => match op.action {
                ScriptAction::Acquire { .. } => self.acquire_script(op).await,
                _ => self.script(op).await,
            },
            LockOp::RemoveSeats { key, members } => self.remove_seats(key, members).await,
            LockOp::Expire { args, ttl } => self.expire(args, ttl).await,
            LockOp::Fence { key, token } => self.fence_op(key, token).await,
            // Boxed: the largest future of all, for a rare operation; inline
            // it would make every operation's future (copied at each level) as large.
            LockOp::AcquireFenced { key, token, ttl } => {
                Box::pin(self.acquire_fenced(key, token, ttl)).await
            }
        }
    }

    /// A lock now lives `ttl`: the restart guard's quarantines cover it, the
    /// ones under way included (a master that voted for it may have restarted
    /// while the vote was being decided).
    fn granted_ttl(&self, ttl: Duration) {
        if self.guard.granted(ttl) {
            for v in &self.voters {
                v.quarantine_at_least(ttl);
            }
        }
    }

    /// Releases a granted lock whose reply never reached its client.
    pub fn release_grant(&self, grant: &Grant) {
        let expires = grant.ttl.map(|t| Instant::now() + t);
        self.release_everywhere(&grant.keys, &grant.tokens, &grant.takeback, expires);
    }

    /// Owes every master the release of `keys` held with their tokens (one
    /// for all, or one each), by `takeback`.
    fn release_everywhere(
        &self,
        keys: &[Bytes],
        tokens: &Tokens,
        takeback: &Takeback,
        expires: Option<Instant>,
    ) {
        let lock = LockRef::held(keys.to_vec(), tokens.clone(), takeback.clone(), expires);
        for v in &self.voters {
            v.owe(Arc::clone(&lock));
        }
    }
}

/// Starts voter `i`: a master's connection task, or a cluster voter (its
/// shards' tasks start as it learns the topology).
fn spawn_voter(
    i: usize,
    spec: VoterSpec,
    (cad, guard): (&Internal, &Arc<Guard>),
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> Voter {
    let shared = (Arc::clone(&cad.preload), Arc::clone(guard));
    match spec {
        VoterSpec::Master(e) => Voter::Master(Master::spawn(
            i,
            e,
            shared.0,
            shared.1,
            shutdown.clone(),
            tracker,
        )),
        VoterSpec::Cluster(e) => {
            Voter::Cluster(ClusterVoter::start(i, e, shared, shutdown.clone(), tracker))
        }
    }
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    encode_command(&mut out, args.iter().copied());
    out.freeze()
}

/// The stats counter an outcome counts in.
fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Engine {
    /// `EVALSHA` of a client's script, and its preload for masters that
    /// lack it.
    fn script_call(&self, call: &super::op::ScriptCall) -> (Bytes, Arc<Preload>) {
        let mut n = itoa::Buffer::new();
        let numkeys = n.format(call.keys.len()).as_bytes();
        let size: usize = call
            .keys
            .iter()
            .chain(&call.argv)
            .map(|a| a.len() + 16)
            .sum();
        let mut out = BytesMut::with_capacity(64 + call.sha.len() + size);
        let head = [&b"EVALSHA"[..], &call.sha, numkeys].into_iter();
        let keys = call.keys.iter().map(|a| &a[..]);
        let argv = call.argv.iter().map(|a| &a[..]);
        encode_command(&mut out, ExactChain(head, ExactChain(keys, argv)));
        (out.freeze(), self.preload(call))
    }

    fn preload(&self, call: &super::op::ScriptCall) -> Arc<Preload> {
        let Ok(mut cache) = self.preloads.lock() else {
            return Preload::new(call.sha.clone(), &call.text);
        };
        if let Some(p) = cache.get(&call.sha) {
            return Arc::clone(p);
        }
        let p = Preload::new(call.sha.clone(), &call.text);
        if cache.len() < MAX_PRELOADS {
            cache.insert(call.sha.clone(), Arc::clone(&p));
        }
        p
    }
}

/// Two exact-size iterators, one after the other (`Chain` does not know
/// its length).
struct ExactChain<A, B>(A, B);

impl<'a, A, B> Iterator for ExactChain<A, B>
where
    A: ExactSizeIterator<Item = &'a [u8]>,
    B: ExactSizeIterator<Item = &'a [u8]>,
{
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        self.0.next().or_else(|| self.1.next())
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.len() + self.1.len();
        (n, Some(n))
    }
}

impl<'a, A, B> ExactSizeIterator for ExactChain<A, B>
where
    A: ExactSizeIterator<Item = &'a [u8]>,
    B: ExactSizeIterator<Item = &'a [u8]>,
{
}
