//! A client's own backend connection: opened at its first command that needs
//! it, with the session's state replayed by the handshake; requests queue while
//! it opens.

use std::future::Future;
use std::pin::Pin;

use bytes::BytesMut;

use crate::backend::{BackendError, Connection, Endpoint, ErrorKind, Handshake};
use crate::protocol::FrameInfo;

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, BackendError>> + Send>>;

/// Where the link stands.
enum Link {
    /// No connection: the next forwarded command opens one.
    Closed,
    /// Connecting and running the handshake.
    Connecting(Connecting),
    /// Open.
    Open(Connection),
}

/// What happened on the link.
pub(super) enum Event {
    /// The connection opened (or could not).
    Connected(Result<(), BackendError>),
    /// Bytes moved (or the connection failed).
    Io(Result<(), BackendError>),
}

/// One client's backend connection.
pub(super) struct BackendLink {
    state: Link,
    /// Where it is (or was last) opened: a Sentinel switch ends it.
    endpoint: Option<Endpoint>,
    /// Requests waiting for the connection to open.
    queued: BytesMut,
    /// Part of the reply at the front was passed on already (a large reply
    /// streams through): the rest must follow, and nothing else can come first.
    mid_reply: bool,
    /// The client left: no request follows, and the backend is to see the
    /// end of the stream once what was sent is written (see
    /// [`end_writes`](Self::end_writes)).
    ending: bool,
}

impl BackendLink {
    /// No connection yet.
    pub(super) fn new() -> Self {
        BackendLink {
            state: Link::Closed,
            endpoint: None,
            queued: BytesMut::new(),
            mid_reply: false,
            ending: false,
        }
    }

    /// A connection is open or opening.
    pub(super) fn attached(&self) -> bool {
        !matches!(self.state, Link::Closed)
    }

    /// A link over an open connection, for unit tests.
    #[cfg(test)]
    pub(super) fn open(conn: Connection) -> Self {
        BackendLink {
            state: Link::Open(conn),
            ..BackendLink::new()
        }
    }

    /// Opens the connection if there is none, with `handshake`.
    pub(super) fn attach(&mut self, backend: &Endpoint, handshake: Handshake) {
        if self.attached() {
            return;
        }
        let backend = backend.clone();
        self.endpoint = Some(backend.clone());
        self.state = Link::Connecting(Box::pin(async move { backend.connect(&handshake).await }));
    }

    /// The connection went silent too long while it owed a reply that should
    /// have come at once (see `Settings::reply_timeout`).
    pub(super) fn silence(&self, waited: std::time::Duration) -> BackendError {
        let peer = match &self.state {
            Link::Open(conn) => conn.peer(),
            Link::Closed | Link::Connecting(_) => "",
        };
        let what = format!("{waited:?} (a reply owed)");
        BackendError::new(ErrorKind::Timeout, peer, what)
    }

    /// The open connection's id on the backend, if its handshake asked.
    pub(super) fn server_id(&self) -> Option<u64> {
        match &self.state {
            Link::Open(conn) => conn.server_id(),
            Link::Closed | Link::Connecting(_) => None,
        }
    }

    /// Whether the connection is open (not closed, not still connecting).
    pub(super) fn open_now(&self) -> bool {
        matches!(self.state, Link::Open(_))
    }

    /// Takes `conn`, already open to `backend`, if there is no connection.
    pub(super) fn attach_open(&mut self, backend: &Endpoint, mut conn: Connection) {
        if self.attached() {
            return;
        }
        self.endpoint = Some(backend.clone());
        if self.ending {
            conn.end_writes();
        }
        self.state = Link::Open(conn);
    }

    /// Where requests go: the open connection's output, or the queue that waits
    /// for it to open.
    pub(super) fn out(&mut self) -> &mut BytesMut {
        match &mut self.state {
            Link::Open(conn) => conn.out(),
            Link::Closed | Link::Connecting(_) => &mut self.queued,
        }
    }

    /// Writes what the socket takes now.
    pub(super) fn flush(&mut self) -> Result<(), BackendError> {
        match &mut self.state {
            Link::Open(conn) => conn.flush(),
            Link::Closed | Link::Connecting(_) => Ok(()),
        }
    }

    /// Waits for the link's next event (never, without a connection). Reads at
    /// most `read` bytes of replies: a client that does not take its replies
    /// stops the reading (0), and the backend keeps what it has not sent.
    pub(super) async fn event(&mut self, read: usize) -> Event {
        match &mut self.state {
            Link::Closed => std::future::pending().await,
            Link::Connecting(f) => match f.await {
                Ok(mut conn) => {
                    // What was queued while connecting goes first.
                    std::mem::swap(conn.out(), &mut self.queued);
                    if self.ending {
                        conn.end_writes();
                    }
                    self.state = Link::Open(conn);
                    Event::Connected(Ok(()))
                }
                Err(e) => Event::Connected(Err(e)),
            },
            Link::Open(conn) => match &self.endpoint {
                Some(endpoint) => {
                    let generation = conn.generation();
                    tokio::select! {
                        r = conn.io_at_most(read) => Event::Io(r),
                        _ = endpoint.moved(generation) => Event::Io(Err(BackendError::new(
                            ErrorKind::Switched,
                            conn.peer(),
                            "",
                        ))),
                    }
                }
                None => Event::Io(conn.io_at_most(read).await),
            },
        }
    }

    /// The next complete reply, if one is in.
    pub(super) fn next_reply(&mut self) -> Result<Option<FrameInfo>, BackendError> {
        match &mut self.state {
            Link::Open(conn) => conn.next_reply(),
            Link::Closed | Link::Connecting(_) => Ok(None),
        }
    }

    /// The reply [`next_reply`](Self::next_reply) found.
    pub(super) fn frame(&self, len: usize) -> &[u8] {
        match &self.state {
            Link::Open(conn) => conn.frame(len),
            Link::Closed | Link::Connecting(_) => &[],
        }
    }

    /// Drops the reply [`next_reply`](Self::next_reply) found.
    pub(super) fn consume(&mut self, len: usize) {
        if let Link::Open(conn) = &mut self.state {
            conn.consume(len);
        }
        self.mid_reply = false;
    }

    /// The part of an incomplete reply already in (see `Connection::partial`).
    pub(super) fn partial(&self) -> &[u8] {
        match &self.state {
            Link::Open(conn) => conn.partial(),
            Link::Closed | Link::Connecting(_) => &[],
        }
    }

    /// Drops the partial reply just passed on; its rest follows.
    pub(super) fn consume_partial(&mut self) {
        if let Link::Open(conn) = &mut self.state {
            conn.consume_partial();
            self.mid_reply = true;
        }
    }

    /// Part of the reply at the front has been passed on already.
    pub(super) fn mid_reply(&self) -> bool {
        self.mid_reply
    }

    /// Reply bytes read and not yet passed on.
    pub(super) fn buffered(&self) -> usize {
        match &self.state {
            Link::Open(conn) => conn.input_len(),
            Link::Closed | Link::Connecting(_) => 0,
        }
    }

    /// The client left and every request it sent was handled: once they are
    /// written, the backend sees the end of the stream, as it would from the
    /// client itself. Redis then cancels what the client left blocked (a
    /// `BLPOP` that would take the next element pushed, for nobody), its
    /// transaction and its subscriptions, and still answers what came before.
    pub(super) fn end_writes(&mut self) {
        self.ending = true;
        if let Link::Open(conn) = &mut self.state {
            conn.end_writes();
        }
    }

    /// Whether [`end_writes`](Self::end_writes) was called: the backend
    /// closing its side is then the expected end, not a failure.
    pub(super) fn ending(&self) -> bool {
        self.ending
    }

    /// The connection failed: back to no connection, with nothing queued.
    pub(super) fn reset(&mut self) {
        *self = BackendLink::new();
    }
}
