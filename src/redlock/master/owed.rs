//! The releases one master is owed: a compare-and-delete of a token the proxy
//! may have left there (a refused or abandoned acquisition, a release that
//! failed or was never sent). Each is retried until the master confirms it —
//! the key no longer holds the token, whoever removed it — or until the lock's
//! TTL has certainly passed, which makes it moot.
//!
//! A debt is sent only after every operation the master task received before
//! it has been written (or dropped): the release must run after the acquisition
//! it cleans up, on the same pipeline. What is owed is kept once per key and
//! token (a second debt for the same pair extends the first, and is sent again
//! if the first was already on its way), and at most [`MAX_OWED`] pairs: past
//! that, new debts are shed and counted (they still expire with their TTL).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// Most releases one master can be owed.
pub(crate) const MAX_OWED: usize = 100_000;
/// First retry delay after a failed attempt; doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// A release owed: compare-and-delete `key` if it holds `token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Debt {
    /// The lock key.
    pub(crate) key: Bytes,
    /// The token that may be left on it.
    pub(crate) token: Bytes,
    /// When the lock's TTL has certainly passed (`None`: no expiry, owed until confirmed).
    pub(crate) expires: Option<Instant>,
    /// The release command, encoded.
    pub(crate) cmd: Bytes,
}

/// A debt's identity: key and token.
pub(crate) type Id = (Bytes, Bytes);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for operations received before it to be written.
    Waiting,
    /// Due to be sent at this time.
    Due(Instant),
    /// Sent; `again`: owed once more (after a later operation) once it returns.
    InFlight { again: bool },
}

#[derive(Debug)]
struct Entry {
    expires: Option<Instant>,
    cmd: Bytes,
    /// Operations received before the latest debt for this pair.
    after: u64,
    state: State,
    attempts: u32,
}

/// The releases owed to one master.
#[derive(Debug, Default)]
pub(crate) struct Owed {
    entries: HashMap<Id, Entry>,
    /// Entries waiting for earlier operations, in the order they were owed.
    /// Elements whose entry moved on are skipped (their `after` no longer matches).
    waiting: VecDeque<(u64, Id)>,
    /// When each due entry is to be sent, earliest first. An entry rescheduled
    /// leaves a stale element behind, skipped when popped.
    due: BinaryHeap<Reverse<(Instant, Id)>>,
    /// Operations written (or dropped) so far: debts owed after them may go.
    written: u64,
    /// Debts shed because [`MAX_OWED`] were already owed.
    shed: u64,
}

impl Owed {
    /// Records a debt, to be sent once the first `after` operations are
    /// written. Returns false when it was shed.
    pub(crate) fn owe(&mut self, debt: Debt, after: u64, now: Instant) -> bool {
        if debt.expires.is_some_and(|e| e <= now) {
            return true; // moot already
        }
        let id = (debt.key, debt.token);
        if let Some(e) = self.entries.get_mut(&id) {
            e.expires = match (e.expires, debt.expires) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            e.after = e.after.max(after);
            match e.state {
                State::InFlight { .. } => e.state = State::InFlight { again: true },
                State::Waiting | State::Due(_) => self.schedule(id, now, now),
            }
            return true;
        }
        if self.entries.len() >= MAX_OWED {
            self.shed += 1;
            return false;
        }
        let entry = Entry {
            expires: debt.expires,
            cmd: debt.cmd,
            after,
            state: State::Waiting,
            attempts: 0,
        };
        self.entries.insert(id.clone(), entry);
        self.schedule(id, now, now);
        true
    }

    /// Puts an existing entry where it belongs: waiting for its operations, or
    /// due at `at` (never later than it already was).
    fn schedule(&mut self, id: Id, at: Instant, now: Instant) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.after > self.written {
            if e.state != State::Waiting {
                e.state = State::Waiting;
            }
            self.waiting.push_back((e.after, id));
            return;
        }
        match e.state {
            State::Due(t) if t <= at.max(now) => {}
            _ => {
                e.state = State::Due(at);
                self.due.push(Reverse((at, id)));
            }
        }
    }

    /// `n` more operations were written or dropped: debts behind them become due.
    pub(crate) fn written(&mut self, n: u64) {
        self.written += n;
        if self.waiting.is_empty() {
            return; // the common case: nothing to look up, not even the time
        }
        let now = Instant::now();
        while let Some((after, _)) = self.waiting.front() {
            if *after > self.written {
                break;
            }
            let Some((after, id)) = self.waiting.pop_front() else {
                break;
            };
            let moved = self
                .entries
                .get(&id)
                .is_some_and(|e| e.state == State::Waiting && e.after == after);
            if moved {
                self.schedule(id, now, now);
            }
        }
    }

    /// The debts due now, marked in flight: their commands, with their ids.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(Id, Bytes)> {
        let mut out = Vec::new();
        while let Some(Reverse((at, _))) = self.due.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, id))) = self.due.pop() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&id) else {
                continue; // settled meanwhile
            };
            if e.state != State::Due(at) {
                continue; // in flight, waiting, or rescheduled
            }
            if e.expires.is_some_and(|x| x <= now) {
                self.entries.remove(&id);
                continue;
            }
            e.state = State::InFlight { again: false };
            out.push((id, e.cmd.clone()));
        }
        out
    }

    /// Operation `op` (1-based, in the order received) takes the lock `id`
    /// again: a release owed before it and not yet sent would now remove the
    /// new grant, so it is dropped. What the earlier acquisition left is the
    /// same token, which the new one either reuses or is refused by.
    pub(crate) fn supersede(&mut self, id: &Id, op: u64) {
        let Some(e) = self.entries.get_mut(id) else {
            return;
        };
        if e.after >= op {
            return; // owed for this acquisition or a later one
        }
        match e.state {
            State::InFlight { .. } => e.state = State::InFlight { again: false },
            State::Waiting | State::Due(_) => {
                self.entries.remove(id);
            }
        }
    }

    /// The master confirmed: nothing is owed for this key and token any more —
    /// unless it was owed again meanwhile.
    pub(crate) fn confirmed(&mut self, id: &Id, now: Instant) {
        match self.entries.get(id).map(|e| e.state) {
            Some(State::InFlight { again: true }) => self.schedule(id.clone(), now, now),
            Some(_) => {
                self.entries.remove(id);
            }
            None => {}
        }
    }

    /// An attempt failed (an error reply): retry later, backing off, unless the
    /// TTL has passed meanwhile.
    pub(crate) fn failed(&mut self, id: Id, now: Instant) {
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.expires.is_some_and(|x| x <= now) {
            self.entries.remove(&id);
            return;
        }
        let delay = RETRY_MIN
            .saturating_mul(1 << e.attempts.min(10))
            .min(RETRY_MAX);
        e.attempts += 1;
        e.state = State::Waiting; // lets `schedule` move it to its new time
        self.schedule(id, now + delay, now);
    }

    /// The connection is gone: every debt in flight is due again at once (the
    /// next connection sends it).
    pub(crate) fn connection_lost(&mut self, now: Instant) {
        let in_flight: Vec<Id> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::InFlight { .. }))
            .map(|(id, _)| id.clone())
            .collect();
        for id in in_flight {
            if let Some(e) = self.entries.get_mut(&id) {
                e.state = State::Waiting;
            }
            self.schedule(id, now, now);
        }
    }

    /// When the next due debt is to be sent (perhaps a stale time: then
    /// [`take_due`](Self::take_due) finds nothing and the caller asks again).
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes the debt of `id` and gives it back (its key lives on another
    /// node now); `None` when nothing is owed for it.
    pub(crate) fn take(&mut self, id: &Id) -> Option<Debt> {
        let e = self.entries.remove(id)?;
        Some(Debt {
            key: id.0.clone(),
            token: id.1.clone(),
            expires: e.expires,
            cmd: e.cmd,
        })
    }

    /// Removes every debt and gives them back (the node leaves).
    pub(crate) fn drain(&mut self) -> Vec<Debt> {
        self.waiting.clear();
        self.due.clear();
        self.entries
            .drain()
            .map(|(id, e)| Debt {
                key: id.0,
                token: id.1,
                expires: e.expires,
                cmd: e.cmd,
            })
            .collect()
    }

    /// Debts owed now.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Debts shed so far.
    pub(crate) fn shed(&self) -> u64 {
        self.shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debt(key: &'static str, token: &'static str, expires: Option<Instant>) -> Debt {
        Debt {
            key: Bytes::from_static(key.as_bytes()),
            token: Bytes::from_static(token.as_bytes()),
            expires,
            cmd: Bytes::from_static(b"cmd"),
        }
    }

    fn id(key: &'static str, token: &'static str) -> Id {
        (
            Bytes::from_static(key.as_bytes()),
            Bytes::from_static(token.as_bytes()),
        )
    }

    #[test]
    fn a_debt_waits_for_the_operations_before_it() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", None), 2, now);
        assert!(
            o.take_due(now).is_empty(),
            "its acquisition is not written yet"
        );
        o.written(1);
        assert!(o.take_due(Instant::now()).is_empty());
        o.written(1);
        assert_eq!(o.take_due(Instant::now()).len(), 1);
    }

    #[test]
    fn debts_coalesce_per_key_and_token() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", Some(now + Duration::from_secs(1))), 0, now);
        o.owe(debt("k", "t", None), 0, now);
        o.owe(debt("k", "u", Some(now + Duration::from_secs(1))), 0, now);
        assert_eq!(o.len(), 2);
        assert_eq!(o.take_due(now).len(), 2, "each once, however often owed");
        assert!(o.take_due(now).is_empty(), "in flight");
        // The merged debt has no expiry any more: it outlives any TTL.
        o.failed(id("k", "t"), now + Duration::from_secs(10));
        assert_eq!(o.len(), 2);
        o.confirmed(&id("k", "t"), now);
        o.confirmed(&id("k", "u"), now);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn a_debt_owed_again_while_in_flight_is_sent_again_after_the_new_operation() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", None), 0, now);
        assert_eq!(o.take_due(now).len(), 1);
        // The client retried its acquisition with the same token (operation 1),
        // and was refused again.
        o.owe(debt("k", "t", None), 1, now);
        o.confirmed(&id("k", "t"), now);
        assert_eq!(o.len(), 1, "still owed for the second acquisition");
        assert!(
            o.take_due(now).is_empty(),
            "not before that acquisition is written"
        );
        o.written(1);
        assert_eq!(o.take_due(Instant::now()).len(), 1);
        o.confirmed(&id("k", "t"), now);
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn a_later_acquisition_with_the_same_token_supersedes_what_was_owed_before_it() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", None), 4, now);
        o.supersede(&id("k", "t"), 5);
        assert_eq!(o.len(), 0, "sent after op 5 it would delete op 5's grant");
        // A debt owed after the acquisition (its own refusal) stays.
        o.owe(debt("k", "t", None), 5, now);
        o.supersede(&id("k", "t"), 5);
        assert_eq!(o.len(), 1);
    }

    #[test]
    fn failures_back_off_and_expiry_makes_debts_moot() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", Some(now + Duration::from_secs(2))), 0, now);
        let (i, _) = o.take_due(now).pop().unwrap();
        o.failed(i, now);
        assert!(o.take_due(now).is_empty(), "not before the retry delay");
        assert_eq!(o.next_due(), Some(now + RETRY_MIN));
        let (i, _) = o.take_due(now + RETRY_MIN).pop().unwrap();
        o.failed(i, now + RETRY_MIN);
        assert_eq!(o.next_due(), Some(now + RETRY_MIN + 2 * RETRY_MIN));
        // Past the TTL it is no longer sent, and no longer owed.
        assert!(o.take_due(now + Duration::from_secs(3)).is_empty());
        assert_eq!(o.len(), 0);
        // Already moot when owed.
        assert!(o.owe(debt("k", "t", Some(now)), 0, now));
        assert_eq!(o.len(), 0);
    }

    #[test]
    fn repeated_debts_while_the_master_is_down_do_not_pile_up() {
        let now = Instant::now();
        let mut o = Owed::default();
        for i in 0..1000 {
            o.owe(debt("k", "t", None), 0, now + Duration::from_millis(i));
        }
        assert_eq!(o.due.len(), 1);
    }

    #[test]
    fn a_lost_connection_makes_debts_in_flight_due_again() {
        let now = Instant::now();
        let mut o = Owed::default();
        o.owe(debt("k", "t", None), 0, now);
        assert_eq!(o.take_due(now).len(), 1);
        o.connection_lost(now);
        assert_eq!(o.take_due(now).len(), 1);
    }

    #[test]
    fn debts_are_handed_over_whole() {
        let now = Instant::now();
        let mut o = Owed::default();
        let later = Some(now + Duration::from_secs(5));
        o.owe(debt("a", "t", later), 0, now);
        o.owe(debt("b", "t", None), 0, now);
        let a = o.take(&id("a", "t")).unwrap();
        assert_eq!(a, debt("a", "t", later));
        assert_eq!(o.len(), 1);
        assert!(o.take(&id("a", "t")).is_none());
        // Nothing stale is sent after a hand-over.
        assert_eq!(o.drain(), vec![debt("b", "t", None)]);
        assert!(o.take_due(now).is_empty() && o.len() == 0);
    }

    #[test]
    fn the_set_is_bounded_and_counts_what_it_sheds() {
        let now = Instant::now();
        let mut o = Owed::default();
        for i in 0..MAX_OWED + 10 {
            let d = Debt {
                key: Bytes::from(format!("k{i}")),
                token: Bytes::from_static(b"t"),
                expires: None,
                cmd: Bytes::new(),
            };
            o.owe(d, 0, now);
        }
        assert_eq!((o.len(), o.shed()), (MAX_OWED, 10));
    }
}
