//! One lock master: a single shared, pipelined, reconnecting connection that
//! serves every client of the proxy.
//!
//! - **Order.** Requests are written in the order the task receives them and
//!   answered in that order (Redis's pipelining), so a release owed after an
//!   acquisition always runs after it on that master, even when the master was
//!   paused in between.
//! - **Reconnecting.** A master that closes the connection (`CLIENT KILL`, its
//!   `timeout`, a middlebox) is reconnected at once, however often it does,
//!   and requests wait for the new connection within their operation's
//!   deadline: a close is no failure (connections that close again and again
//!   are reopened a little later, up to half a second). Only when connecting
//!   or its handshake fails twice in a row does the master count as down:
//!   requests then fail at once and the task retries with backoff, logging
//!   repeated failures at most every [`LOG_EVERY`].
//! - **Scripts.** An `EVALSHA` goes out after a `SCRIPT LOAD` of its script
//!   (once per connection), in the same pipeline; a `NOSCRIPT` all the same
//!   (someone ran `SCRIPT FLUSH`) loads it and sends it again, whether or not
//!   the operation still waits for it.
//! - **Owed releases** (`owed.rs`): cleanups of refused or abandoned
//!   acquisitions, and releases that failed or were never sent, are retried
//!   until the master confirms them or the lock's TTL has passed.
//! - **Bounded.** The task always drains its channel; operations waiting to be
//!   written are limited to [`MAX_QUEUED`] (past it they fail at once), written
//!   ones waiting for a reply to 10,000 (a stalled master's socket buffers could
//!   take ten times as many), and owed releases to [`owed::MAX_OWED`] — those
//!   owed and, as many again, those on their way to the task.

mod clock;
mod clock_guard;
mod connection;
mod frame;
pub mod identity;
mod lock_ref;
mod log_limit;
pub(crate) mod owed;
mod restart;
mod stats;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::connection::MasterConnection;
use self::identity::{Guard, GuardState, Quarantine};
pub(crate) use self::lock_ref::LockRef;
use self::log_limit::LogLimiter;
pub(crate) use self::owed::Debt;
use self::owed::Owed;
pub use self::stats::{MasterState, MasterStats};
use super::vote::{Answer, NoReply};
use crate::backend::cluster::Redirect;
use crate::backend::{Endpoint, Handshake};
use crate::config::RedisUrl;
use crate::protocol::encode_command;

/// Where the masters' answers to one lock operation collect, tagged with the
/// master's index.
pub type Replies = crate::inbox::Inbox<(usize, Answer)>;

/// Where an answer goes.
pub type ReplySender = Arc<Replies>;

/// Most operation requests waiting to be written to one master; past this,
/// new ones fail at once (their vote is unknown).
pub const MAX_QUEUED: usize = 10_000;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff bounds, after repeated failures.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection that lived this long was healthy: quick closes before it
/// slow the reconnects down (never to the point of failing requests).
const HEALTHY: Duration = Duration::from_secs(1);
/// Reconnect delay per quick close in a row (a connection closed before
/// [`HEALTHY`]), up to [`CHURN_MAX`]: a master that keeps closing
/// connections is not spun on, and requests wait meanwhile.
const CHURN_STEP: Duration = Duration::from_millis(10);
const CHURN_MAX: Duration = Duration::from_millis(500);
/// Repeated errors of one master are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A script a request runs with EVALSHA: loaded on the master first (once per
/// connection), in the same pipeline, so the EVALSHA cannot miss it even when the
/// master answers only after the operation has stopped waiting.
#[derive(Debug)]
pub struct Preload {
    /// The script's SHA1, lowercase hex.
    pub sha: Bytes,
    /// `SCRIPT LOAD <text>`, encoded.
    pub load: Bytes,
}

impl Preload {
    /// The preload of a script text.
    pub fn new(sha: Bytes, text: &[u8]) -> Arc<Preload> {
        let mut load = BytesMut::new();
        encode_command(&mut load, [&b"SCRIPT"[..], b"LOAD", text].into_iter());
        Arc::new(Preload {
            sha,
            load: load.freeze(),
        })
    }
}

/// One request of a lock operation.
#[derive(Debug)]
pub(crate) struct Request {
    /// The command, encoded.
    pub(crate) cmd: Bytes,
    /// The script an EVALSHA needs.
    pub(crate) script: Option<Arc<Preload>>,
    /// Not sent after this: the operation has given up.
    pub(crate) deadline: Instant,
    /// Where the answer goes.
    pub(crate) reply_to: ReplySender,
    /// The lock the request takes or releases, if any.
    pub(crate) lock: Role,
    /// On a shard of a cluster voter: the redirections it followed so far, and
    /// whether it goes after `ASKING` (a slot being migrated).
    pub(crate) route: Hops,
}

/// How far a request sent to a cluster voter's shard was redirected.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hops {
    /// Redirections followed.
    pub(crate) hops: u8,
    /// Sent after `ASKING`: the next node answers for a migrating slot.
    pub(crate) asking: bool,
}

/// Who follows a cluster shard's redirections: the cluster voter the shard
/// belongs to (see `redlock/voter/cluster.rs`). A plain master has none: its
/// error replies are votes.
pub(crate) trait Router: Send + Sync + std::fmt::Debug {
    /// The shard answered `redirect` to `req`: send it where it says.
    fn redirect(&self, redirect: Redirect, req: Request);
    /// A release owed on the shard belongs elsewhere (its key moved, or the
    /// shard left): owe it where the key lives now.
    fn rehome(&self, debt: Debt);
    /// The shard's connection failed: the cluster's shape may have changed.
    fn failed(&self);
}

/// What a request does to a lock, as far as owed releases are concerned.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// Nothing: a read.
    None,
    /// It takes the lock: releases of it owed before it are not sent after it.
    Acquires(Arc<LockRef>),
    /// It extends a lock's TTL: like an acquisition, its answer counts only
    /// once the master's clock is read behind it (the clock guard).
    Extends,
    /// It releases the lock: if it does not succeed (not sent, lost, an error
    /// reply), the release is owed.
    Releases(Arc<LockRef>),
}

#[derive(Debug)]
enum Message {
    /// An operation's request.
    Op(Request),
    /// A release owed, after everything received before it.
    Owe(Arc<LockRef>),
    /// One key's release, owed elsewhere before (a cluster shard's key moved
    /// here).
    Debt(Debt),
    /// The node left its cluster voter: what it holds goes back to the
    /// router, then the task stops.
    Retire,
    /// Shutdown: deliver what is queued, then stop.
    Stop,
}

/// What the task keeps across connections.
#[derive(Debug, Default)]
struct Backlog {
    /// Operation requests received, not yet written, with their 1-based
    /// number in the order received.
    ops: VecDeque<(u64, Request)>,
    /// Releases owed.
    owed: Owed,
    /// Operation requests received so far (debts are owed after this many).
    received: u64,
}

/// A lock master and the handle to its connection task.
#[derive(Debug)]
pub struct Master {
    /// Position in the configuration.
    pub index: usize,
    /// Where it is.
    pub url: RedisUrl,
    endpoint: Endpoint,
    cad: Arc<Preload>,
    tx: mpsc::UnboundedSender<Message>,
    queued: AtomicUsize,
    /// Owed releases sent to the task and not yet taken in: bounded like the
    /// owed set itself, so clients that make debts faster than the task takes
    /// them in cannot grow the channel without end.
    owing: AtomicUsize,
    /// Debts shed because that many were already on their way.
    owing_shed: AtomicU64,
    state: AtomicU8,
    guard: Arc<Guard>,
    guard_state: std::sync::Mutex<GuardState>,
    quarantine: Quarantine,
    /// On a shard of a cluster voter: who follows its redirections.
    router: Option<Weak<dyn Router>>,
    /// On a shard: a hash tag that lands in one of its slots, so the restart
    /// guard's marker key is one it serves.
    marker_tag: std::sync::Mutex<Option<Bytes>>,
    /// The shard left its cluster voter: what it still holds when its
    /// connection ends goes back to the router.
    retired: std::sync::atomic::AtomicBool,
    /// A quarantine of this proxy's (a restart, a failover) whose marker the
    /// master has not confirmed yet: the probe writes it.
    marker_owed: std::sync::atomic::AtomicBool,
    /// The clock guard's readings (see `clock_guard.rs`).
    clock: std::sync::Mutex<clock_guard::ClockState>,
    /// Counters.
    pub stats: MasterStats,
}

impl Master {
    /// Creates the master and spawns its connection task on `tracker`. `cad` is
    /// the compare-and-delete script owed releases run; `guard`, the restart
    /// guard all masters share.
    pub(crate) fn spawn(
        index: usize,
        endpoint: Endpoint,
        cad: Arc<Preload>,
        guard: Arc<Guard>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Master> {
        Master::spawn_with(index, endpoint, (cad, guard), None, shutdown, tracker)
    }

    /// [`spawn`](Self::spawn), as a shard of a cluster voter when `router`
    /// is given (redirections go to it; `index` is the voter's).
    pub(crate) fn spawn_with(
        index: usize,
        endpoint: Endpoint,
        (cad, guard): (Arc<Preload>, Arc<Guard>),
        router: Option<Weak<dyn Router>>,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Master> {
        let (tx, rx) = mpsc::unbounded_channel();
        let master = Arc::new(Master {
            index,
            url: endpoint.url().clone(),
            endpoint,
            cad,
            tx,
            queued: AtomicUsize::new(0),
            owing: AtomicUsize::new(0),
            owing_shed: AtomicU64::new(0),
            state: AtomicU8::new(MasterState::Connecting as u8),
            guard,
            guard_state: std::sync::Mutex::default(),
            quarantine: Quarantine::default(),
            router,
            marker_tag: std::sync::Mutex::default(),
            retired: std::sync::atomic::AtomicBool::new(false),
            marker_owed: std::sync::atomic::AtomicBool::new(false),
            clock: std::sync::Mutex::default(),
            stats: MasterStats::default(),
        });
        tracker.spawn(Arc::clone(&master).run(rx, shutdown));
        master
    }

    /// The connection state.
    pub fn state(&self) -> MasterState {
        match self.state.load(Ordering::Relaxed) {
            1 => MasterState::Up,
            2 => MasterState::Down,
            _ => MasterState::Connecting,
        }
    }

    fn set_state(&self, s: MasterState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// `host:port` (a Sentinel-managed master: its name at the sentinels).
    pub fn addr(&self) -> &str {
        self.endpoint.addr()
    }

    /// Times the sentinels switched this master (0 unless Sentinel-managed).
    pub fn switches(&self) -> u64 {
        self.endpoint.switches()
    }

    /// Queues a request; its answer goes to `req.reply_to` tagged with this
    /// master's index. It fails at once while the master is down or backlogged.
    pub(crate) fn send(&self, req: Request) {
        let refusal = if self.state() == MasterState::Down {
            Some(NoReply::Down)
        } else if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            Some(NoReply::Backlog)
        } else {
            None
        };
        match refusal {
            Some(why) => self.refuse(req, why),
            None => {
                if let Err(mpsc::error::SendError(Message::Op(req))) =
                    self.tx.send(Message::Op(req))
                {
                    self.queued.fetch_sub(1, Ordering::Relaxed);
                    self.refuse(req, NoReply::Down);
                }
            }
        }
    }

    /// Answers a request that will not be sent; what it was to release is owed.
    fn refuse(&self, req: Request, why: NoReply) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        req.reply_to.push((self.index, Err(why)));
        if let Role::Releases(lock) = req.lock {
            self.owe(lock);
        }
    }

    /// Owes the release of `lock` to this master: sent after everything already
    /// queued, and retried until confirmed or moot.
    pub(crate) fn owe(&self, lock: Arc<LockRef>) {
        if self.owing.fetch_add(1, Ordering::Relaxed) >= owed::MAX_OWED {
            self.owing.fetch_sub(1, Ordering::Relaxed);
            self.owing_shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Message::Owe(lock)).is_err() {
            self.owing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Owes a release from within the task (a release that failed or was never
    /// sent): due at once (`now`), since what it cleans up was written before.
    fn owe_now(&self, backlog: &mut Backlog, lock: &Role, now: Instant) {
        if let Role::Releases(lock) = lock {
            for d in lock.debts(&self.cad.sha) {
                backlog.owed.owe(d, 0, now);
            }
        }
    }

    /// The compare-and-delete script of owed releases.
    pub(crate) fn cad(&self) -> &Arc<Preload> {
        &self.cad
    }

    /// Asks the connection task to deliver what is queued and stop (shutdown).
    pub fn stop(&self) {
        let _ = self.tx.send(Message::Stop);
    }

    /// The node left its cluster voter: its queued requests and owed releases
    /// go back to the router, and its task stops.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Message::Retire);
    }

    /// Owes one key's release that was owed elsewhere (a cluster shard's key
    /// moved here), after everything already queued.
    pub(crate) fn owe_debt(&self, debt: Debt) {
        if self.owing.fetch_add(1, Ordering::Relaxed) >= owed::MAX_OWED {
            self.owing.fetch_sub(1, Ordering::Relaxed);
            self.owing_shed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(Message::Debt(debt)).is_err() {
            self.owing.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The router, if this is a shard of a cluster voter that still exists.
    fn router(&self) -> Option<Arc<dyn Router>> {
        self.router.as_ref().and_then(Weak::upgrade)
    }

    /// On a shard: the hash tag its restart guard's marker key carries.
    pub(crate) fn set_marker_tag(&self, tag: Bytes) {
        if let Ok(mut t) = self.marker_tag.lock() {
            *t = Some(tag);
        }
    }

    /// The marker key's hash tag, if this is a shard.
    pub(super) fn marker_tag(&self) -> Option<Bytes> {
        self.marker_tag.lock().ok()?.clone()
    }

    /// A new shard that took over slots another node served (a replica
    /// promoted by a failover) may have lost grants it had not replicated: its
    /// votes count only once every lock it may have missed has expired, as
    /// for a restarted master.
    pub(crate) fn quarantine_as_restarted(&self, why: &str) {
        match self.guard.quarantine() {
            Some(d) => {
                self.quarantine_for(d, "?", why);
                self.marker_owed.store(true, Ordering::Relaxed);
            }
            None => tracing::warn!(
                master = %self.url,
                "{why}; not quarantined: max_ttl is not set and this proxy has granted no lock with a TTL"
            ),
        }
    }

    /// Takes one message into the backlog; `false` for `Stop` and `Retire`.
    fn receive(&self, backlog: &mut Backlog, msg: Message) -> bool {
        match msg {
            Message::Op(req) => {
                backlog.received += 1;
                backlog.ops.push_back((backlog.received, req));
            }
            Message::Owe(lock) => {
                self.owing.fetch_sub(1, Ordering::Relaxed);
                let now = Instant::now();
                for d in lock.debts(&self.cad.sha) {
                    backlog.owed.owe(d, backlog.received, now);
                }
            }
            Message::Debt(d) => {
                self.owing.fetch_sub(1, Ordering::Relaxed);
                backlog.owed.owe(d, backlog.received, Instant::now());
            }
            Message::Retire => {
                self.hand_over(backlog);
                return false;
            }
            Message::Stop => return false,
        }
        true
    }

    /// The node left its cluster voter: requests not yet written and releases
    /// owed go back to the router, which sends them where their keys live now.
    fn hand_over(&self, backlog: &mut Backlog) {
        let Some(router) = self.router() else {
            return;
        };
        while let Some((_, req)) = backlog.ops.pop_front() {
            self.dequeued(backlog, 1);
            router.redirect(Redirect::TryAgain, req);
        }
        for debt in backlog.owed.drain() {
            router.rehome(debt);
        }
        self.publish_owed(backlog);
    }

    /// The request at the front of the backlog has left it (written or
    /// dropped): debts owed after it may go.
    fn dequeued(&self, backlog: &mut Backlog, n: u64) {
        self.queued.fetch_sub(n as usize, Ordering::Relaxed);
        backlog.owed.written(n);
    }

    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Message>,
        shutdown: CancellationToken,
    ) {
        let mut backlog = Backlog::default();
        let mut log = LogLimiter::default();
        let handshake = Handshake::new().ping();
        // Failures in a row: connects and handshakes that failed. A connection
        // that closes (CLIENT KILL, the master's timeout, a middlebox) is no
        // failure: the master is reconnected at once and requests wait for it.
        let mut failures: u32 = 0;
        // Connections in a row that closed before HEALTHY.
        let mut quick_closes: u32 = 0;
        loop {
            if failures >= 2 {
                // Repeated failures: down, and wait before the next attempt.
                self.set_state(MasterState::Down);
                let backoff = BACKOFF_MIN
                    .saturating_mul(1 << (failures - 2).min(8))
                    .min(BACKOFF_MAX);
                if !self
                    .wait_down(&mut rx, &mut backlog, backoff, &shutdown)
                    .await
                {
                    return;
                }
            }
            self.set_state(MasterState::Connecting);
            let connected = tokio::select! {
                r = self.endpoint.connect(&handshake) => r,
                stop = self.wait_connecting(&mut rx, &mut backlog, &shutdown) => {
                    debug_assert!(stop);
                    return;
                }
            };
            let connected = match connected {
                Ok(mut conn) => {
                    let identified =
                        tokio::time::timeout(CONNECT_TIMEOUT, self.identify(&mut conn));
                    match identified.await {
                        Ok(Ok(())) => Ok(conn),
                        Ok(Err(e)) => Err(e),
                        Err(_) => Err(crate::backend::BackendError::new(
                            crate::backend::ErrorKind::Timeout,
                            self.addr(),
                            "no answer to INFO within the connect timeout",
                        )),
                    }
                }
                Err(e) => Err(e),
            };
            let conn = match connected {
                Ok(conn) => conn,
                Err(e) => {
                    failures += 1;
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    log.error(&self.url, &e.to_string());
                    if let Some(router) = self.router() {
                        router.failed();
                    }
                    continue;
                }
            };
            failures = 0;
            self.stats.connects.fetch_add(1, Ordering::Relaxed);
            self.set_state(MasterState::Up);
            log.connected(&self.url);
            let since = Instant::now();
            let mut conn = MasterConnection::new(conn, Arc::clone(&self));
            let result = conn.serve(&mut rx, &mut backlog, &shutdown).await;
            conn.lost(&mut backlog);
            if self.retired.load(Ordering::Relaxed) {
                // Releases the lost requests leave owed belong to the router.
                self.hand_over(&mut backlog);
            }
            self.publish_owed(&backlog);
            match result {
                Ok(()) => return, // shutdown, or every sender gone
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    if let Some(router) = self.router() {
                        router.failed();
                    }
                    log.error(&self.url, &e.to_string());
                    quick_closes = if since.elapsed() >= HEALTHY {
                        0
                    } else {
                        quick_closes + 1
                    };
                    if quick_closes > 1 {
                        // Closing again and again: reconnect a little later,
                        // still connecting (requests wait, within their deadline).
                        self.set_state(MasterState::Connecting);
                        let pause = CHURN_STEP.saturating_mul(quick_closes).min(CHURN_MAX);
                        let stop = tokio::select! {
                            _ = tokio::time::sleep(pause) => false,
                            stop = self.wait_connecting(&mut rx, &mut backlog, &shutdown) => stop,
                        };
                        if stop {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// While connecting: takes messages into the backlog (requests wait for
    /// the connection). Returns when told to stop.
    async fn wait_connecting(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        backlog: &mut Backlog,
        shutdown: &CancellationToken,
    ) -> bool {
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        if !self.receive(backlog, msg) {
                            return true;
                        }
                    }
                    None => return true,
                },
                _ = shutdown.cancelled() => return true,
            }
        }
    }

    /// While down: requests fail at once (queued ones included), debts are
    /// recorded. Returns false when told to stop.
    async fn wait_down(
        &self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        backlog: &mut Backlog,
        backoff: Duration,
        shutdown: &CancellationToken,
    ) -> bool {
        let until = Instant::now() + backoff;
        loop {
            while let Some((_, req)) = backlog.ops.pop_front() {
                self.dequeued(backlog, 1);
                self.refuse(req, NoReply::Down);
            }
            self.publish_owed(backlog);
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        if !self.receive(backlog, msg) {
                            return false;
                        }
                    }
                    None => return false,
                },
                _ = tokio::time::sleep_until(until) => return true,
                _ = shutdown.cancelled() => return false,
            }
        }
    }

    fn publish_owed(&self, backlog: &Backlog) {
        self.stats
            .owed
            .store(backlog.owed.len() as u64, Ordering::Relaxed);
        let early = self.owing_shed.load(Ordering::Relaxed);
        self.stats
            .owed_shed
            .store(backlog.owed.shed() + early, Ordering::Relaxed);
    }
}
