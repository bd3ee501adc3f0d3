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
//!
//! - `mod.rs`: the pool for the single backend, one connection per protocol.
//! - `shared.rs`: one shared connection and its task, also used per node of a
//!   cluster backend.

mod shared;

use std::sync::Arc;

use bytes::Bytes;

pub(crate) use self::shared::{Redirects, ReplyTo, Routed, SharedConnection};
use crate::backend::Endpoint;
use crate::protocol::Proto;

/// Where one client's replies from a shared connection arrive: the sequence
/// number of the reply's slot (none when the client silenced it with `CLIENT
/// REPLY`: the reply still counts, so a move to an own connection waits for
/// it), and the reply.
pub(crate) type Mailbox = crate::inbox::Inbox<(Option<u64>, Bytes)>;

/// The shared connections to the single backend, one per protocol.
#[derive(Debug)]
pub(crate) struct MultiplexPool {
    conns: [Arc<SharedConnection>; 2],
}

impl MultiplexPool {
    /// Shared connections to the backend (opened at first use).
    pub(crate) fn new(backend: Endpoint) -> Self {
        let conn = |proto| SharedConnection::new(proto, backend.clone(), None);
        MultiplexPool {
            conns: [conn(Proto::Resp2), conn(Proto::Resp3)],
        }
    }

    /// The connection of protocol `proto`.
    pub(crate) fn conn(&self, proto: Proto) -> &Arc<SharedConnection> {
        &self.conns[(proto == Proto::Resp3) as usize]
    }
}
