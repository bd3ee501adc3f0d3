//! A backend connection kept open and ready for the next client that needs a
//! connection of its own (a blocking command, a transaction, pub/sub, or any
//! command with `multiplex = false`), one per protocol.
//!
//! Why: a client's first such command would otherwise wait while its
//! connection opens, and a command another client sends a moment later on a
//! shared connection could reach the backend first. A queue consumer that
//! blocks first expects to be served first (Redis serves blocked clients in
//! the order they blocked); with a connection ready, its `BLPOP` is written
//! as soon as the proxy reads it, as it would reach Redis directly.
//!
//! The ready connection has the backend URL's handshake; a session that also
//! named itself or its library gets those (`CLIENT SETNAME`/`SETINFO`)
//! pipelined ahead of its first command. A session in another protocol or
//! database opens a connection of its own, as before. Only the single
//! backend: a cluster's own connections go to the master of a key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{Connection, Endpoint, Handshake};
use crate::protocol::Proto;

/// Between attempts to open the ready connection while the backend refuses.
const RETRY: Duration = Duration::from_millis(500);

/// The ready connections, one per protocol.
#[derive(Debug)]
pub(crate) struct Warm {
    backend: Endpoint,
    ready: [Mutex<Option<Connection>>; 2],
    /// A task is opening the next one.
    filling: [AtomicBool; 2],
}

fn index(proto: Proto) -> usize {
    (proto == Proto::Resp3) as usize
}

impl Warm {
    /// Ready connections to `backend` (none is opened until
    /// [`fill`](Self::fill) or a [`take`](Self::take)).
    pub(crate) fn new(backend: Endpoint) -> Arc<Self> {
        Arc::new(Warm {
            backend,
            ready: Default::default(),
            filling: Default::default(),
        })
    }

    /// The handshake the ready connections of `proto` have.
    pub(crate) fn handshake(proto: Proto) -> Handshake {
        Handshake::new().proto(proto).client_id()
    }

    /// How many are ready now.
    pub(crate) fn ready(&self) -> usize {
        self.ready
            .iter()
            .filter(|r| r.lock().is_ok_and(|r| r.is_some()))
            .count()
    }

    /// The backend they connect to.
    pub(crate) fn backend(&self) -> &Endpoint {
        &self.backend
    }

    /// Takes the ready connection of `proto`, if there is one and it is
    /// still open; the next one is opened in the background either way.
    pub(crate) fn take(self: &Arc<Self>, proto: Proto) -> Option<Connection> {
        let taken = self.ready[index(proto)].lock().ok()?.take();
        self.fill(proto);
        let mut conn = taken?;
        (conn.idle_and_open() && self.backend.is_current(&conn)).then_some(conn)
    }

    /// Opens the ready connection of `proto` in the background, unless one is
    /// there or on its way; retries while the backend refuses.
    pub(crate) fn fill(self: &Arc<Self>, proto: Proto) {
        let i = index(proto);
        if self.filling[i].swap(true, Ordering::AcqRel) {
            return;
        }
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let have = me.ready[i].lock().map(|r| r.is_some()).unwrap_or(true);
                if have {
                    break;
                }
                match me.backend.connect(&Warm::handshake(proto)).await {
                    Ok(conn) => {
                        if let Ok(mut r) = me.ready[i].lock() {
                            *r = Some(conn);
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "opening a ready backend connection failed");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
            me.filling[i].store(false, Ordering::Release);
        });
    }
}
