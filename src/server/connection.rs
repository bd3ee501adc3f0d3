//! One client connection: read requests, classify each once, forward it,
//! answer it or run it as a lock operation, and write the replies.
//!
//! # Invariant: every request gets exactly one reply, in request order
//!
//! Each request that expects a reply gets a slot in the [`ReplyQueue`] when it
//! is handled, in arrival order, whatever handles it: the passthrough backend
//! (its replies arrive in the order the requests were forwarded, and fill
//! `Upstream` slots front to back), a lock operation (finishes in any order and
//! fills its own `Pending` slot by sequence number), or the proxy itself (a
//! `Ready` slot at once). Replies leave only from the front of the queue; a
//! backend reply is not even read off its buffer while a lock operation ahead
//! of it is still running. Slots are never removed out of order: a backend that
//! fails turns its slots into error replies in place.
//!
//! Two things break the one-reply-per-request shape of the backend's stream:
//! pub/sub and MONITOR (RESP2 messages look like replies) and `CLIENT REPLY`.
//! `CLIENT REPLY` is handled here (the backend always replies; silenced slots
//! swallow the reply). After a (un)subscribe or MONITOR the connection is
//! "uncounted": forwarded commands get no slot and the backend's frames are
//! forwarded as they come. The first command that needs a slot then sends a
//! `PING <marker>` and waits (reading no further requests) until the marker
//! comes back: everything before it has been forwarded, the queue is empty, and
//! the marker's shape (`*2 pong marker` vs `$marker`) tells whether the client
//! is still subscribed. Counting resumes from there.
//!
//! Replies are written in batches: everything ready is appended to one buffer
//! and written with as few writes as the socket takes.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context as TaskContext, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use futures_util::task::AtomicWaker;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::Shared;
use super::multiplex::Mailbox;
use super::queue::{Hook, ReplyQueue, Slot};
use super::session::Session;
use crate::backend::{BackendError, Connection};
use crate::command::{Command, Context, Effect, Local, ReplyMode};
use crate::errors;
use crate::protocol::{ArgList, Args, Proto, ProtocolError, Reply, RequestParser, encode_command};
use crate::redlock::op::LockOp;
use crate::redlock::{Grant, Outcome};

/// Lock operations one connection may have running at once; past this the
/// connection stops reading until some finish.
const MAX_INFLIGHT_OPS: usize = 1024;
/// Replies one connection may wait for; past this it stops reading.
const MAX_QUEUED_REPLIES: usize = 64 * 1024;
/// Read size.
const READ_CHUNK: usize = 64 * 1024;

type OpFuture = Pin<Box<dyn Future<Output = (Option<u64>, Proto, Outcome)> + Send>>;
type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connection, BackendError>> + Send>>;

enum Upstream {
    Closed,
    Connecting(ConnectFuture),
    Open(Connection),
}

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

/// Serves one client until it leaves, the proxy shuts down, or a limit is hit.
pub(crate) async fn serve(client: TcpStream, id: u64, shared: Arc<Shared>) {
    let limits = shared.limits;
    let db = shared.config.passthrough.url.db;
    let mut conn = Conn {
        client,
        // Buffers grow with use: an idle client costs little.
        inbuf: BytesMut::new(),
        parser: RequestParser::new(limits),
        st: State {
            session: Session::new(id, db, !shared.auth.required()),
            out: BytesMut::new(),
            flushed: 0,
            unflushed_grants: VecDeque::new(),
            queue: ReplyQueue::default(),
            ops: FuturesUnordered::new(),
            up: Upstream::Closed,
            up_out: BytesMut::new(),
            loaded_scripts: Vec::new(),
            paused: false,
            synced: false,
            resumed: false,
            marker: None,
            close: Close::No,
            reading: true,
            accepting: true,
            mailbox: None,
            shared_outstanding: 0,
            shared_proto: Proto::Resp2,
            dedicated: false,
            barrier: false,
            shared,
        },
    };
    let waker = conn.st.shared.shutdown.register(id);
    conn.run(&waker).await;
    conn.st.shared.shutdown.unregister(id);
    conn.st.abandon().await;
}

struct Conn {
    client: TcpStream,
    inbuf: BytesMut,
    parser: RequestParser,
    st: State,
}

/// Everything but the read side, so a request borrowed from the read buffer can
/// be handled with `&mut State`.
struct State {
    shared: Arc<Shared>,
    session: Session,
    /// Replies waiting to be written to the client.
    out: BytesMut,
    /// Bytes written to the client so far.
    flushed: u64,
    /// Grants whose `OK` is in `out` but not yet written, with the position
    /// (in bytes ever queued) where that reply ends.
    unflushed_grants: VecDeque<(u64, Grant)>,
    queue: ReplyQueue,
    ops: FuturesUnordered<OpFuture>,
    up: Upstream,
    /// Requests waiting for the backend connection to open.
    up_out: BytesMut,
    /// Lock scripts loaded on this backend connection (for EVALSHA on data keys).
    loaded_scripts: Vec<Bytes>,
    /// Waiting for a resynchronisation marker: no requests are handled.
    paused: bool,
    /// At a resynchronisation point: nothing forwarded since the marker came back.
    synced: bool,
    /// A resynchronisation just finished (requests may be waiting in the buffer).
    resumed: bool,
    marker: Option<Marker>,
    close: Close,
    /// Requests are still read from the socket (false after EOF or when draining).
    reading: bool,
    /// Requests are still handled (false after QUIT or a protocol error).
    accepting: bool,
    /// Multiplexing: where this client's shared-connection replies arrive.
    mailbox: Option<Arc<Mailbox>>,
    /// Requests on a shared connection whose reply has not arrived.
    shared_outstanding: usize,
    /// The protocol of those requests.
    shared_proto: Proto,
    /// The client uses a connection of its own (for good).
    dedicated: bool,
    /// Waiting for the shared-connection replies before the next request.
    barrier: bool,
}

enum Flow {
    /// The request is handled.
    Done,
    /// Handle the same request again later (after a resynchronisation).
    Retry,
}

enum UpEvent {
    Connected(Result<Connection, BackendError>),
    Io(Result<(), BackendError>),
}

/// Grows a read buffer before a read: small at first (an idle client costs
/// little), then in big steps for a client that sends a lot.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 512 {
        let grow = if buf.capacity() < READ_CHUNK {
            4096
        } else {
            READ_CHUNK
        };
        buf.reserve(grow.max(buf.len()));
    }
}

/// Waits for one event on a socket: writable (if there is output), or bytes read
/// into `buf` (if reading). Reads go through `AsyncRead`, which knows a short
/// read drained the socket and so saves the extra `recv` that would only say
/// "would block".
fn poll_socket(
    cx: &mut TaskContext<'_>,
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    want_read: bool,
    want_write: bool,
) -> Poll<SocketEvent> {
    if want_write {
        if let Poll::Ready(r) = stream.poll_write_ready(cx) {
            return Poll::Ready(SocketEvent::Writable(r));
        }
    }
    if want_read {
        make_room(buf);
        if let Poll::Ready(r) = tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf) {
            return Poll::Ready(SocketEvent::Read(r));
        }
    }
    Poll::Pending
}

enum SocketEvent {
    Read(std::io::Result<usize>),
    Writable(std::io::Result<()>),
}

async fn upstream_event(up: &mut Upstream) -> UpEvent {
    match up {
        Upstream::Closed => std::future::pending().await,
        Upstream::Connecting(f) => UpEvent::Connected(f.await),
        Upstream::Open(c) => UpEvent::Io(c.io(true).await),
    }
}

impl Conn {
    async fn run(&mut self, shutdown_waker: &AtomicWaker) {
        let idle = self.st.shared.config.server.timeout;
        let mut last_activity = Instant::now();
        let mut draining = false;
        loop {
            let flags = &self.st.shared.shutdown;
            if flags.forced.load(Ordering::Relaxed) {
                self.st.close = Close::Abandon;
                return;
            }
            if !draining && flags.draining.load(Ordering::Relaxed) {
                self.start_draining(&mut draining);
            }
            self.process_input();
            self.st.advance();
            if std::mem::take(&mut self.st.resumed) {
                // A resynchronisation finished: requests waiting in the buffer go on.
                self.process_input();
                self.st.advance();
            }
            if self.flush_client().is_err() {
                self.st.close = Close::Abandon;
            }
            self.st.flush_upstream();
            let max_out = self.st.shared.config.limits.max_output_buffer;
            if max_out > 0 && self.st.out.len() > max_out {
                self.st
                    .shared
                    .metrics
                    .output_limit
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    id = self.st.session.id,
                    bytes = self.st.out.len(),
                    "client closed for overcoming its output buffer limit"
                );
                self.st.close = Close::Abandon;
            }
            match self.st.close {
                Close::Abandon => return,
                Close::AfterWrite if self.st.out.is_empty() => return,
                _ => {}
            }
            if !self.st.reading
                && self.st.queue.is_empty()
                && self.st.ops.is_empty()
                && self.st.out.is_empty()
            {
                return;
            }
            let want_read = self.st.reading
                && self.st.close == Close::No
                && !self.st.paused
                && !self.st.barrier
                && self.st.ops.len() < MAX_INFLIGHT_OPS
                && self.st.queue.len() < MAX_QUEUED_REPLIES;
            let want_write = !self.st.out.is_empty();
            let idle_at = (!idle.is_zero()).then(|| last_activity + idle);
            tokio::select! {
                biased;
                Some((seq, proto, outcome)) = self.st.ops.next(), if !self.st.ops.is_empty() => {
                    self.st.complete(seq, proto, outcome);
                }
                (seq, reply) = mailbox_recv(self.st.mailbox.as_deref()), if self.st.shared_outstanding > 0 => {
                    self.st.shared_replies(seq, reply);
                }
                ev = upstream_event(&mut self.st.up) => {
                    self.st.on_upstream(ev);
                }
                ev = poll_fn(|cx| poll_socket(cx, &mut self.client, &mut self.inbuf, want_read, want_write)),
                    if want_read || want_write =>
                {
                    match ev {
                        SocketEvent::Writable(Ok(())) => {}
                        SocketEvent::Read(Ok(0)) => self.st.reading = false, // EOF: answer what was sent, then close
                        SocketEvent::Read(Ok(_)) => last_activity = Instant::now(),
                        SocketEvent::Read(Err(e)) | SocketEvent::Writable(Err(e))
                            if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        SocketEvent::Read(Err(_)) | SocketEvent::Writable(Err(_)) => {
                            self.st.close = Close::Abandon;
                        }
                    }
                }
                _ = sleep_until_opt(idle_at) => {
                    if self.st.queue.is_empty() && self.st.ops.is_empty() && !self.st.session.uncounted {
                        tracing::debug!(id = self.st.session.id, "closing idle client");
                        return;
                    }
                    last_activity = Instant::now();
                }
                // Last: polled only when nothing else is ready. A busy connection
                // sees shutdown through the flags checked at the top of the loop.
                _ = shutdown_signal(&self.st.shared.shutdown, shutdown_waker, draining) => {}
            }
        }
    }

    /// Shutdown: read no more requests; finish and answer the ones in flight.
    fn start_draining(&mut self, draining: &mut bool) {
        *draining = true;
        self.st.reading = false;
        self.inbuf.clear();
    }

    /// Parses and handles every complete request in the read buffer.
    fn process_input(&mut self) {
        while self.st.close == Close::No
            && self.st.accepting
            && !self.st.paused
            && !self.st.barrier
            && !self.inbuf.is_empty()
            && self.st.ops.len() < MAX_INFLIGHT_OPS
        {
            self.parser.set_authenticated(self.st.session.authenticated);
            match self.parser.parse(&self.inbuf) {
                Err(e) => {
                    self.st.protocol_error(&e);
                    return;
                }
                Ok(None) => {
                    let limit = self.st.shared.config.limits.max_query_buffer;
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
        while !self.st.out.is_empty() {
            match self.client.try_write(&self.st.out) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.st.out.advance(n);
                    self.st.flushed += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        let flushed = self.st.flushed;
        while self
            .st
            .unflushed_grants
            .front()
            .is_some_and(|(end, _)| *end <= flushed)
        {
            self.st.unflushed_grants.pop_front();
        }
        if self.st.out.is_empty() && self.st.out.capacity() > 4 * READ_CHUNK {
            self.st.out = BytesMut::new();
        }
        Ok(())
    }
}

/// Ready when shutdown has something new for this connection (the loop then
/// reads the flags).
async fn shutdown_signal(flags: &super::ShutdownFlags, waker: &AtomicWaker, draining: bool) {
    poll_fn(|cx| {
        waker.register(cx.waker());
        if flags.forced.load(Ordering::SeqCst)
            || (!draining && flags.draining.load(Ordering::SeqCst))
        {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}

async fn mailbox_recv(mailbox: Option<&Mailbox>) -> (u64, Bytes) {
    match mailbox {
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

impl State {
    fn context(&self) -> Context {
        Context {
            in_multi: self.session.in_multi,
            multi_lost: self.session.multi_lost,
            uncounted: self.session.uncounted,
            attached: !matches!(self.up, Upstream::Closed),
            authenticated: self.session.authenticated,
        }
    }

    fn handle(&mut self, args: Args<'_>, raw: &[u8], inline: bool) -> Flow {
        let cmd = self.shared.classifier.classify(&args, self.context());
        if self.session.uncounted && !self.synced && self.needs_sync(&cmd) {
            if matches!(self.up, Upstream::Closed) {
                self.session.uncounted = false;
            } else {
                self.start_resync();
                return Flow::Retry;
            }
        }
        let m = &self.shared.metrics;
        match cmd {
            Command::Forward(effect) => {
                m.forwarded.fetch_add(1, Ordering::Relaxed);
                if self.shared.multiplex.is_some() && !self.dedicated {
                    if self.shareable(&args, &effect) {
                        if self.shared_outstanding > 0 && self.shared_proto != self.session.proto {
                            // The other protocol's connection: after these replies.
                            self.barrier = true;
                            return Flow::Retry;
                        }
                        self.forward_shared(args, raw, inline, &effect);
                        return Flow::Done;
                    }
                    if self.shared_outstanding > 0 {
                        // A connection of its own from now on, once the backend has
                        // run everything sent on the shared one.
                        self.barrier = true;
                        return Flow::Retry;
                    }
                    self.dedicated = true;
                }
                self.forward(args, raw, inline, effect);
            }
            Command::Local(local) => {
                m.local.fetch_add(1, Ordering::Relaxed);
                if self.session.uncounted && !matches!(local, Local::Quit) && !self.session.monitor
                {
                    self.reply(errors::pubsub_context(args.arg(0)));
                } else {
                    self.local(local);
                }
            }
            Command::Lock(op) => {
                m.lock_ops.fetch_add(1, Ordering::Relaxed);
                if self.session.monitor {
                    self.reply(errors::err("Replica can't interact with the keyspace"));
                } else if self.session.uncounted {
                    self.reply(errors::pubsub_context(args.arg(0)));
                } else {
                    self.lock(op);
                }
            }
            Command::Refuse(reply) => {
                m.refused.fetch_add(1, Ordering::Relaxed);
                if self.session.in_multi {
                    self.session.multi_dirty = true;
                }
                self.reply(reply);
            }
        }
        Flow::Done
    }

    /// Whether handling `cmd` in uncounted mode needs a slot (so a resynchronisation).
    fn needs_sync(&self, cmd: &Command) -> bool {
        match cmd {
            Command::Forward(Effect::ScriptExists(_) | Effect::EnsureScript(_)) => true,
            Command::Forward(Effect::Exec) => {
                self.session.in_multi && (self.session.multi_dirty || self.session.watch_lost)
            }
            Command::Forward(_) => false,
            _ => true,
        }
    }

    fn start_resync(&mut self) {
        let marker = Marker::new(self.shared.nonce, self.session.id);
        encode_command(self.backend_out(), [&b"PING"[..], &marker.text].into_iter());
        self.queue.push(Slot::Resync);
        self.marker = Some(marker);
        self.paused = true;
    }

    /// Opens the backend connection if there is none.
    fn attach(&mut self) {
        if !matches!(self.up, Upstream::Closed) {
            return;
        }
        let handshake = self.session.handshake();
        let shared = Arc::clone(&self.shared);
        self.up =
            Upstream::Connecting(Box::pin(
                async move { shared.backend.connect(&handshake).await },
            ));
    }

    /// Sends a command of the proxy's own to the backend (if attached and
    /// counting), whose reply is dropped.
    fn send_internal(&mut self, args: &[&[u8]]) {
        if matches!(self.up, Upstream::Closed) || self.session.uncounted {
            return;
        }
        encode_command(self.backend_out(), args.iter().copied());
        self.queue.push(Slot::Upstream {
            hook: Hook::Swallow,
            silent: true,
        });
    }

    /// Whether a command can go over a shared connection: no connection state in
    /// the command or the session.
    fn shareable(&self, args: &Args<'_>, effect: &Effect) -> bool {
        let s = &self.session;
        let command_ok = match effect {
            Effect::Plain { shareable } => *shareable,
            Effect::None | Effect::EnsureScript(_) | Effect::ScriptFlush => {
                crate::command::shareable(args)
            }
            _ => false,
        };
        command_ok
            && !s.in_multi
            && !s.watching
            && !s.uncounted
            && s.db == self.shared.config.passthrough.url.db
    }

    /// Sends a command over the shared connection of the session's protocol.
    fn forward_shared(&mut self, args: Args<'_>, raw: &[u8], inline: bool, effect: &Effect) {
        let Some(backends) = &self.shared.multiplex else {
            return;
        };
        if let Effect::ScriptFlush = effect {
            self.shared.classifier.scripts.flush();
        }
        let text = match effect {
            Effect::EnsureScript(sha) => self
                .shared
                .classifier
                .scripts
                .text(sha)
                .map(|t| (sha.clone(), t)),
            _ => None,
        };
        let mailbox = self.mailbox.get_or_insert_with(Default::default).clone();
        let seq = (!self.session.take_silent()).then(|| self.queue.push(Slot::Pending));
        let encoded;
        let request = if inline {
            let mut b = BytesMut::new();
            encode_command(&mut b, args.iter());
            encoded = b;
            &encoded[..]
        } else {
            raw
        };
        backends.send(
            self.session.proto,
            request,
            seq.map(|seq| (&mailbox, seq)),
            text.as_ref().map(|(sha, t)| (sha, t)),
        );
        self.shared_outstanding += 1;
        self.shared_proto = self.session.proto;
        self.synced = false;
    }

    /// Replies from a shared connection: this one, and any others already in
    /// (they come in bursts). The last one lifts a barrier.
    fn shared_replies(&mut self, seq: u64, reply: Bytes) {
        let mut next = Some((seq, reply));
        while let Some((seq, reply)) = next {
            self.queue.complete(seq, reply, None);
            self.shared_outstanding -= 1;
            next = self.mailbox.as_deref().and_then(|m| m.try_pop());
        }
        if self.shared_outstanding == 0 && self.barrier {
            self.barrier = false;
            self.resumed = true;
        }
    }

    fn forward(&mut self, args: Args<'_>, raw: &[u8], inline: bool, effect: Effect) {
        let s = &mut self.session;
        let mut hook = Hook::None;
        // (Un)subscribe and MONITOR replies cannot be counted: from here on, and
        // for the command itself, nothing is (see the module docs).
        let counted = !s.uncounted && !matches!(effect, Effect::Subscribe | Effect::Monitor);
        match effect {
            Effect::Exec if s.in_multi && (s.multi_dirty || s.watch_lost) => {
                // Redis would abort this transaction: make the backend drop it too.
                let reply = if s.multi_dirty {
                    errors::execabort()
                } else {
                    Reply::NilArray
                };
                let bytes = reply.to_bytes(s.proto);
                s.in_multi = false;
                s.multi_dirty = false;
                s.watching = false;
                s.watch_lost = false;
                self.attach();
                encode_command(self.backend_out(), [&b"DISCARD"[..]].into_iter());
                let silent = self.session.take_silent();
                self.queue.push(Slot::Upstream {
                    hook: Hook::Replace(bytes),
                    silent,
                });
                self.synced = false;
                return;
            }
            Effect::Exec | Effect::Discard => {
                s.in_multi = false;
                s.multi_dirty = false;
                s.watching = false;
                s.watch_lost = false;
            }
            Effect::Multi => {
                if !s.in_multi {
                    s.in_multi = true;
                    s.multi_dirty = false;
                }
            }
            Effect::Watch if !s.in_multi => s.watching = true,
            Effect::Unwatch => {
                s.watching = false;
                s.watch_lost = false;
            }
            Effect::Select(db) if !s.in_multi => hook = Hook::Select(db),
            Effect::Subscribe => s.uncounted = true,
            Effect::Monitor => {
                s.uncounted = true;
                s.monitor = true;
            }
            Effect::Reset if counted => hook = Hook::Reset,
            Effect::Reset => s.resets_pending += 1,
            Effect::ScriptFlush => self.shared.classifier.scripts.flush(),
            Effect::ScriptExists(patch) => hook = Hook::ScriptExists(patch),
            Effect::EnsureScript(sha) => {
                if !self.loaded_scripts.contains(&sha) {
                    if let Some(text) = self.shared.classifier.scripts.text(&sha) {
                        self.attach();
                        self.send_internal(&[b"SCRIPT", b"LOAD", &text]);
                        self.loaded_scripts.push(sha);
                    }
                }
            }
            Effect::Watch | Effect::Select(_) | Effect::None | Effect::Plain { .. } => {}
        }
        self.attach();
        if inline {
            encode_command(self.backend_out(), args.iter());
        } else {
            self.backend_out().extend_from_slice(raw);
        }
        self.synced = false;
        let silent = self.session.take_silent();
        if counted {
            self.queue.push(Slot::Upstream { hook, silent });
        }
    }

    fn local(&mut self, local: Local) {
        let proto = self.session.proto;
        match local {
            Local::Ping(None) => self.reply(Reply::Simple("PONG")),
            Local::Ping(Some(m)) | Local::Echo(m) => self.reply(Reply::Bulk(m)),
            Local::Quit => {
                self.reply(Reply::OK);
                self.finish();
            }
            Local::Hello {
                proto: p,
                auth,
                setname,
            } => {
                if let Some((user, pass)) = &auth {
                    if !self.authenticate(Some(user), pass) {
                        self.reply(errors::wrongpass());
                        return;
                    }
                }
                if let Some(name) = setname {
                    self.set_name(name);
                }
                let new_proto = p.unwrap_or(proto);
                let reply = super::local::hello(&self.shared, &self.session, new_proto);
                if new_proto != proto
                    && !matches!(self.up, Upstream::Closed)
                    && !self.session.uncounted
                {
                    // The backend must switch too, in order with what was forwarded.
                    let v = new_proto.version().to_string();
                    encode_command(
                        self.backend_out(),
                        [&b"HELLO"[..], v.as_bytes()].into_iter(),
                    );
                    let silent = self.session.take_silent();
                    self.queue.push(Slot::Upstream {
                        hook: Hook::Replace(reply.to_bytes(new_proto)),
                        silent,
                    });
                    self.session.proto = new_proto;
                    return;
                }
                self.session.proto = new_proto;
                self.reply(reply);
            }
            Local::Auth(None, _) if !self.shared.auth.required() => {
                self.reply(errors::auth_not_configured());
            }
            Local::Auth(user, pass) => {
                if self.authenticate(user.as_deref(), &pass) {
                    self.reply(Reply::OK);
                } else {
                    self.reply(errors::wrongpass());
                }
            }
            Local::Reset => {
                self.reset_session();
                self.reply(Reply::Simple("RESET"));
            }
            Local::ClientSetName(name) => {
                self.set_name(name);
                self.reply(Reply::OK);
            }
            Local::ClientGetName => {
                let r = match &self.session.name {
                    Some(n) => Reply::Bulk(n.clone()),
                    None => Reply::Nil,
                };
                self.reply(r);
            }
            Local::ClientSetInfo { lib_name, value } => {
                let attr: &[u8] = if lib_name { b"LIB-NAME" } else { b"LIB-VER" };
                self.send_internal(&[b"CLIENT", b"SETINFO", attr, &value]);
                if lib_name {
                    self.session.lib_name = Some(value);
                } else {
                    self.session.lib_ver = Some(value);
                }
                self.reply(Reply::OK);
            }
            Local::ClientReply(mode) => {
                self.session.reply_mode = mode;
                if mode == ReplyMode::On {
                    self.reply(Reply::OK);
                }
            }
            Local::ScriptLoad(sha) => self.reply(Reply::Bulk(sha)),
            Local::ScriptExists(v) => {
                self.reply(Reply::Array(
                    v.into_iter().map(|b| Reply::Int(b as i64)).collect(),
                ));
            }
            Local::ExecLost => {
                self.end_lost_transaction();
                self.reply(errors::execabort());
            }
            Local::DiscardLost => {
                self.end_lost_transaction();
                self.reply(Reply::OK);
            }
        }
    }

    /// Checks credentials; on success the session is authenticated. Without
    /// required authentication only the default user exists, with any password.
    fn authenticate(&mut self, user: Option<&[u8]>, pass: &[u8]) -> bool {
        let auth = &self.shared.auth;
        let ok = if auth.required() {
            auth.check(user, pass)
        } else {
            user.is_none_or(|u| u == crate::auth::DEFAULT_USER.as_bytes())
        };
        if ok {
            self.session.authenticated = true;
        } else {
            self.shared
                .metrics
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn reset_session(&mut self) {
        let db = self.shared.config.passthrough.url.db;
        self.session.reset(db, self.shared.auth.required());
    }

    fn end_lost_transaction(&mut self) {
        let s = &mut self.session;
        s.in_multi = false;
        s.multi_lost = false;
        s.multi_dirty = false;
        s.watching = false;
        s.watch_lost = false;
    }

    fn set_name(&mut self, name: Bytes) {
        self.send_internal(&[b"CLIENT", b"SETNAME", &name]);
        self.session.name = (!name.is_empty()).then_some(name);
    }

    fn lock(&mut self, op: LockOp) {
        let silent = self.session.take_silent();
        let seq = (!silent).then(|| self.queue.push(Slot::Pending));
        let shared = Arc::clone(&self.shared);
        let proto = self.session.proto;
        self.ops.push(Box::pin(async move {
            let outcome = shared.engine.run(op).await;
            (seq, proto, outcome)
        }));
    }

    /// A lock operation finished.
    fn complete(&mut self, seq: Option<u64>, proto: Proto, outcome: Outcome) {
        // Without a sequence number the reply was silenced (CLIENT REPLY OFF); the
        // client holds the lock as it would on a real Redis.
        if let Some(seq) = seq {
            self.queue
                .complete(seq, outcome.reply.to_bytes(proto), outcome.grant);
        }
    }

    /// Queues a reply made by the proxy (or drops it under CLIENT REPLY OFF/SKIP).
    fn reply(&mut self, reply: Reply) {
        if !self.session.take_silent() {
            self.reply_now(reply);
        }
    }

    /// A reply that bypasses CLIENT REPLY (protocol errors, limits): straight
    /// into the output when nothing is ahead of it, else in its slot.
    fn reply_now(&mut self, reply: Reply) {
        if self.queue.is_empty() {
            reply.encode(self.session.proto, &mut self.out);
        } else {
            self.queue
                .push(Slot::Ready(reply.to_bytes(self.session.proto), None));
        }
    }

    /// Stops reading; the connection closes once every earlier reply is written.
    fn finish(&mut self) {
        self.reading = false;
        self.accepting = false;
        self.queue.push(Slot::Close);
    }

    fn protocol_error(&mut self, e: &ProtocolError) {
        self.shared
            .metrics
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = self.session.id, error = %e, "protocol error");
        self.reply_now(errors::protocol(e));
        self.finish();
    }

    /// Moves ready replies to the output, routing backend frames to their slots.
    fn advance(&mut self) {
        loop {
            match self.queue.front() {
                Some(Slot::Ready(..)) => {
                    if let Some(Slot::Ready(b, grant)) = self.queue.pop() {
                        self.out.extend_from_slice(&b);
                        if let Some(g) = grant {
                            let end = self.flushed + self.out.len() as u64;
                            self.unflushed_grants.push_back((end, g));
                        }
                    }
                }
                Some(Slot::Close) => {
                    self.queue.pop();
                    self.close = Close::AfterWrite;
                    return;
                }
                Some(Slot::Pending) => return,
                Some(Slot::Upstream { .. } | Slot::Resync) | None => {
                    let Upstream::Open(conn) = &mut self.up else {
                        return;
                    };
                    match conn.next_reply() {
                        Ok(Some(info)) => self.route(info.len, info.is_push()),
                        Ok(None) => return,
                        Err(e) => {
                            self.fail_upstream(e);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Routes one complete backend frame of `len` bytes.
    fn route(&mut self, len: usize, push: bool) {
        let Upstream::Open(conn) = &mut self.up else {
            return;
        };
        let frame = conn.frame(len);
        match self.queue.front() {
            Some(Slot::Upstream { .. }) if !push => {
                if let Some(Slot::Upstream { hook, silent }) = self.queue.pop() {
                    apply_hook(
                        hook,
                        silent,
                        frame,
                        &mut self.session,
                        &mut self.out,
                        &self.shared,
                    );
                }
            }
            Some(Slot::Resync) => match self.marker.as_ref().and_then(|m| m.matches(frame)) {
                Some(still_subscribed) => {
                    self.queue.pop();
                    self.marker = None;
                    self.paused = false;
                    self.synced = true;
                    self.resumed = true;
                    self.session.uncounted = self.session.monitor || still_subscribed;
                }
                None => self.out.extend_from_slice(frame),
            },
            _ => {
                // Unsolicited: a push, a pub/sub message, a MONITOR line.
                if self.session.resets_pending > 0 && frame == b"+RESET\r\n" {
                    self.session.resets_pending -= 1;
                    if self.session.resets_pending == 0 {
                        let db = self.shared.config.passthrough.url.db;
                        self.session.reset(db, self.shared.auth.required());
                    }
                }
                self.out.extend_from_slice(frame);
            }
        }
        conn.consume(len);
    }

    fn on_upstream(&mut self, ev: UpEvent) {
        match ev {
            UpEvent::Connected(Ok(mut conn)) => {
                // What was queued while connecting goes first.
                std::mem::swap(conn.out(), &mut self.up_out);
                self.up = Upstream::Open(conn);
                self.flush_upstream();
            }
            UpEvent::Connected(Err(e)) | UpEvent::Io(Err(e)) => self.fail_upstream(e),
            UpEvent::Io(Ok(())) => {}
        }
    }

    /// Where requests for the backend go: the open connection's output, or the
    /// queue that waits for the connection to open.
    fn backend_out(&mut self) -> &mut BytesMut {
        match &mut self.up {
            Upstream::Open(conn) => conn.out(),
            _ => &mut self.up_out,
        }
    }

    fn flush_upstream(&mut self) {
        let Upstream::Open(conn) = &mut self.up else {
            return;
        };
        if let Err(e) = conn.flush() {
            self.fail_upstream(e);
        }
    }

    /// The backend connection failed: every reply still expected from it becomes
    /// an error, in place; state the backend held is marked lost.
    fn fail_upstream(&mut self, reason: BackendError) {
        self.shared
            .metrics
            .upstream_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = self.session.id, %reason, "passthrough backend connection failed");
        let err = errors::backend_unavailable(&reason).to_bytes(self.session.proto);
        self.queue.fail_upstream(&err);
        self.up = Upstream::Closed;
        self.up_out.clear();
        self.loaded_scripts.clear();
        self.marker = None;
        self.resumed |= self.paused;
        self.paused = false;
        self.synced = false;
        let s = &mut self.session;
        if s.in_multi {
            s.multi_lost = true;
        }
        if s.watching {
            s.watching = false;
            s.watch_lost = true;
        }
        s.resets_pending = 0;
        if s.uncounted {
            // Subscriptions and MONITOR died with the connection; a client can only
            // learn that by losing its own connection, and will resubscribe.
            s.uncounted = false;
            s.monitor = false;
            self.finish();
        }
    }

    /// The connection is over: releases locks granted to this client that it
    /// never heard of (its reply was not written), once their operations finish.
    async fn abandon(&mut self) {
        let engine = &self.shared.engine;
        for (_, grant) in self.unflushed_grants.drain(..) {
            engine.release_grant(&grant);
        }
        for grant in self.queue.drain_grants() {
            engine.release_grant(&grant);
        }
        while let Some((_, _, outcome)) = self.ops.next().await {
            if let Some(grant) = outcome.grant {
                engine.release_grant(&grant);
            }
        }
    }
}

/// Applies a slot's hook to the backend reply `frame` and writes the result.
fn apply_hook(
    hook: Hook,
    silent: bool,
    frame: &[u8],
    session: &mut Session,
    out: &mut BytesMut,
    shared: &Shared,
) {
    let mut write = |bytes: &[u8]| {
        if !silent {
            out.extend_from_slice(bytes);
        }
    };
    match hook {
        Hook::None => write(frame),
        Hook::Swallow => {}
        Hook::Replace(b) => write(&b),
        Hook::Select(db) => {
            if frame.first() == Some(&b'+') {
                session.db = db;
            }
            write(frame);
        }
        Hook::Reset => {
            if frame == b"+RESET\r\n" {
                let db = shared.config.passthrough.url.db;
                session.reset(db, shared.auth.required());
            }
            write(frame);
        }
        Hook::ScriptExists(patch) => match patch_script_exists(frame, &patch, session.proto) {
            Some(b) => write(&b),
            None => write(frame),
        },
    }
}

/// Rewrites a `SCRIPT EXISTS` reply (an array of integers) at the given positions.
fn patch_script_exists(frame: &[u8], patch: &[(usize, bool)], proto: Proto) -> Option<Bytes> {
    use redis_protocol::resp2::types::OwnedFrame;
    let (decoded, _) = redis_protocol::resp2::decode::decode(frame).ok()??;
    let OwnedFrame::Array(items) = decoded else {
        return None;
    };
    let mut values: Vec<Reply> = items
        .iter()
        .map(|f| match f {
            OwnedFrame::Integer(i) => Some(Reply::Int(*i)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    for &(i, exists) in patch {
        if let Some(v) = values.get_mut(i) {
            *v = Reply::Int(exists as i64);
        }
    }
    Some(Reply::Array(values).to_bytes(proto))
}

/// The `PING` argument of a resynchronisation and the two replies it can get.
struct Marker {
    text: Bytes,
    /// `$<len>\r\n<marker>\r\n`: not subscribed (or RESP3).
    bulk: Bytes,
    /// `*2\r\n$4\r\npong\r\n$<len>\r\n<marker>\r\n`: RESP2 and still subscribed.
    array: Bytes,
}

impl Marker {
    fn new(nonce: u64, id: u64) -> Marker {
        let text = format!(
            "redlock-proxy-sync-{nonce:016x}-{id}-{:08x}",
            fastrand::u32(..)
        );
        let bulk = format!("${}\r\n{}\r\n", text.len(), text);
        let array = format!("*2\r\n$4\r\npong\r\n{bulk}");
        Marker {
            text: Bytes::from(text),
            bulk: Bytes::from(bulk),
            array: Bytes::from(array),
        }
    }

    /// `Some(still_subscribed)` when `frame` is this marker's reply.
    fn matches(&self, frame: &[u8]) -> Option<bool> {
        if frame == &self.bulk[..] {
            Some(false)
        } else if frame == &self.array[..] {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_shapes() {
        let m = Marker::new(1, 2);
        let t = std::str::from_utf8(&m.text).unwrap();
        assert_eq!(
            m.matches(format!("${}\r\n{t}\r\n", t.len()).as_bytes()),
            Some(false)
        );
        assert_eq!(
            m.matches(format!("*2\r\n$4\r\npong\r\n${}\r\n{t}\r\n", t.len()).as_bytes()),
            Some(true)
        );
        assert_eq!(m.matches(b"+PONG\r\n"), None);
    }

    #[test]
    fn script_exists_patching() {
        let b = patch_script_exists(
            b"*3\r\n:0\r\n:1\r\n:0\r\n",
            &[(0, true), (2, false)],
            Proto::Resp2,
        )
        .unwrap();
        assert_eq!(&b[..], b"*3\r\n:1\r\n:1\r\n:0\r\n");
        assert!(patch_script_exists(b"-ERR x\r\n", &[(0, true)], Proto::Resp2).is_none());
    }
}
