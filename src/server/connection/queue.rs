//! The per-connection reply queue: one slot per request that expects a reply, in
//! request order. Slots are filled by the backend (in its order), by
//! lock operations (in any order) or at once; the connection writes them out
//! strictly from the front.

use std::collections::VecDeque;

use bytes::Bytes;

use tokio::time::Instant;

use crate::protocol::Proto;
use crate::redlock::op::LockOp;
use crate::redlock::{Grant, Lease};

/// A reply that is true only for a while: a grant, or a successful extension.
/// It is written only while it is still true; otherwise its grant is released
/// and the client gets what Redis would have said at that point.
#[derive(Debug)]
pub(super) struct Revocable {
    /// Until when the reply may be written (`None`: the lock does not expire).
    pub(super) valid_until: Option<Instant>,
    /// The lock the reply grants.
    pub(super) grant: Option<Grant>,
    /// What the client gets instead, encoded in its protocol.
    pub(super) instead: Bytes,
    /// The acquisition, to run again when the reply is stale before anything
    /// of it was written.
    pub(super) again: Option<LockOp>,
}

impl Revocable {
    /// The lease of an operation's outcome, its replacement encoded in `proto`.
    pub(super) fn new(lease: Box<Lease>, proto: Proto) -> Self {
        let lease = *lease;
        Revocable {
            valid_until: lease.valid_until,
            grant: lease.grant,
            instead: lease.instead.to_bytes(proto),
            again: lease.again,
        }
    }

    /// Why the reply may no longer be written, if it may not: its validity
    /// ran out, or it grants a lock without expiry and such locks are bound to
    /// a connection whose client closed it (`ttl_less_unreleasable`).
    pub(super) fn stale(&self, now: Instant, ttl_less_unreleasable: bool) -> Option<Stale> {
        if self.valid_until.is_some_and(|t| now >= t) {
            return Some(Stale::Expired);
        }
        let unreleasable = self.grant.as_ref().is_some_and(|g| !g.has_ttl());
        (ttl_less_unreleasable && unreleasable).then_some(Stale::Unreleasable)
    }
}

/// Why a reply is no longer true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stale {
    /// The validity ran out.
    Expired,
    /// A lock without expiry whose client can no longer release it.
    Unreleasable,
}

impl Stale {
    /// What the client gets instead of the stale reply.
    pub(super) fn reply(self, r: &Revocable) -> Bytes {
        match self {
            Stale::Expired => r.instead.clone(),
            Stale::Unreleasable => crate::errors::unreleasable_lock().to_bytes(Proto::Resp2),
        }
    }
}

/// What to do with the backend's reply to a forwarded command, besides
/// forwarding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hook {
    /// Forward it as is.
    None,
    /// Drop it (a command the proxy sent on its own behalf).
    Swallow,
    /// Drop it and send this reply instead (HELLO, EXEC of a refused transaction).
    Replace(Bytes),
    /// `SELECT n`: on success the session's database becomes `n`.
    Select(u32),
    /// `AUTH [user] pass`: on success the session's backend connections
    /// authenticate so.
    Auth(Option<Bytes>, Bytes),
    /// `HELLO ... AUTH` checked by the backend: on success the session
    /// authenticates so, switches to `proto`, takes the name, and the client
    /// gets `reply` (the proxy's `HELLO` answer); an error passes as it is.
    HelloAuth {
        user: Bytes,
        pass: Bytes,
        proto: crate::protocol::Proto,
        setname: Option<Bytes>,
        reply: Bytes,
    },
    /// `RESET`: on `+RESET` the session starts afresh.
    Reset,
    /// `SCRIPT EXISTS`: overwrite the answers at these positions with these values.
    ScriptExists(Vec<(usize, bool)>),
    /// `INFO`: append the proxy's section (rendered when the command was sent).
    AppendInfo(Bytes),
    /// `CLIENT GETREDIR`, `CLIENT TRACKINGINFO`: the backend's connection id
    /// of the redirect target becomes the proxy's id of its client.
    ToProxyId,
}

/// One pending reply.
#[derive(Debug)]
pub(super) enum Slot {
    /// Waits for the backend's next reply.
    Backend {
        /// Extra handling of the reply.
        hook: Hook,
        /// `CLIENT REPLY OFF/SKIP` in effect: consume the reply, write nothing.
        silent: bool,
        /// The backend may take its time to answer (a blocking command,
        /// `WAIT`, a module's command): no reply timeout while it is the
        /// oldest waiting.
        patient: bool,
    },
    /// Waits for a lock operation to finish.
    Pending,
    /// Ready to be written; a reply true only for a while carries its lease.
    Ready(Bytes, Option<Box<Revocable>>),
    /// Waits for the backend's answer to a resynchronisation `PING` (see
    /// `resync.rs`); nothing is written for it.
    Resync,
    /// Close the connection once every earlier reply is written (QUIT, protocol errors).
    Close,
}

/// Slots in request order. Each slot has a sequence number, so a lock operation
/// finishing out of order can find its slot.
#[derive(Debug, Default)]
pub(super) struct ReplyQueue {
    slots: VecDeque<Slot>,
    /// Sequence number of `slots[0]`.
    base: u64,
    /// Bytes of the replies in `Ready` slots.
    ready_bytes: usize,
    /// `Backend` and `Resync` slots: replies the client's own backend
    /// connection still owes.
    backend_waiting: usize,
}

impl ReplyQueue {
    /// Appends a slot and returns its sequence number.
    pub(super) fn push(&mut self, slot: Slot) -> u64 {
        match &slot {
            Slot::Ready(b, _) => self.ready_bytes += b.len(),
            Slot::Backend { .. } | Slot::Resync => self.backend_waiting += 1,
            Slot::Pending | Slot::Close => {}
        }
        self.slots.push_back(slot);
        self.base + self.slots.len() as u64 - 1
    }

    /// The front slot.
    pub(super) fn front(&self) -> Option<&Slot> {
        self.slots.front()
    }

    /// Removes the front slot.
    pub(super) fn pop(&mut self) -> Option<Slot> {
        let s = self.slots.pop_front()?;
        self.base += 1;
        match &s {
            Slot::Ready(b, _) => self.ready_bytes -= b.len(),
            Slot::Backend { .. } | Slot::Resync => self.backend_waiting -= 1,
            Slot::Pending | Slot::Close => {}
        }
        Some(s)
    }

    /// Replies the client's own backend connection still owes.
    pub(super) fn backend_waiting(&self) -> usize {
        self.backend_waiting
    }

    /// Whether the oldest reply the backend owes may take its time (`None`:
    /// it owes none, or it is a resynchronisation's).
    pub(super) fn oldest_backend_patient(&self) -> Option<bool> {
        if self.backend_waiting == 0 {
            return None;
        }
        self.slots.iter().find_map(|s| match s {
            Slot::Backend { patient, .. } => Some(*patient),
            Slot::Resync => Some(true),
            _ => None,
        })
    }

    /// Bytes of the replies ready and waiting for the slots ahead of them.
    pub(super) fn ready_bytes(&self) -> usize {
        self.ready_bytes
    }

    /// Fills the pending slot `seq` with its reply.
    pub(super) fn complete(&mut self, seq: u64, reply: Bytes, lease: Option<Box<Revocable>>) {
        let Some(i) = seq.checked_sub(self.base) else {
            return;
        };
        if let Some(slot @ Slot::Pending) = self.slots.get_mut(i as usize) {
            self.ready_bytes += reply.len();
            *slot = Slot::Ready(reply, lease);
        }
    }

    /// The sequence number of the front slot.
    pub(super) fn front_seq(&self) -> u64 {
        self.base
    }

    /// Puts back a pending slot at the front, for the sequence number `seq`
    /// the slot just popped had: its operation runs again.
    pub(super) fn push_front_pending(&mut self, seq: u64) {
        if seq + 1 == self.base {
            self.slots.push_front(Slot::Pending);
            self.base = seq;
        }
    }

    /// Takes the grants of replies that were never written.
    pub(super) fn drain_grants(&mut self) -> Vec<Grant> {
        self.ready_bytes = 0;
        self.backend_waiting = 0;
        self.slots
            .drain(..)
            .filter_map(|s| match s {
                Slot::Ready(_, Some(r)) => r.grant,
                _ => None,
            })
            .collect()
    }

    /// Number of slots.
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no reply is pending.
    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The backend is gone: every slot waiting for it gets `error` instead
    /// (nothing for silent slots), and resynchronisations are dropped.
    pub(super) fn fail_backend(&mut self, error: &Bytes) {
        // Slots are replaced, never removed, so the sequence numbers of pending
        // lock operations stay valid; an empty reply writes nothing.
        self.backend_waiting = 0;
        for slot in self.slots.iter_mut() {
            match slot {
                Slot::Backend { silent: true, .. } | Slot::Resync => {
                    *slot = Slot::Ready(Bytes::new(), None)
                }
                Slot::Backend {
                    hook: Hook::Swallow,
                    ..
                } => *slot = Slot::Ready(Bytes::new(), None),
                // The replacement is the proxy's own answer; it stands without the backend.
                Slot::Backend {
                    hook: Hook::Replace(r),
                    ..
                } => {
                    self.ready_bytes += r.len();
                    *slot = Slot::Ready(r.clone(), None)
                }
                Slot::Backend { .. } => {
                    self.ready_bytes += error.len();
                    *slot = Slot::Ready(error.clone(), None)
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_out_of_order() {
        let mut q = ReplyQueue::default();
        let a = q.push(Slot::Pending);
        let b = q.push(Slot::Pending);
        q.complete(b, Bytes::from_static(b"+b\r\n"), None);
        assert!(matches!(q.front(), Some(Slot::Pending)));
        q.complete(a, Bytes::from_static(b"+a\r\n"), None);
        assert!(matches!(q.pop(), Some(Slot::Ready(r, _)) if &r[..] == b"+a\r\n"));
        assert!(matches!(q.pop(), Some(Slot::Ready(r, _)) if &r[..] == b"+b\r\n"));
        assert!(q.is_empty());
    }
}
