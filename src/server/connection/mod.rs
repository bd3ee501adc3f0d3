//! One client connection: read requests, classify each once, forward it,
//! answer it or run it as a lock operation, and write the replies.
//!
//! # Invariant: every request gets exactly one reply, in request order
//!
//! Each request that expects a reply gets a slot in the [`ReplyQueue`] when it
//! is handled, in arrival order, whatever handles it: the backend (its replies
//! arrive in the order the requests were forwarded, and fill `Backend` slots
//! front to back), a lock operation or a shared backend connection (they finish
//! in any order and fill their own `Pending` slot by sequence number), or the
//! proxy itself (a `Ready` slot at once). Replies leave only from the front of
//! the queue; a backend reply is not even read off its buffer while a lock
//! operation ahead of it is still running. Slots are never removed out of
//! order: a backend that fails turns its slots into error replies in place.
//!
//! Two things break the one-reply-per-request shape of the backend's stream:
//! pub/sub and MONITOR (RESP2 messages look like replies) and `CLIENT REPLY`.
//! `CLIENT REPLY` is handled here (the backend always replies; silenced slots
//! swallow the reply). After a (un)subscribe or MONITOR replies are no longer
//! counted until a resynchronisation finds the count again (`resync.rs`).
//!
//! Replies are written in batches: everything ready is appended to one buffer
//! and written with as few writes as the socket takes.
//!
//! # Files
//!
//! - `mod.rs`: the connection's state, its event loop and the client socket.
//! - `dispatch.rs`: each request, classified, goes where it belongs.
//! - `local.rs`: the commands the proxy answers itself.
//! - `backend.rs`: the client's own backend connection; `route.rs`: whether a
//!   command takes it or a shared one (multiplexing); `cluster.rs`: the same
//!   choice with a cluster backend, where the own connection is pinned to one
//!   master for a transaction, a blocking command or a subscription.
//! - `flow.rs`: backend replies to their slots, and a failed backend.
//! - `request.rs`: a forwarded request as it is written to a backend.
//! - `queue.rs`: the reply queue; `replies.rs`: the output and reply hooks.
//! - `resync.rs`: counting replies again after pub/sub.
//! - `visible.rs`: what `CLIENT LIST` and `MONITOR` show of the connection.

mod backend;
mod cluster;
mod dispatch;
mod flow;
mod local;
mod permissions;
mod queue;
mod replies;
mod request;
mod resync;
mod route;
#[cfg(test)]
mod tests;
mod visible;

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use self::backend::BackendLink;
use self::queue::ReplyQueue;
use self::replies::Output;
use self::resync::Counting;
use self::route::Route;
use super::client_list::{Profile, state as client_state};
use super::clients::{Client, GRANULE};
use super::monitor::Feed;
use super::multiplex::clock;
use super::session::Session;
use super::{Live, Shared};
use crate::errors;
use crate::protocol::{ArgList, Proto, RequestParser};
use crate::redlock::{Grant, Outcome};
use crate::stream::{READ_CHUNK, Stream};

/// Lock operations one connection may have running at once; past this the
/// connection stops reading until some finish.
const MAX_INFLIGHT_OPS: usize = 1024;
/// Replies one connection may wait for; past this it stops reading.
const MAX_QUEUED_REPLIES: usize = 64 * 1024;
/// Locks without expiry one connection keeps track of, to release when it closes.
const MAX_BOUND: usize = 64 * 1024;

/// What a connection takes from the configuration, computed once for all.
#[derive(Debug, Clone, Copy)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent options from the configuration, each read on its own"
)]
pub(crate) struct Settings {
    /// The backend URL's database: where a session starts and a RESET returns.
    pub(crate) default_db: u32,
    /// Close a client idle this long (zero: never).
    pub(crate) idle_timeout: Duration,
    /// How long the client's own backend connection may stay silent while it
    /// owes a reply that should come at once.
    pub(crate) reply_timeout: Duration,
    /// Most bytes buffered for a client (0: no limit).
    pub(crate) max_output_buffer: usize,
    /// Past this many buffered bytes, requests and the client's backend
    /// replies are no longer read until it drains.
    pub(crate) output_high_water: usize,
    /// Most bytes of an unfinished request.
    pub(crate) max_query_buffer: usize,
    /// Clients must authenticate first (the default user is off or has a password).
    pub(crate) auth_required: bool,
    /// The proxy authenticates clients itself (`requirepass` or `[[users]]`):
    /// otherwise `AUTH` goes to the backend.
    pub(crate) proxy_auth: bool,
    /// `passthrough.identity = "client"`: a client's backend connection logs
    /// in as the client's user.
    pub(crate) client_identity: bool,
    /// `server.auth_failure_limit` and `auth_failure_window`.
    pub(crate) auth_limit: (u32, Duration),
    /// Stateless commands share backend connections.
    pub(crate) multiplex: bool,
    /// The backend is a Redis Cluster.
    pub(crate) cluster: bool,
    /// Locks without expiry are released when the connection that took them
    /// ends (`redlock.bind_ttl_less_locks`).
    pub(crate) bind_ttl_less_locks: bool,
}

type OpFuture = Pin<Box<dyn Future<Output = (Option<u64>, Proto, Outcome)> + Send>>;

/// What ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// Not closing.
    No,
    /// Close as soon as the output is written (QUIT, protocol error).
    AfterWrite,
    /// Close now; the client will not get what is pending (write error, limits).
    Abandon,
}

/// Where the client's requests stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Read from the socket and handled.
    Open,
    /// The client closed its side: no more come (those already read are
    /// handled), and it can never release a lock without expiry.
    Eof,
    /// The proxy is shutting down: no more are read.
    Draining,
    /// None is handled any more (QUIT, a protocol error).
    Refused,
}

/// What a handler asks of the read loop.
enum Flow {
    /// The request is handled.
    Done,
    /// Handle the same request again later (after a resynchronisation, or once
    /// shared replies are in).
    Retry,
}

/// Everything but the read side, so a request borrowed from the read buffer can
/// be handled with `&mut State`.
struct State {
    shared: Arc<Shared>,
    /// The configuration, classifier and engine in effect (a reload replaces them).
    live: Arc<Live>,
    /// The reload generation `live` belongs to.
    generation: u64,
    settings: Settings,
    session: Session,
    queue: ReplyQueue,
    output: Output,
    ops: FuturesUnordered<OpFuture>,
    backend: BackendLink,
    counting: Counting,
    route: Route,
    input: Input,
    close: Close,
    /// With `bind_ttl_less_locks`, locks without expiry granted on this
    /// connection and not released on it: released when the client's input
    /// closes, since it could never release them after that.
    bound: Vec<Grant>,
    /// Replies awaited from a shared connection that the proxy rewrites, by
    /// sequence number: `INFO` gets the proxy's section, `SCRIPT EXISTS` the
    /// proxy's answers for lock scripts (only `AppendInfo` and `ScriptExists`).
    shared_hooks: Vec<(u64, queue::Hook)>,
    /// Replies taken from the shared connections' mailbox, being handled.
    arrived: Vec<(Option<u64>, bytes::Bytes)>,
    /// Requests waiting in the read buffer may go on (a resynchronisation
    /// finished, or a barrier was lifted).
    wake: bool,
    /// Cluster backend: the master the client's own connection is (to be)
    /// opened to, and the slot its transaction or `WATCH` is bound to.
    pin: Option<crate::server::cluster::Pin>,
    tx_slot: Option<u16>,
    /// Cluster backend: a transaction whose master is not known yet (no key
    /// so far): `MULTI` and the keyless commands after it, answered by the
    /// proxy and sent once a key names the master (their replies dropped).
    tx_held: Option<(bytes::BytesMut, usize)>,
    /// Cluster backend with `multiplex = false`: the client's own connections
    /// to the masters.
    own_conns: Option<Arc<crate::server::multiplex::OwnConnections>>,
    /// Cluster backend: the next request waits until the client's own
    /// connection has answered everything (it goes to a shared one next).
    link_barrier: bool,
    /// When the requests being handled were read ([`clock`] nanoseconds),
    /// if they were read in this turn of the loop: picking a shared lane
    /// needs the time, and this saves reading the clock per request.
    now: Option<u64>,
    /// This client in the server's registry: what `CLIENT LIST` shows of it,
    /// published by [`State::publish`].
    me: Arc<Client>,
    /// The client's address, as `MONITOR` lines show it.
    origin: String,
    /// The last command's name, as `CLIENT LIST` shows it (`client|list`).
    last_cmd: &'static str,
    /// What changed since [`State::publish`] last published.
    changed: visible::Changed,
    /// The `client_list::state` bits last published.
    published_state: u8,
    /// In `MONITOR`: the lines for this client.
    feed: Option<Arc<Feed>>,
}

struct Conn {
    client: Stream,
    inbuf: BytesMut,
    /// What is left in `inbuf` is the start of a request, not all of it.
    partial: bool,
    parser: RequestParser,
    st: State,
}

/// Serves one client until it leaves, the proxy shuts down, or a limit is hit.
pub(crate) async fn serve(client: Stream, id: u64, shared: Arc<Shared>, profile: Profile) {
    let generation = shared.generation.load(Ordering::Acquire);
    let live = shared.live.load_full();
    let settings = live.settings;
    let origin = profile.addr.to_string();
    let me = shared.registry.register(id, profile);
    let mut conn = Conn {
        client,
        // Buffers grow with use: an idle client costs little.
        inbuf: BytesMut::new(),
        partial: false,
        parser: RequestParser::new(live.limits),
        st: State {
            session: Session::new(id, settings.default_db, !settings.auth_required),
            queue: ReplyQueue::default(),
            output: Output::with_cap(settings.output_high_water + READ_CHUNK),
            ops: FuturesUnordered::new(),
            backend: BackendLink::new(),
            counting: Counting::Counted,
            route: Route::new(settings.multiplex, settings.cluster),
            input: Input::Open,
            close: Close::No,
            bound: Vec::new(),
            shared_hooks: Vec::new(),
            arrived: Vec::new(),
            wake: false,
            pin: None,
            tx_slot: None,
            tx_held: None,
            own_conns: (settings.cluster && !settings.multiplex).then(Default::default),
            link_barrier: false,
            now: None,
            me: Arc::clone(&me),
            origin,
            last_cmd: "NULL",
            changed: visible::Changed {
                cmd: false,
                profile: true,
            },
            published_state: 0,
            feed: None,
            settings,
            live,
            generation,
            shared,
        },
    };
    let mut published = 0;
    conn.run(&me, &mut published).await;
    if conn.st.feed.take().is_some() {
        conn.st.shared.monitors.unsubscribe(id);
    }
    conn.st.shared.registry.adjust(published, 0);
    // Counted until its locks are cleaned up: a test (or an operator) that
    // sees the client gone sees what it held released or on its way.
    conn.st.abandon().await;
    conn.st.shared.registry.unregister(id);
}

/// What happened on the client socket.
enum ClientEvent {
    /// Bytes read (0: the client closed its side).
    Read(std::io::Result<usize>),
    /// Bytes written.
    Wrote(std::io::Result<usize>),
}

/// Waits for progress on the client socket: output written (if there is some),
/// or requests read (if `read`).
fn poll_client(
    cx: &mut TaskContext<'_>,
    client: &mut Stream,
    inbuf: &mut BytesMut,
    out: &mut BytesMut,
    read: bool,
) -> Poll<ClientEvent> {
    if !out.is_empty() || client.wants_write() {
        let before = out.len();
        match client.poll_write_out(cx, out) {
            Poll::Ready(Err(e)) => return Poll::Ready(ClientEvent::Wrote(Err(e))),
            Poll::Ready(Ok(())) | Poll::Pending if out.len() < before => {
                return Poll::Ready(ClientEvent::Wrote(Ok(before - out.len())));
            }
            Poll::Ready(Ok(())) | Poll::Pending => {}
        }
    }
    if read {
        if let Poll::Ready(r) = client.poll_read_into(cx, inbuf) {
            return Poll::Ready(ClientEvent::Read(r));
        }
    }
    Poll::Pending
}

impl Conn {
    async fn run(&mut self, client: &Client, published: &mut usize) {
        let idle = self.st.settings.idle_timeout;
        let mut last_activity = Instant::now();
        let mut draining = false;
        // Since when the backend owes a prompt reply and has said nothing.
        let mut silent_since: Option<Instant> = None;
        // Bytes written to the client by the last turn (the memory guard
        // closes clients that take nothing first).
        let mut last_flushed = 0;
        loop {
            let flags = &self.st.shared.shutdown;
            if flags.forced.load(Ordering::Relaxed) {
                self.st.close = Close::Abandon;
                return;
            }
            if client.evicted.load(Ordering::Relaxed) {
                tracing::info!(
                    id = self.st.session.id,
                    bytes = self.st.buffered(),
                    "client closed: all clients' buffers passed max_client_memory"
                );
                self.st.close = Close::Abandon;
                return;
            }
            if client.killed.load(Ordering::Relaxed) {
                tracing::debug!(id = self.st.session.id, "client closed by CLIENT KILL");
                self.st.close = Close::Abandon;
                return;
            }
            if !draining && flags.draining.load(Ordering::Relaxed) {
                // Read no more requests; finish and answer the ones in flight.
                draining = true;
                if self.st.input == Input::Open {
                    self.st.input = Input::Draining;
                }
                self.inbuf.clear();
            }
            self.st.refresh_live();
            self.process_input();
            let handled_all = self.inbuf.is_empty() || self.partial;
            if matches!(self.st.input, Input::Eof | Input::Draining) && handled_all {
                // Every request the client sent is handled: the backend sees
                // it leave, and drops whatever it left blocked there.
                self.st.backend.end_writes();
            }
            self.st.advance();
            if self.st.link_barrier && self.st.queue.backend_waiting() == 0 {
                self.st.link_barrier = false;
                self.st.wake = true;
            }
            if std::mem::take(&mut self.st.wake) {
                // Requests waiting in the buffer go on.
                self.process_input();
                self.st.advance();
            }
            if self.flush_client().is_err() {
                self.st.client_closed();
                self.st.close = Close::Abandon;
            }
            self.st.flush_backend();
            self.check_output_limit();
            let buffered = self.st.buffered();
            client.buffered.store(buffered, Ordering::Relaxed);
            let flushed = self.st.output.flushed();
            client.progress(buffered == 0 || flushed != last_flushed);
            last_flushed = flushed;
            if buffered.abs_diff(*published) >= GRANULE || (buffered == 0 && *published != 0) {
                self.st.shared.registry.adjust(*published, buffered);
                *published = buffered;
            }
            if buffered >= self.st.settings.output_high_water {
                self.st.route.too_heavy();
            }
            self.st.publish();
            match self.st.close {
                Close::Abandon => return,
                Close::AfterWrite if self.st.output.is_empty() => return,
                _ => {}
            }
            if self.st.input != Input::Open
                && self.st.queue.is_empty()
                && self.st.ops.is_empty()
                && self.st.output.is_empty()
            {
                return;
            }
            let want_read = self.st.input == Input::Open
                && self.st.close == Close::No
                && self.st.ready_for_requests();
            let want_write = !self.st.output.is_empty() || self.client.wants_write();
            let backend_read = self.st.backend_read();
            // A backend that owes a reply which should come at once (not a
            // blocked command's), to a client taking its replies, and stays
            // silent past the reply timeout is taken for gone (stopped,
            // partitioned): the client gets errors, not a wait without end.
            let owed = backend_read > 0
                && self.st.counting.counted()
                && self.st.backend.open_now()
                && self.st.queue.oldest_backend_patient() == Some(false);
            if !owed {
                silent_since = None;
            }
            let reply_timeout = self.st.settings.reply_timeout;
            let silent_until =
                owed.then(|| *silent_since.get_or_insert_with(Instant::now) + reply_timeout);
            let idle_at = (!idle.is_zero()).then(|| last_activity + idle);
            let revoke_at = self.st.output.next_deadline();
            let st = &mut self.st;
            st.now = None;
            tokio::select! {
                biased;
                Some((seq, proto, outcome)) = st.ops.next(), if !st.ops.is_empty() => {
                    st.complete(seq, proto, outcome);
                }
                (seq, reply) = mailbox_recv(&st.route), if st.route.awaiting().is_some() => {
                    st.shared_replies(seq, reply);
                }
                ev = st.backend.event(backend_read) => {
                    silent_since = None;
                    st.on_backend(ev);
                }
                _ = sleep_until_opt(silent_until) => {
                    st.shared.metrics.backend_reply_timeouts.fetch_add(1, Ordering::Relaxed);
                    let e = st.backend.silence(reply_timeout);
                    st.fail_backend(e);
                }
                ev = poll_fn(|cx| poll_client(cx, &mut self.client, &mut self.inbuf, st.output.buf(), want_read)),
                    if want_read || want_write =>
                {
                    match ev {
                        ClientEvent::Wrote(Ok(n)) => st.output.written(n),
                        // EOF: answer what was sent, then close.
                        ClientEvent::Read(Ok(0)) => st.client_closed(),
                        ClientEvent::Read(Ok(_)) => {
                            last_activity = Instant::now();
                            let now = clock::at(last_activity);
                            st.now = Some(now);
                            st.me.last_active.store(now, Ordering::Relaxed);
                        }
                        ClientEvent::Read(Err(e)) | ClientEvent::Wrote(Err(e))
                            if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        ClientEvent::Read(Err(_)) | ClientEvent::Wrote(Err(_)) => {
                            // Reset by the client: its input is gone too.
                            st.client_closed();
                            st.close = Close::Abandon;
                        }
                    }
                }
                // A leased reply the client has not read is replaced once stale.
                _ = sleep_until_opt(revoke_at) => st.revoke_stale_output(),
                _ = sleep_until_opt(idle_at) => {
                    if st.queue.is_empty() && st.ops.is_empty() && st.counting.counted() {
                        tracing::debug!(id = st.session.id, "closing idle client");
                        return;
                    }
                    last_activity = Instant::now();
                }
                // Last: polled only when nothing else is ready. A busy connection
                // sees shutdown through the flags checked at the top of the loop.
                _ = st.shared.shutdown.signal(client, draining) => {}
            }
        }
    }

    /// Parses and handles every complete request in the read buffer.
    fn process_input(&mut self) {
        self.partial = false;
        while self.st.close == Close::No
            && self.st.input != Input::Refused
            && self.st.ready_for_requests()
            && !self.inbuf.is_empty()
        {
            self.parser.set_authenticated(self.st.session.authenticated);
            match self.parser.parse(&self.inbuf) {
                Err(e) => {
                    self.st.protocol_error(&e);
                    return;
                }
                Ok(None) => {
                    self.partial = true;
                    let limit = self.st.settings.max_query_buffer;
                    if self.inbuf.len() > limit {
                        self.st
                            .shared
                            .metrics
                            .protocol_errors
                            .fetch_add(1, Ordering::Relaxed);
                        self.st.reply_now(errors::query_buffer_limit(limit));
                        self.st.finish();
                    }
                    return;
                }
                Ok(Some(n)) => {
                    let args = self.parser.args(&self.inbuf);
                    if !args.is_empty() {
                        let inline = self.parser.is_inline();
                        if let Flow::Retry = self.st.handle(args, &self.inbuf[..n], inline) {
                            return;
                        }
                    }
                    self.inbuf.advance(n);
                }
            }
        }
        if self.inbuf.is_empty() && self.inbuf.capacity() > 4 * READ_CHUNK {
            // A burst is over: give its memory back.
            self.inbuf = BytesMut::new();
        }
    }

    /// Writes as much output as the socket takes without waiting.
    fn flush_client(&mut self) -> std::io::Result<()> {
        if !self.st.output.is_empty() || self.client.wants_write() {
            let n = self.client.write_now(self.st.output.buf())?;
            self.st.output.written(n);
        }
        Ok(())
    }

    /// A client that does not read its replies is closed past `max_output_buffer`.
    fn check_output_limit(&mut self) {
        let max_out = self.st.settings.max_output_buffer;
        if max_out > 0 && self.st.buffered() > max_out {
            self.st
                .shared
                .metrics
                .output_limit
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                id = self.st.session.id,
                bytes = self.st.buffered(),
                "client closed for overcoming its output buffer limit"
            );
            self.st.close = Close::Abandon;
        }
    }
}

impl State {
    /// Whether the next request can be handled now: no resynchronisation or
    /// barrier in the way, and room for more work.
    fn ready_for_requests(&self) -> bool {
        !self.counting.paused()
            && !self.route.waiting()
            && !self.link_barrier
            && self.ops.len() < MAX_INFLIGHT_OPS
            && self.queue.len() < MAX_QUEUED_REPLIES
            && self.buffered() < self.settings.output_high_water
    }

    /// Bytes held for this client: replies ready or written to the output,
    /// and what its backend connection sent that was not passed on yet.
    fn buffered(&self) -> usize {
        self.output.len() + self.queue.ready_bytes() + self.backend.buffered()
    }

    /// How much of the client's backend connection to read: what still fits
    /// under the high watermark. When nothing waits to be written to the
    /// client, at least a chunk (the reply at the front may have to come in
    /// whole before anything can go).
    fn backend_read(&self) -> usize {
        let held = self.output.len() + self.backend.buffered();
        let room = self.settings.output_high_water.saturating_sub(held);
        if self.output.is_empty() {
            room.max(READ_CHUNK)
        } else {
            room
        }
    }

    /// Takes the configuration of a reload, if there was one since.
    fn refresh_live(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.live = self.shared.live.load_full();
            self.settings = self.live.settings;
            // The user's permissions as the new configuration has them; a
            // user it no longer has is logged out by closing the
            // connection, as Redis closes a deleted user's clients.
            if let Some(name) = &self.session.user {
                match self.live.users.get(name) {
                    Some(u) => self.session.perms = Some(Arc::clone(u)),
                    None if self.input == Input::Open => self.finish(),
                    None => {}
                }
            }
        }
    }

    /// Whether a grant of a lock without expiry can no longer be kept: such
    /// locks are bound to their connection, and its client closed its side.
    fn ttl_less_unreleasable(&self) -> bool {
        self.settings.bind_ttl_less_locks && self.input == Input::Eof
    }

    /// The client closed its side: no more requests, and replies granting
    /// locks it could never release are revoked.
    fn client_closed(&mut self) {
        if self.input == Input::Eof {
            return;
        }
        if self.input != Input::Refused {
            self.input = Input::Eof;
        }
        self.revoke_stale_output();
        for grant in self.bound.drain(..) {
            self.live.engine.release_grant(&grant);
        }
    }

    /// A lock without expiry was granted to this client: with
    /// `bind_ttl_less_locks` it is bound to the connection (up to
    /// [`MAX_BOUND`] of them; past that, like on Redis, it stays until
    /// released). Otherwise it stays until released, as on Redis.
    fn bind(&mut self, grant: &Grant) {
        if self.settings.bind_ttl_less_locks && !grant.has_ttl() && self.bound.len() < MAX_BOUND {
            self.bound.push(grant.clone());
        }
    }
}

async fn mailbox_recv(route: &Route) -> (Option<u64>, bytes::Bytes) {
    match route.awaiting() {
        Some(m) => m.pop().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
