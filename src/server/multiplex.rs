//! Multiplexed backend connections, for `passthrough.multiplex = true`.
//!
//! Commands that carry no connection state (most data commands) from every
//! client are pipelined over one backend connection per protocol, as twemproxy
//! does: the backend reads and answers them in batches, which is what makes a
//! proxy cheap at one request per round trip. A client moves to a connection of
//! its own for good at its first command that needs one (SELECT, MULTI, WATCH,
//! blocking commands, pub/sub, MONITOR, CLIENT ...), after the replies to
//! everything it sent on the shared connection have arrived, so the backend runs
//! its commands in the order it sent them.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use crate::backend::{BackendError, Connection, Endpoint, ErrorKind, Handshake};
use crate::errors;
use crate::protocol::{Proto, encode_command};

/// Replies larger than this are copied out of the read buffer (see `deliver`).
const OWN_ALLOCATION_OVER: usize = 64 * 1024;

/// Where one client's replies from a shared connection arrive: the sequence
/// number of the reply's slot (none when the client silenced it with `CLIENT
/// REPLY`: the reply still counts, so a move to an own connection waits for
/// it), and the reply.
pub(crate) type Mailbox = crate::inbox::Inbox<(Option<u64>, Bytes)>;

/// Who gets a reply.
#[derive(Debug)]
enum Waiter {
    /// A client's.
    Reply(Arc<Mailbox>, Option<u64>),
    /// Dropped: the proxy sent the command itself.
    Swallow,
}

#[derive(Debug, Default)]
struct Inner {
    /// Requests not yet written.
    wbuf: BytesMut,
    /// One per request written or to be written, in order.
    waiters: VecDeque<Waiter>,
    /// Scripts loaded on the current connection.
    loaded: HashSet<Bytes>,
}

/// One shared connection (and its task) for one protocol.
#[derive(Debug)]
struct SharedConnection {
    proto: Proto,
    inner: Mutex<Inner>,
    notify: Notify,
    started: AtomicBool,
}

/// The shared connections, one per protocol.
#[derive(Debug)]
pub(crate) struct MultiplexPool {
    conns: [Arc<SharedConnection>; 2],
    backend: Endpoint,
}

impl MultiplexPool {
    /// Shared connections to the backend (opened at first use).
    pub(crate) fn new(backend: Endpoint) -> Self {
        let conn = |proto| {
            Arc::new(SharedConnection {
                proto,
                inner: Mutex::new(Inner::default()),
                notify: Notify::new(),
                started: AtomicBool::new(false),
            })
        };
        MultiplexPool {
            conns: [conn(Proto::Resp2), conn(Proto::Resp3)],
            backend,
        }
    }

    /// Queues a request for the connection of protocol `proto`; its reply goes
    /// to the mailbox tagged with the slot's sequence number. `preload` is a
    /// script (SHA1, text) the request needs loaded first.
    pub(crate) fn send(
        &self,
        proto: Proto,
        request: &[u8],
        reply_to: (Arc<Mailbox>, Option<u64>),
        preload: Option<(&Bytes, &Bytes)>,
    ) {
        self.enqueue(proto, |inner| {
            if let Some((sha, text)) = preload {
                if !inner.loaded.contains(sha) {
                    encode_command(&mut inner.wbuf, [&b"SCRIPT"[..], b"LOAD", text].into_iter());
                    inner.waiters.push_back(Waiter::Swallow);
                    inner.loaded.insert(sha.clone());
                }
            }
            inner.wbuf.extend_from_slice(request);
            inner
                .waiters
                .push_back(Waiter::Reply(reply_to.0, reply_to.1));
        });
    }

    /// Queues `n` requests of the proxy's own, encoded back to back in
    /// `requests`, whose replies nobody reads (together: nothing comes between).
    pub(crate) fn send_unanswered(&self, proto: Proto, requests: &[u8], n: usize) {
        self.enqueue(proto, |inner| {
            inner.wbuf.extend_from_slice(requests);
            inner
                .waiters
                .extend(std::iter::repeat_with(|| Waiter::Swallow).take(n));
        });
    }

    /// Adds to the connection of protocol `proto` under its lock (starting its
    /// task at first use), and wakes the task when it had nothing to write.
    fn enqueue(&self, proto: Proto, add: impl FnOnce(&mut Inner)) {
        let conn = &self.conns[(proto == Proto::Resp3) as usize];
        if !conn.started.swap(true, Ordering::AcqRel) {
            let c = Arc::clone(conn);
            tokio::spawn(c.run(self.backend.clone()));
        }
        let was_empty;
        {
            let Ok(mut inner) = conn.inner.lock() else {
                return;
            };
            was_empty = inner.wbuf.is_empty();
            add(&mut inner);
        }
        if was_empty {
            conn.notify.notify_one();
        }
    }
}

impl SharedConnection {
    async fn run(self: Arc<Self>, backend: Endpoint) {
        let handshake = Handshake::new().proto(self.proto);
        loop {
            // Wait for something to send before (re)connecting.
            while self
                .inner
                .lock()
                .map(|i| i.waiters.is_empty())
                .unwrap_or(true)
            {
                self.notify.notified().await;
            }
            let result = match backend.connect(&handshake).await {
                Ok(conn) => self.serve(conn).await,
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

    /// Every waiting request gets the error; the connection's state is gone.
    fn fail_all(&self, reason: &BackendError) {
        let err = errors::backend_unavailable(reason).to_bytes(self.proto);
        let waiters = match self.inner.lock() {
            Ok(mut inner) => {
                inner.wbuf.clear();
                inner.loaded.clear();
                std::mem::take(&mut inner.waiters)
            }
            Err(_) => return,
        };
        for w in waiters {
            if let Waiter::Reply(m, seq) = w {
                m.push((seq, err.clone()));
            }
        }
    }

    async fn serve(&self, mut conn: Connection) -> Result<(), BackendError> {
        let mut frames = Vec::new();
        loop {
            // Let ready clients queue their requests first: one write for them all.
            tokio::task::yield_now().await;
            // Take what clients queued, and write what the socket takes.
            if let Ok(mut inner) = self.inner.lock() {
                if !inner.wbuf.is_empty() {
                    let taken = inner.wbuf.split();
                    conn.out().extend_from_slice(&taken);
                }
            }
            conn.flush()?;
            tokio::select! {
                biased;
                r = conn.io(true) => {
                    r?;
                    self.deliver(&mut conn, &mut frames)?;
                }
                _ = self.notify.notified() => {}
            }
        }
    }

    /// Hands every complete reply to its waiter, in order.
    fn deliver(&self, conn: &mut Connection, frames: &mut Vec<Bytes>) -> Result<(), BackendError> {
        frames.clear();
        while let Some(info) = conn.next_reply()? {
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
            return Ok(());
        }
        // One lock for the whole read.
        let waiters: Vec<Waiter> = {
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
            inner.waiters.drain(..frames.len()).collect()
        };
        for (w, frame) in waiters.into_iter().zip(frames.drain(..)) {
            if let Waiter::Reply(m, seq) = w {
                m.push((seq, frame));
            }
        }
        Ok(())
    }
}
