//! Multiplexed backend connections, for `passthrough.multiplex = true`.
//!
//! Commands that carry no connection state (most data commands) from every
//! client are pipelined over one backend connection per protocol, as twemproxy
//! does: the backend reads and answers them in batches, which is what makes a
//! proxy cheap at one request per round trip. A connection the backend stops
//! answering (a long script, a paused write) is steered around: new requests
//! take another lane (`lanes.rs`). A client moves to a connection of
//! its own for good at its first command that needs one (SELECT, MULTI, WATCH,
//! blocking commands, pub/sub, MONITOR, CLIENT ...), after the replies to
//! everything it sent on the shared connection have arrived, so the backend runs
//! its commands in the order it sent them.
//!
//! - `mod.rs`: the pool for the single backend, lanes per protocol.
//! - `lanes.rs`: several shared connections to one server, and which one a
//!   request takes, so nobody waits behind another client's long command.
//! - `shared.rs`: one shared connection and its task, also used per node of a
//!   cluster backend; where its replies go ([`ReplyTo`], [`Parts`]) and who
//!   follows a routed request's redirection ([`Redirects`]) are given to it,
//!   so it knows nothing of clusters.
//! - `own.rs`: a client's own connections to several nodes.

mod lanes;
mod own;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub(crate) use self::lanes::{CONTROL, Group, Lane, Lanes, SPARE_IDLE, clock};
pub(crate) use self::own::OwnConnections;
pub(crate) use self::shared::{Parts, Redirects, ReplyTo, Routed, SharedConnection, Timeouts};
use crate::backend::Endpoint;
use crate::protocol::Proto;

/// Where one client's replies from a shared connection arrive: the sequence
/// number of the reply's slot (none when the client silenced it with `CLIENT
/// REPLY`: the reply still counts, so a move to an own connection waits for
/// it), and the reply.
pub(crate) type Mailbox = crate::inbox::Inbox<(Option<u64>, Bytes)>;

/// The shared connections to the single backend, lanes per protocol.
#[derive(Debug)]
pub(crate) struct MultiplexPool {
    lanes: [Lanes; 2],
}

impl MultiplexPool {
    /// Shared connections to the backend (opened at first use): up to `max`
    /// lanes per protocol, a lane counting as stalled after `stall_after`
    /// without a reply (see `lanes.rs`), and the backend taken for gone when
    /// a lane that owes prompt replies is silent for `reply_timeout`.
    pub(crate) fn new(
        backend: Endpoint,
        (max, stall_after): (usize, Duration),
        reply_timeout: Duration,
    ) -> Self {
        let lanes = |proto| {
            Lanes::new(max, stall_after, |i| {
                let idle = (!Lanes::first_of_group(i)).then_some(SPARE_IDLE);
                let t = Timeouts {
                    reply: Lanes::reply_timeout(i, reply_timeout),
                    idle,
                };
                SharedConnection::new(proto, backend.clone(), None, t)
            })
        };
        MultiplexPool {
            lanes: [lanes(Proto::Resp2), lanes(Proto::Resp3)],
        }
    }

    /// The lanes of protocol `proto`.
    pub(crate) fn lanes(&self, proto: Proto) -> &Lanes {
        &self.lanes[(proto == Proto::Resp3) as usize]
    }

    /// The first lane of protocol `proto` (the proxy's own requests).
    pub(crate) fn conn(&self, proto: Proto) -> &Arc<SharedConnection> {
        self.lanes(proto).get(0)
    }

    /// Both protocols' lanes.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Lanes> {
        self.lanes.iter()
    }
}

/// What the shared connections' lanes look like, summed over servers and
/// protocols, for `INFO` and `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct LaneStats {
    /// Connections open.
    pub(crate) open: usize,
    /// Lanes stalled now.
    pub(crate) stalled: usize,
    /// Stalls requests were steered around so far.
    pub(crate) stalls: u64,
    /// Connections the reply timeout ended.
    pub(crate) timeouts: u64,
}

impl LaneStats {
    /// Adds one server's lanes of one protocol.
    pub(crate) fn add(&mut self, lanes: &Lanes) {
        self.open += lanes.open();
        self.stalled += lanes.stalled_now();
        self.stalls += lanes.stalls();
        self.timeouts += lanes.timeouts();
    }
}
