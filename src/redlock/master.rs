//! One lock master: a single shared, pipelined, reconnecting connection that
//! serves every client of the proxy.
//!
//! Requests are written in the order they are queued and answered in that order
//! (Redis's pipelining), so a cleanup queued after an acquisition always runs
//! after it on that master, even when the master was paused in between. While
//! the master is down, requests fail at once (an operation never waits for a
//! connect) and the task reconnects in the background with backoff, logging
//! repeated failures at most every [`LOG_EVERY`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendError, Connection, Endpoint, ErrorKind, Handshake};
use crate::config::RedisUrl;
use crate::protocol::encode_command;

/// Why a master gave no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterError {
    /// The master is down: the request was not sent.
    Down,
    /// Too many requests are queued for this master: not sent.
    Backlog,
    /// Sent, but the connection failed before the reply: the outcome is unknown.
    Lost,
}

/// A master's reply, or why there is none.
pub type MasterReply = Result<BytesFrame, MasterError>;

/// Where the masters' replies to one lock operation collect, tagged with the
/// master's index.
pub type Replies = crate::inbox::Inbox<(usize, MasterReply)>;

/// Where a reply goes.
pub type ReplySender = Arc<Replies>;

/// Connection state, for logs now and for health checks and the restart guard later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MasterState {
    /// Connecting (at start or after a failure).
    Connecting = 0,
    /// Connected.
    Up = 1,
    /// Not connected; waiting before the next attempt.
    Down = 2,
}

/// Counters kept by the master's task.
#[derive(Debug, Default)]
pub struct MasterStats {
    /// Requests written.
    pub sent: AtomicU64,
    /// Requests refused while the master was down or backlogged.
    pub refused: AtomicU64,
    /// Requests skipped because their operation had already given up.
    pub expired: AtomicU64,
    /// Connections established (the first one included).
    pub connects: AtomicU64,
    /// Connection attempts or connections that failed.
    pub failures: AtomicU64,
}

/// Most operation requests waiting for one master before new ones are refused.
const MAX_QUEUED: usize = 100_000;
/// Most cleanups kept while a master is down.
const MAX_DEFERRED: usize = 100_000;
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Repeated errors of one master are logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// New requests are taken only while less than this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;

enum ReplyTo {
    /// An operation waits for the reply.
    Op { tx: ReplySender, index: usize },
    /// A fire-and-forget cleanup; kept across reconnects until `expires`.
    Cleanup { expires: Option<Instant> },
    /// A command of the connection's own (SCRIPT LOAD); its reply is dropped.
    Ignore,
    /// Not a request: the proxy is shutting down. Everything queued before it is
    /// delivered first.
    Stop,
}

struct Request {
    cmd: Bytes,
    deadline: Option<Instant>,
    reply_to: ReplyTo,
    preload: Option<Arc<Preload>>,
}

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

/// A lock master and the handle to its connection task.
#[derive(Debug)]
pub struct Master {
    /// Position in the configuration.
    pub index: usize,
    /// Where it is.
    pub url: RedisUrl,
    endpoint: Endpoint,
    tx: mpsc::UnboundedSender<Request>,
    queued: AtomicUsize,
    state: AtomicU8,
    /// Counters.
    pub stats: MasterStats,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("len", &self.cmd.len())
            .finish()
    }
}

impl Master {
    /// Creates the master and spawns its connection task on `tracker`.
    pub fn spawn(
        index: usize,
        endpoint: Endpoint,
        shutdown: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Master> {
        let (tx, rx) = mpsc::unbounded_channel();
        let master = Arc::new(Master {
            index,
            url: endpoint.url().clone(),
            endpoint,
            tx,
            queued: AtomicUsize::new(0),
            state: AtomicU8::new(MasterState::Connecting as u8),
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

    /// Queues `cmd` for an operation; the reply goes to `tx` tagged with this
    /// master's index. A request still unsent at `deadline` is dropped.
    pub fn send(&self, cmd: Bytes, deadline: Instant, tx: &ReplySender) {
        self.send_with(cmd, None, deadline, tx);
    }

    /// Like [`send`](Self::send), for an EVALSHA whose script is loaded first
    /// where this connection has not loaded it yet.
    pub fn send_with(
        &self,
        cmd: Bytes,
        preload: Option<Arc<Preload>>,
        deadline: Instant,
        tx: &ReplySender,
    ) {
        if self.state() == MasterState::Down {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tx.push((self.index, Err(MasterError::Down)));
            return;
        }
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            tx.push((self.index, Err(MasterError::Backlog)));
            return;
        }
        let req = Request {
            cmd,
            deadline: Some(deadline),
            reply_to: ReplyTo::Op {
                tx: Arc::clone(tx),
                index: self.index,
            },
            preload,
        };
        if let Err(mpsc::error::SendError(req)) = self.tx.send(req) {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            if let ReplyTo::Op { tx, index } = req.reply_to {
                tx.push((index, Err(MasterError::Down)));
            }
        }
    }

    /// Asks the connection task to deliver what is queued and stop (shutdown).
    pub fn stop(&self) {
        let _ = self.tx.send(Request {
            cmd: Bytes::new(),
            deadline: None,
            reply_to: ReplyTo::Stop,
            preload: None,
        });
    }

    /// Queues a cleanup (a release after a refused acquisition). It is never
    /// dropped for load, and survives reconnects until `expires` (the lock's TTL).
    pub fn send_cleanup(&self, cmd: Bytes, expires: Option<Instant>) {
        let _ = self.tx.send(Request {
            cmd,
            deadline: None,
            reply_to: ReplyTo::Cleanup { expires },
            preload: None,
        });
    }

    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<Request>,
        shutdown: CancellationToken,
    ) {
        let mut deferred: VecDeque<Request> = VecDeque::new();
        let mut backoff = BACKOFF_MIN;
        let mut log = LogLimiter::default();
        let handshake = Handshake::new();
        loop {
            self.set_state(MasterState::Connecting);
            let connected = tokio::select! {
                r = self.endpoint.connect(&handshake) => r,
                _ = shutdown.cancelled() => break,
            };
            match connected {
                Ok(connection) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    self.set_state(MasterState::Up);
                    if log.failures > 0 {
                        tracing::info!(master = %self.url, failures = log.failures, "master reconnected");
                    } else {
                        tracing::debug!(master = %self.url, "master connected");
                    }
                    log = LogLimiter::default();
                    backoff = BACKOFF_MIN;
                    let mut conn = MasterConnection::new(connection);
                    let result = conn.serve(&self, &mut rx, &mut deferred).await;
                    self.set_state(MasterState::Down);
                    for p in conn.pending.drain(..) {
                        fail_pending(p, &mut deferred);
                    }
                    match result {
                        Ok(()) => break, // shutdown, or every sender gone
                        Err(e) => {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            log.error(&self.url, &e.to_string());
                        }
                    }
                }
                Err(e) => {
                    self.stats.failures.fetch_add(1, Ordering::Relaxed);
                    self.set_state(MasterState::Down);
                    log.error(&self.url, &e.to_string());
                }
            }
            // Down: answer at once until it is time to try again.
            let until = Instant::now() + backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            loop {
                tokio::select! {
                    req = rx.recv() => match req {
                        Some(req) => self.refuse(req, &mut deferred),
                        None => return,
                    },
                    _ = tokio::time::sleep_until(until) => break,
                    _ = shutdown.cancelled() => return,
                }
            }
        }
    }

    /// Answers a request while the master is down.
    fn refuse(&self, req: Request, deferred: &mut VecDeque<Request>) {
        match req.reply_to {
            ReplyTo::Op { tx, index } => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.refused.fetch_add(1, Ordering::Relaxed);
                tx.push((index, Err(MasterError::Down)));
            }
            ReplyTo::Cleanup { .. } => defer(req, deferred),
            ReplyTo::Ignore | ReplyTo::Stop => {}
        }
    }
}

fn defer(req: Request, deferred: &mut VecDeque<Request>) {
    if let ReplyTo::Cleanup { expires: Some(e) } = req.reply_to {
        if e <= Instant::now() {
            return;
        }
    }
    if deferred.len() >= MAX_DEFERRED {
        deferred.pop_front();
    }
    deferred.push_back(req);
}

/// A written request waiting for its reply.
struct Pending {
    reply_to: ReplyTo,
    /// Kept for cleanups, which are re-sent after a reconnect.
    cmd: Bytes,
    /// The script an EVALSHA relies on having loaded.
    script: Option<Bytes>,
}

fn fail_pending(p: Pending, deferred: &mut VecDeque<Request>) {
    match p.reply_to {
        ReplyTo::Op { tx, index } => {
            tx.push((index, Err(MasterError::Lost)));
        }
        reply_to @ ReplyTo::Cleanup { .. } => defer(
            Request {
                cmd: p.cmd,
                deadline: None,
                reply_to,
                preload: None,
            },
            deferred,
        ),
        ReplyTo::Ignore | ReplyTo::Stop => {}
    }
}

struct MasterConnection {
    conn: Connection,
    pending: VecDeque<Pending>,
    /// Scripts this connection has loaded on the master.
    loaded: std::collections::HashSet<Bytes>,
}

impl MasterConnection {
    fn new(conn: Connection) -> Self {
        MasterConnection {
            conn,
            pending: VecDeque::new(),
            loaded: std::collections::HashSet::new(),
        }
    }

    fn enqueue(&mut self, master: &Master, req: Request) {
        if let ReplyTo::Op { .. } = &req.reply_to {
            master.queued.fetch_sub(1, Ordering::Relaxed);
            // Its operation has given up (the master was stalled or reconnecting):
            // sending it now would only leave work, or a token, behind. A request
            // whose operation decided early is still sent: a grant decided by a
            // quorum is best held by every master.
            if req.deadline.is_some_and(|d| d <= Instant::now()) {
                master.stats.expired.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        master.stats.sent.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = &req.preload {
            if !self.loaded.contains(&p.sha) {
                self.conn.out().extend_from_slice(&p.load);
                self.pending.push_back(Pending {
                    reply_to: ReplyTo::Ignore,
                    cmd: Bytes::new(),
                    script: None,
                });
                self.loaded.insert(p.sha.clone());
            }
        }
        self.conn.out().extend_from_slice(&req.cmd);
        self.pending.push_back(Pending {
            cmd: match req.reply_to {
                ReplyTo::Cleanup { .. } => req.cmd,
                ReplyTo::Op { .. } | ReplyTo::Ignore | ReplyTo::Stop => Bytes::new(),
            },
            script: req.preload.as_ref().map(|p| p.sha.clone()),
            reply_to: req.reply_to,
        });
    }

    fn read_replies(&mut self) -> Result<(), BackendError> {
        let protocol = |peer: &str, what: &dyn std::fmt::Display| {
            BackendError::new(ErrorKind::Protocol, peer, what)
        };
        while let Some(info) = self.conn.next_reply()? {
            let mut bytes = self.conn.take(info.len);
            let decoded = redis_protocol::resp2::decode::decode_bytes_mut(&mut bytes)
                .map_err(|e| protocol(self.conn.peer(), &format_args!("{e:?}")))?;
            let Some((frame, _, _)) = decoded else {
                return Err(protocol(self.conn.peer(), &"reply framing disagreement"));
            };
            let Some(p) = self.pending.pop_front() else {
                return Err(protocol(self.conn.peer(), &"a reply without a request"));
            };
            match p.reply_to {
                ReplyTo::Op { tx, index } => {
                    if let (BytesFrame::Error(e), Some(sha)) = (&frame, &p.script) {
                        if e.starts_with("NOSCRIPT") {
                            // Flushed behind our back: load it again next time.
                            self.loaded.remove(sha);
                        }
                    }
                    tx.push((index, Ok(frame)));
                }
                ReplyTo::Cleanup { .. } | ReplyTo::Ignore | ReplyTo::Stop => {
                    if let BytesFrame::Error(e) = frame {
                        tracing::debug!(error = %e, "cleanup or script load failed on a master");
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs the connection until it fails, or until a `Stop` request (shutdown)
    /// has been reached in the queue and everything before it delivered.
    async fn serve(
        &mut self,
        master: &Master,
        rx: &mut mpsc::UnboundedReceiver<Request>,
        deferred: &mut VecDeque<Request>,
    ) -> Result<(), BackendError> {
        while let Some(req) = deferred.pop_front() {
            if let ReplyTo::Cleanup { expires: Some(e) } = req.reply_to {
                if e <= Instant::now() {
                    continue;
                }
            }
            self.enqueue(master, req);
        }
        self.conn.flush()?;
        loop {
            let want_requests = self.conn.out().len() < WRITE_HIGH_WATER;
            tokio::select! {
                biased;
                req = rx.recv(), if want_requests => {
                    let Some(req) = req else { return Ok(()) };
                    if matches!(req.reply_to, ReplyTo::Stop) {
                        return self.finish(master, rx).await;
                    }
                    self.enqueue(master, req);
                    // Let the connections that are ready run first: their requests
                    // join this batch, and one write carries them all.
                    tokio::task::yield_now().await;
                    while self.conn.out().len() < WRITE_HIGH_WATER {
                        match rx.try_recv() {
                            Ok(Request { reply_to: ReplyTo::Stop, .. }) => {
                                self.conn.flush()?;
                                return self.finish(master, rx).await;
                            }
                            Ok(req) => self.enqueue(master, req),
                            Err(_) => break,
                        }
                    }
                    self.conn.flush()?;
                }
                r = self.conn.io(true) => {
                    r?;
                    self.read_replies()?;
                }
            }
        }
    }

    /// Shutdown: delivers what is queued (cleanups above all), briefly.
    async fn finish(
        &mut self,
        master: &Master,
        rx: &mut mpsc::UnboundedReceiver<Request>,
    ) -> Result<(), BackendError> {
        while let Ok(req) = rx.try_recv() {
            if !matches!(req.reply_to, ReplyTo::Stop) {
                self.enqueue(master, req);
            }
        }
        let _ = tokio::time::timeout(Duration::from_millis(500), self.drain()).await;
        Ok(())
    }

    /// Writes everything and reads every pending reply.
    async fn drain(&mut self) -> Result<(), BackendError> {
        while !self.pending.is_empty() || self.conn.has_output() {
            self.conn.io(!self.pending.is_empty()).await?;
            self.read_replies()?;
        }
        Ok(())
    }
}

/// Rate-limits error logs for one master.
#[derive(Default)]
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
    failures: u64,
}

impl LogLimiter {
    fn error(&mut self, url: &RedisUrl, error: &str) {
        self.failures += 1;
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < LOG_EVERY => self.suppressed += 1,
            _ => {
                tracing::warn!(master = %url, error, suppressed = self.suppressed, "master unavailable");
                self.last = Some(now);
                self.suppressed = 0;
            }
        }
    }
}
