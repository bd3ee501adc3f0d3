//! One shared backend connection and its task: requests of many clients
//! written in batches, each reply handed to whoever waits for it, in order.
//!
//! Used for the single backend (one per protocol) and for each node of a
//! cluster backend, where requests are *routed*: each keeps its bytes, so a
//! `MOVED`, `ASK` or `TRYAGAIN` reply is handed back to the router (the
//! [`Redirects`]) to send again elsewhere instead of reaching the client.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use super::{Mailbox, clock};
use crate::backend::cluster::Redirect;
use crate::backend::{BackendError, Connection, Endpoint, ErrorKind, Handshake};
use crate::protocol::{Proto, encode_command};

/// Replies larger than this are copied out of the read buffer (see `deliver`).
const OWN_ALLOCATION_OVER: usize = 64 * 1024;

/// A batch buffer larger than this is not kept for the next batch.
const KEEP_BATCH_BUFFER: usize = 256 * 1024;

/// Where a reply goes.
#[derive(Debug, Clone)]
pub(crate) enum ReplyTo {
    /// A client's mailbox, tagged with the slot's sequence number (none when
    /// the client silenced it with `CLIENT REPLY`).
    Client(Arc<Mailbox>, Option<u64>),
    /// Part `usize` of a command split across cluster nodes.
    Part(Arc<dyn Parts>, usize),
}

/// Who gathers the parts of a command split across nodes into one reply.
pub(crate) trait Parts: Send + Sync + std::fmt::Debug {
    /// Part `i`'s reply arrived.
    fn part(&self, i: usize, frame: Bytes);
}

impl ReplyTo {
    /// Hands over the reply.
    pub(crate) fn deliver(self, frame: Bytes) {
        match self {
            ReplyTo::Client(m, seq) => m.push((seq, frame)),
            ReplyTo::Part(g, i) => g.part(i, frame),
        }
    }
}

/// A request sent by a cluster router, kept until its reply came, to follow
/// the cluster's redirections.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The request, encoded.
    pub(crate) request: Bytes,
    /// Who gets the reply.
    pub(crate) to: ReplyTo,
    /// Its hash slot.
    pub(crate) slot: u16,
    /// Redirections followed so far.
    pub(crate) hops: u8,
    /// The lane of the shared connections it takes on every node (the
    /// client's requests in flight are all on one lane).
    pub(crate) lane: usize,
    /// The client's own connections (`multiplex = false`), which a
    /// redirection also takes; `None`: the shared ones.
    pub(crate) own: Option<Weak<super::OwnConnections>>,
}

/// Who follows a routed request's redirection.
pub(crate) trait Redirects: Send + Sync + std::fmt::Debug {
    /// The node answered `redirect` to `routed`, sent in `proto`.
    fn redirect(&self, redirect: Redirect, routed: Box<Routed>, proto: Proto);
    /// The connection to the node failed: the topology may have changed.
    fn failed(&self);
}

/// Who gets a reply.
#[derive(Debug)]
enum Waiter {
    /// A client's, or a part's.
    Reply(ReplyTo),
    /// A cluster router's request.
    Routed(Box<Routed>),
    /// Dropped: the proxy sent the command itself.
    Swallow,
}

/// Buffers of the connection's task, kept from one read to the next.
#[derive(Debug, Default)]
struct Scratch {
    /// The replies of one read.
    frames: Vec<Bytes>,
    /// Their waiters, taken out of [`Inner`] under one lock.
    waiters: Vec<Waiter>,
    /// Consecutive replies to one client.
    run: Vec<(Option<u64>, Bytes)>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Requests not yet written.
    wbuf: BytesMut,
    /// One per request written or to be written, in order.
    waiters: VecDeque<Waiter>,
}

/// One shared connection (and its task, started at first use).
#[derive(Debug)]
pub(crate) struct SharedConnection {
    proto: Proto,
    backend: Endpoint,
    inner: Mutex<Inner>,
    notify: Notify,
    started: AtomicBool,
    /// No longer in the topology: the task ends once nothing waits.
    retired: AtomicBool,
    /// The socket is open.
    open: AtomicBool,
    redirects: Option<Weak<dyn Redirects>>,
    timeouts: Timeouts,
    /// Whether requests wait without replies (see [`Progress`]).
    progress: Progress,
}

/// What a shared connection gives up on.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timeouts {
    /// How long the server may send nothing while requests wait (none: no
    /// limit); then they fail.
    pub(crate) reply: Option<Duration>,
    /// How long the connection stays open with nothing to do (none: for
    /// good); it opens again at the next request.
    pub(crate) idle: Option<Duration>,
}

/// Whether a connection's requests get replies: what tells a stalled one (a
/// request the server holds, and every one written behind it, waits) from a
/// busy one.
#[derive(Debug, Default)]
struct Progress {
    /// Requests queued or written whose reply has not come.
    waiting: AtomicUsize,
    /// When the last reply came, or requests started waiting on an idle
    /// connection ([`clock`] nanoseconds).
    since: AtomicU64,
    /// This stall was counted already.
    counted: AtomicBool,
    /// Times the reply timeout ended the connection.
    timeouts: AtomicU64,
}

impl SharedConnection {
    /// A connection to `backend` in protocol `proto`; routed requests'
    /// redirections go to `redirects`.
    pub(crate) fn new(
        proto: Proto,
        backend: Endpoint,
        redirects: Option<Weak<dyn Redirects>>,
        timeouts: Timeouts,
    ) -> Arc<Self> {
        Arc::new(SharedConnection {
            proto,
            backend,
            inner: Mutex::new(Inner::default()),
            notify: Notify::new(),
            started: AtomicBool::new(false),
            retired: AtomicBool::new(false),
            open: AtomicBool::new(false),
            redirects,
            timeouts,
            progress: Progress::default(),
        })
    }

    /// Requests queued or written whose reply has not come.
    pub(crate) fn waiting(&self) -> usize {
        self.progress.waiting.load(Ordering::Relaxed)
    }

    /// Whether requests have waited longer than `after` nanoseconds with
    /// no reply at all (`now`: [`clock`] nanoseconds).
    pub(crate) fn stalled(&self, now: u64, after: u64) -> bool {
        self.waiting() > 0 && self.waited(now) > after
    }

    /// Nanoseconds since the last reply (or since requests started waiting).
    pub(crate) fn waited(&self, now: u64) -> u64 {
        now.saturating_sub(self.progress.since.load(Ordering::Relaxed))
    }

    /// Times the reply timeout ended the connection.
    pub(crate) fn timeouts(&self) -> u64 {
        self.progress.timeouts.load(Ordering::Relaxed)
    }

    /// Marks the current stall as counted; true the first time.
    pub(crate) fn count_stall(&self) -> bool {
        !self.progress.counted.swap(true, Ordering::Relaxed)
    }

    /// Whether the socket is open.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }

    /// Queues a request whose reply goes to `to`.
    pub(crate) fn send(self: &Arc<Self>, request: &[u8], to: ReplyTo) {
        self.enqueue(|inner| {
            inner.wbuf.extend_from_slice(request);
            inner.waiters.push_back(Waiter::Reply(to));
        });
    }

    /// Queues a routed request (after `ASKING` when `asking`).
    pub(crate) fn send_routed(self: &Arc<Self>, routed: Box<Routed>, asking: bool) {
        self.enqueue(|inner| {
            if asking {
                encode_command(&mut inner.wbuf, [&b"ASKING"[..]].into_iter());
                inner.waiters.push_back(Waiter::Swallow);
            }
            inner.wbuf.extend_from_slice(&routed.request);
            inner.waiters.push_back(Waiter::Routed(routed));
        });
    }

    /// Queues `n` requests of the proxy's own, encoded back to back in
    /// `requests`, whose replies nobody reads (together: nothing comes between).
    pub(crate) fn send_unanswered(self: &Arc<Self>, requests: &[u8], n: usize) {
        self.enqueue(|inner| {
            inner.wbuf.extend_from_slice(requests);
            inner
                .waiters
                .extend(std::iter::repeat_with(|| Waiter::Swallow).take(n));
        });
    }

    /// The node left the topology: the task ends once nothing waits.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Adds under the lock (starting the task at first use), and wakes the
    /// task when it had nothing to write.
    fn enqueue(self: &Arc<Self>, add: impl FnOnce(&mut Inner)) {
        self.start();
        let was_empty;
        {
            let Ok(mut inner) = self.inner.lock() else {
                return;
            };
            was_empty = inner.wbuf.is_empty();
            if inner.waiters.is_empty() {
                // Waiting starts now: a stall is measured from here.
                self.progress.since.store(clock::now(), Ordering::Relaxed);
            }
            add(&mut inner);
            self.progress
                .waiting
                .store(inner.waiters.len(), Ordering::Relaxed);
        }
        if was_empty {
            self.notify.notify_one();
        }
    }

    /// Starts the connection's task if it is not running.
    fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).run());
        }
    }

    async fn run(self: Arc<Self>) {
        let handshake = Handshake::new().proto(self.proto);
        loop {
            // Wait for something to send before (re)connecting.
            while self.idle() {
                if self.retired.load(Ordering::Acquire) {
                    // The task ends; a request that still comes (from a
                    // client that read the topology before the retirement)
                    // starts it again rather than waiting for nobody.
                    self.started.store(false, Ordering::Release);
                    if self.idle() || self.started.swap(true, Ordering::AcqRel) {
                        return;
                    }
                    continue;
                }
                self.notify.notified().await;
            }
            let result = match self.backend.connect(&handshake).await {
                Ok(conn) => {
                    self.open.store(true, Ordering::Relaxed);
                    let served = self.serve(conn).await;
                    self.open.store(false, Ordering::Relaxed);
                    served
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "shared backend connection failed");
                self.fail_all(&e);
                // Do not spin on a backend that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    fn idle(&self) -> bool {
        self.inner
            .lock()
            .map(|i| i.waiters.is_empty())
            .unwrap_or(true)
    }

    /// Every waiting request gets the error; the connection's state is gone.
    fn fail_all(&self, reason: &BackendError) {
        let err = reason.reply().to_bytes(self.proto);
        let waiters = match self.inner.lock() {
            Ok(mut inner) => {
                inner.wbuf.clear();
                self.progress.waiting.store(0, Ordering::Relaxed);
                std::mem::take(&mut inner.waiters)
            }
            Err(_) => return,
        };
        if let Some(r) = self.redirects.as_ref().and_then(Weak::upgrade) {
            r.failed();
        }
        for w in waiters {
            match w {
                Waiter::Reply(to) => to.deliver(err.clone()),
                Waiter::Routed(r) => r.to.deliver(err.clone()),
                Waiter::Swallow => {}
            }
        }
    }

    async fn serve(&self, mut conn: Connection) -> Result<(), BackendError> {
        let mut scratch = Scratch::default();
        // When the server last sent something, or requests started waiting.
        let mut heard = tokio::time::Instant::now();
        let mut was_idle = true;
        loop {
            // Let ready clients queue their requests first: one write for them all.
            tokio::task::yield_now().await;
            // Take what clients queued, and write what the socket takes.
            if let Ok(mut inner) = self.inner.lock() {
                if conn.out().is_empty() {
                    // The usual case: trade buffers, no copy (each keeps its
                    // allocation for the next batch).
                    std::mem::swap(conn.out(), &mut inner.wbuf);
                    if inner.wbuf.capacity() > KEEP_BATCH_BUFFER {
                        // A burst is over: give its memory back.
                        inner.wbuf = BytesMut::new();
                    }
                } else if !inner.wbuf.is_empty() {
                    conn.out().extend_from_slice(&inner.wbuf);
                    inner.wbuf.clear();
                }
            }
            conn.flush()?;
            let idle = self.idle();
            if self.retired.load(Ordering::Acquire) && idle && !conn.has_output() {
                return Ok(());
            }
            if was_idle && !idle {
                heard = tokio::time::Instant::now();
            }
            was_idle = idle;
            let silent_until = self.timeouts.reply.filter(|_| !idle).map(|t| heard + t);
            // Idle since `heard` (the last reply): closed after a while.
            let close_at = self.timeouts.idle.filter(|_| idle).map(|t| heard + t);
            let read_before = conn.input_len();
            let generation = conn.generation();
            tokio::select! {
                biased;
                r = conn.io(true) => {
                    r?;
                    if conn.input_len() > read_before {
                        heard = tokio::time::Instant::now();
                    }
                    self.deliver(&mut conn, &mut scratch, heard)?;
                }
                _ = self.notify.notified() => {}
                _ = self.backend.moved(generation) => {
                    // A Sentinel switch: requests in flight fail, the next
                    // ones go to the new master.
                    return Err(BackendError::new(ErrorKind::Switched, conn.peer(), ""));
                }
                _ = sleep_until_opt(silent_until) => {
                    self.progress.timeouts.fetch_add(1, Ordering::Relaxed);
                    let waited = self.timeouts.reply.unwrap_or_default();
                    let what = format!("{waited:?} (requests waiting)");
                    return Err(BackendError::new(ErrorKind::Timeout, conn.peer(), what));
                }
                _ = sleep_until_opt(close_at), if !conn.has_output() => {
                    if self.idle() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Hands every complete reply to its waiter, in order.
    fn deliver(
        &self,
        conn: &mut Connection,
        scratch: &mut Scratch,
        heard: tokio::time::Instant,
    ) -> Result<(), BackendError> {
        let Scratch {
            frames,
            waiters,
            run,
        } = scratch;
        frames.clear();
        // Replies read before a reply that cannot be framed still go to
        // their waiters; the connection fails after them.
        let mut failed = None;
        loop {
            let info = match conn.next_reply() {
                Ok(Some(info)) => info,
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            // A large reply gets an allocation of its own: taken as a slice, it
            // would keep the read buffer it arrived in (up to twice its size,
            // which grew while it came in) alive for as long as a client that
            // does not read holds it.
            let frame = if info.len > OWN_ALLOCATION_OVER {
                let own = Bytes::copy_from_slice(conn.frame(info.len));
                conn.consume(info.len);
                own
            } else {
                conn.take(info.len).freeze()
            };
            // Nobody subscribes on a shared connection: a push is no reply.
            if !info.is_push() {
                frames.push(frame);
            }
        }
        if frames.is_empty() {
            return failed.map_or(Ok(()), Err);
        }
        // One lock for the whole read.
        {
            let Ok(mut inner) = self.inner.lock() else {
                return Err(BackendError::new(
                    ErrorKind::Io,
                    conn.peer(),
                    "poisoned lock",
                ));
            };
            if inner.waiters.len() < frames.len() {
                let what = "a reply nobody asked for";
                return Err(BackendError::new(ErrorKind::Protocol, conn.peer(), what));
            }
            waiters.extend(inner.waiters.drain(..frames.len()));
            let p = &self.progress;
            p.waiting.store(inner.waiters.len(), Ordering::Relaxed);
            p.since.store(clock::at(heard), Ordering::Relaxed);
            p.counted.store(false, Ordering::Relaxed);
        }
        // A client's pipelined requests were written together, so their
        // replies come in runs: each run goes into its mailbox at once (one
        // lock, one wake-up).
        // Replies to other waiters need not wait for a run: a client orders
        // its replies by sequence number.
        let mut run_owner: Option<Arc<Mailbox>> = None;
        for (w, frame) in waiters.drain(..).zip(frames.drain(..)) {
            match w {
                Waiter::Reply(ReplyTo::Client(m, seq)) => {
                    if let Some(prev) = run_owner.take_if(|prev| !Arc::ptr_eq(prev, &m)) {
                        prev.push_all(run.drain(..));
                    }
                    run_owner = Some(m);
                    run.push((seq, frame));
                }
                Waiter::Reply(to) => to.deliver(frame),
                Waiter::Routed(routed) => self.routed_reply(routed, frame),
                Waiter::Swallow => {}
            }
        }
        if let Some(m) = run_owner {
            m.push_all(run.drain(..));
        }
        failed.map_or(Ok(()), Err)
    }

    /// A routed request's reply: a redirection goes back to the router.
    fn routed_reply(&self, routed: Box<Routed>, frame: Bytes) {
        if let Some(redirect) = Redirect::parse(&frame) {
            if let Some(r) = self.redirects.as_ref().and_then(Weak::upgrade) {
                r.redirect(redirect, routed, self.proto);
                return;
            }
        }
        routed.to.deliver(frame);
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
