//! Which backend connection a client's forwarded commands take, when
//! multiplexing is on: the shared ones while the client carries no connection
//! state, a connection of its own from its first stateful command on.
//!
//! The move is made only once the replies to everything the client sent on a
//! shared connection are in (a barrier), so the backend runs its commands in the
//! order the client sent them. The same barrier separates commands of two
//! protocols, which go to different shared connections.

use std::sync::Arc;

use bytes::Bytes;

use super::super::multiplex::{CONTROL, Group, Lane, Mailbox};
use crate::protocol::Proto;

/// Requests one client may have waiting for replies on a shared connection
/// (deep enough for redis-benchmark's `-P 16`; a reply of `output_high_water`
/// or more moves the client to a connection of its own).
pub(super) const MAX_SHARED_IN_FLIGHT: usize = 32;

/// Where this client's forwarded commands go.
#[derive(Debug)]
pub(super) enum Route {
    /// Shared connections, for commands that carry no connection state.
    Shared {
        /// Where this client's shared replies arrive (made at first use).
        mailbox: Option<Arc<Mailbox>>,
        /// Requests sent whose reply has not arrived.
        outstanding: usize,
        /// The protocol of those requests.
        proto: Proto,
        /// The lane of the shared connections they went on (see
        /// `multiplex/lanes.rs`).
        lane: usize,
        /// Waiting for the outstanding replies before the next request.
        barrier: bool,
        /// Its replies piled up past the high watermark: its next commands
        /// take a connection of its own, where the proxy can hold it back.
        heavy: bool,
        /// A heavy client may move to a connection of its own (not with a
        /// cluster backend, which has no one connection for all its keys: the
        /// window of requests in flight is its bound).
        movable: bool,
    },
    /// A connection of its own, for good.
    Dedicated,
}

/// Which lanes of the shared connections a forwarded command may take (see
/// `multiplex/lanes.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    /// Ordinary commands.
    Main,
    /// Commands the backend may hold for long (scripts, functions, writes
    /// during a pause).
    Held,
    /// `SCRIPT KILL`, `FUNCTION KILL`.
    Control,
}

impl Class {
    /// Whether a client whose requests in flight are on `lane` must wait for
    /// them before this command: a control command goes elsewhere than
    /// anything else, and a held one never behind ordinary requests (an
    /// ordinary one may follow the client's held ones: it waits for them on
    /// Redis too).
    fn must_switch_from(self, lane: usize) -> bool {
        match self {
            Class::Control => lane != CONTROL,
            Class::Held => Group::of(lane) != Some(Group::Held),
            Class::Main => lane == CONTROL,
        }
    }
}

/// Where one forwarded command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Over the shared connection of the session's protocol.
    Shared,
    /// Over the client's own connection.
    Dedicated,
    /// Not yet: the replies to earlier shared requests must arrive first.
    Wait,
}

impl Route {
    /// The route of a new client: shared when multiplexing is on, and always
    /// with a cluster backend.
    pub(super) fn new(multiplex: bool, cluster: bool) -> Self {
        if multiplex || cluster {
            Route::Shared {
                mailbox: None,
                outstanding: 0,
                proto: Proto::Resp2,
                lane: 0,
                barrier: false,
                heavy: false,
                movable: !cluster,
            }
        } else {
            Route::Dedicated
        }
    }

    /// Decides where a command of `class` goes (`shareable`: it and the
    /// session carry no connection state) in protocol `proto`; a command that
    /// cannot share moves the client to its own connection for good.
    pub(super) fn decide(&mut self, shareable: bool, proto: Proto, class: Class) -> Decision {
        let Route::Shared {
            outstanding,
            proto: sent_in,
            lane,
            barrier,
            heavy,
            ..
        } = self
        else {
            return Decision::Dedicated;
        };
        // Past the window the request waits for the replies in flight: a
        // shared connection cannot hold back for one client, so this is what
        // bounds the replies a client that never reads can pile up through it.
        let full = *outstanding >= MAX_SHARED_IN_FLIGHT;
        let shareable = shareable && !*heavy;
        // Moving to other lanes, the order of the client's commands is kept
        // by waiting, as for a protocol switch.
        let other_lane = class.must_switch_from(*lane);
        if *outstanding > 0 && (!shareable || *sent_in != proto || full || other_lane) {
            *barrier = true;
            return Decision::Wait;
        }
        if shareable {
            Decision::Shared
        } else {
            *self = Route::Dedicated;
            Decision::Dedicated
        }
    }

    /// The lane the client's next shared request, of `class`, takes: the
    /// control lane for a control command, the lane of its requests in
    /// flight (they run in order there), else one of its class's group that
    /// is not stalled.
    pub(super) fn lane(&self, class: Class) -> Lane {
        match (self, class) {
            (_, Class::Control) => Lane::Control,
            (
                Route::Shared {
                    outstanding, lane, ..
                },
                _,
            ) if *outstanding > 0 => Lane::Keep(*lane),
            (_, Class::Held) => Lane::Pick(Group::Held),
            (_, Class::Main) => Lane::Pick(Group::Main),
        }
    }

    /// A request went out on lane `on` of the shared connections of
    /// `in_proto`; returns where its reply will arrive.
    pub(super) fn sent(&mut self, in_proto: Proto, on: usize) -> Option<Arc<Mailbox>> {
        let Route::Shared {
            mailbox,
            outstanding,
            proto,
            lane,
            ..
        } = self
        else {
            return None;
        };
        *outstanding += 1;
        *proto = in_proto;
        *lane = on;
        Some(Arc::clone(mailbox.get_or_insert_with(Default::default)))
    }

    /// Where shared replies arrive, while some are expected.
    pub(super) fn awaiting(&self) -> Option<&Mailbox> {
        match self {
            Route::Shared {
                mailbox: Some(m),
                outstanding,
                ..
            } if *outstanding > 0 => Some(m),
            _ => None,
        }
    }

    /// A shared reply arrived. Returns true when it lifted a barrier: requests
    /// waiting in the read buffer may go on.
    pub(super) fn received(&mut self) -> bool {
        let Route::Shared {
            outstanding,
            barrier,
            ..
        } = self
        else {
            return false;
        };
        *outstanding = outstanding.saturating_sub(1);
        if *outstanding == 0 && *barrier {
            *barrier = false;
            return true;
        }
        false
    }

    /// Whether replies from the shared connections are still awaited; if so,
    /// the next request waits for them (a barrier), as for a move.
    pub(super) fn must_wait(&mut self) -> bool {
        match self {
            Route::Shared {
                outstanding,
                barrier,
                ..
            } if *outstanding > 0 => {
                *barrier = true;
                true
            }
            _ => false,
        }
    }

    /// Waiting for shared replies before the next request.
    pub(super) fn waiting(&self) -> bool {
        matches!(self, Route::Shared { barrier: true, .. })
    }

    /// The client's replies piled up past the high watermark, or one reply
    /// was that large: a shared connection cannot hold back for one client, so
    /// its next commands go to a connection of its own (once what it sent on
    /// the shared one is answered).
    pub(super) fn too_heavy(&mut self) {
        if let Route::Shared { heavy, movable, .. } = self {
            *heavy = *movable;
        }
    }

    /// The client is gone: replies still on their way are dropped as they come.
    pub(super) fn close(&self) {
        if let Route::Shared {
            mailbox: Some(m), ..
        } = self
        {
            m.close();
        }
    }

    /// Moves the shared replies already in to `out`, without waiting;
    /// whether there were any.
    pub(super) fn take_arrived(&self, out: &mut Vec<(Option<u64>, Bytes)>) -> bool {
        self.awaiting().is_some_and(|m| m.take_all(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_has_at_most_a_window_of_shared_requests_in_flight() {
        let mut r = Route::new(true, false);
        for _ in 0..MAX_SHARED_IN_FLIGHT {
            assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Shared);
            assert!(r.sent(Proto::Resp2, 0).is_some());
        }
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Wait);
        // Until every reply is in: then sharing goes on.
        for i in 0..MAX_SHARED_IN_FLIGHT {
            let lifted = r.received();
            assert_eq!(lifted, i + 1 == MAX_SHARED_IN_FLIGHT);
        }
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Shared);
    }

    #[test]
    fn the_move_to_an_own_connection_waits_for_shared_replies() {
        let mut r = Route::new(true, false);
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Shared);
        assert!(r.sent(Proto::Resp2, 0).is_some());
        assert_eq!(r.decide(false, Proto::Resp2, Class::Main), Decision::Wait);
        assert!(r.waiting());
        assert!(r.received(), "the last reply lifts the barrier");
        assert_eq!(
            r.decide(false, Proto::Resp2, Class::Main),
            Decision::Dedicated
        );
        assert!(matches!(r, Route::Dedicated));
        assert_eq!(
            r.decide(true, Proto::Resp2, Class::Main),
            Decision::Dedicated,
            "for good"
        );
    }

    #[test]
    fn a_client_whose_replies_pile_up_moves_to_its_own_connection() {
        let mut r = Route::new(true, false);
        r.sent(Proto::Resp2, 0);
        r.too_heavy();
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Wait);
        r.received();
        assert_eq!(
            r.decide(true, Proto::Resp2, Class::Main),
            Decision::Dedicated
        );
    }

    #[test]
    fn a_client_keeps_its_lane_while_requests_are_in_flight() {
        let mut r = Route::new(true, false);
        assert_eq!(r.lane(Class::Main), Lane::Pick(Group::Main));
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Shared);
        r.sent(Proto::Resp2, 2);
        assert_eq!(r.lane(Class::Main), Lane::Keep(2));
        // A control command waits for them: it runs after them, elsewhere.
        assert_eq!(r.decide(true, Proto::Resp2, Class::Control), Decision::Wait);
        assert!(r.received());
        assert_eq!(r.lane(Class::Main), Lane::Pick(Group::Main));
        assert_eq!(
            r.decide(true, Proto::Resp2, Class::Control),
            Decision::Shared
        );
        assert_eq!(r.lane(Class::Control), Lane::Control);
        r.sent(Proto::Resp2, CONTROL);
        // And the next ordinary command waits for the control command.
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Wait);
    }

    #[test]
    fn a_held_command_never_queues_behind_ordinary_ones() {
        let held = 1 << 16;
        let mut r = Route::new(true, false);
        assert_eq!(r.lane(Class::Held), Lane::Pick(Group::Held));
        r.sent(Proto::Resp2, 0);
        // A script after a GET waits for it, then takes a held lane...
        assert_eq!(r.decide(true, Proto::Resp2, Class::Held), Decision::Wait);
        r.received();
        assert_eq!(r.decide(true, Proto::Resp2, Class::Held), Decision::Shared);
        r.sent(Proto::Resp2, held);
        // ...and a GET after the script follows it there, as on Redis.
        assert_eq!(r.decide(true, Proto::Resp2, Class::Main), Decision::Shared);
        assert_eq!(r.lane(Class::Main), Lane::Keep(held));
    }

    #[test]
    fn a_protocol_switch_waits_too() {
        let mut r = Route::new(true, false);
        r.sent(Proto::Resp2, 0);
        assert_eq!(r.decide(true, Proto::Resp3, Class::Main), Decision::Wait);
        r.received();
        assert_eq!(r.decide(true, Proto::Resp3, Class::Main), Decision::Shared);
        assert!(Route::new(false, false).awaiting().is_none());
    }
}
