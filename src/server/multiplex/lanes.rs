//! Several shared connections to one server, so that nobody waits behind
//! another client's long command.
//!
//! A shared connection pipelines many clients' requests, and a request the
//! server holds holds every request written behind it: a script past
//! `busy-reply-threshold` (Redis answers other connections `-BUSY`, but reads
//! nothing more from this one), a write during `CLIENT PAUSE WRITE`, any
//! command the server answers late. Three measures keep others moving:
//!
//! - **Known-long commands take lanes of their own** ([`Group::Held`]):
//!   scripts and functions always, and writes while a `CLIENT PAUSE WRITE`
//!   the proxy forwarded is in effect. Ordinary requests never queue behind
//!   them.
//! - **Stalls are steered around**: a lane whose requests have had no reply
//!   for `stall_after` is stalled, and a client with nothing in flight takes
//!   the first lane of its group that is not, opening it if it must, up to
//!   `max` per group. What waits with the stalled request is what was written
//!   behind it before the stall showed.
//! - **Control commands** (`SCRIPT KILL`, `FUNCTION KILL`) take a lane that
//!   carries nothing else, so they reach the server at once, never behind the
//!   command they are meant to stop.
//!
//! The server is taken for gone when a lane owes replies and sends nothing
//! for the reply timeout, except on held lanes: their requests may wait on
//! purpose.
//!
//! A client with requests in flight keeps their lane, so its commands run in
//! the order it sent them (see `connection/route.rs`). Lanes past the first
//! of each group close after a minute with nothing to do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::shared::SharedConnection;

/// The control lane's index, whatever the number of lanes.
pub(crate) const CONTROL: usize = usize::MAX;

/// Where the held group's indices start.
const HELD: usize = 1 << 16;

/// A lane opened for a stall closes after this long with nothing to do.
pub(crate) const SPARE_IDLE: Duration = Duration::from_secs(60);

/// Which lanes a request may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Group {
    /// Ordinary requests.
    Main,
    /// Requests the server may hold for long: scripts, functions, writes
    /// during a pause.
    Held,
}

impl Group {
    /// The group lane `i` belongs to (the control lane: none).
    pub(crate) fn of(i: usize) -> Option<Group> {
        match i {
            CONTROL => None,
            i if i >= HELD => Some(Group::Held),
            _ => Some(Group::Main),
        }
    }
}

/// Which lane a request takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// This one: the client has requests in flight on it.
    Keep(usize),
    /// The first lane of the group that is not stalled.
    Pick(Group),
    /// The control lane.
    Control,
}

/// The shared connections to one server in one protocol.
#[derive(Debug)]
pub(crate) struct Lanes {
    main: Vec<Arc<SharedConnection>>,
    held: Vec<Arc<SharedConnection>>,
    control: Arc<SharedConnection>,
    /// `stall_after`, in [`clock`] nanoseconds.
    stall_after: u64,
    /// Stalls seen (each counted once, when a client first steered around it).
    stalls: AtomicU64,
}

impl Lanes {
    /// `max` lanes (at least one) per group and a control lane; `make(i)`
    /// makes lane `i` (its connection opens at first use).
    pub(crate) fn new(
        max: usize,
        stall_after: Duration,
        make: impl Fn(usize) -> Arc<SharedConnection>,
    ) -> Self {
        let max = max.max(1);
        Lanes {
            main: (0..max).map(&make).collect(),
            held: (HELD..HELD + max).map(&make).collect(),
            control: make(CONTROL),
            stall_after: u64::try_from(stall_after.as_nanos()).unwrap_or(u64::MAX),
            stalls: AtomicU64::new(0),
        }
    }

    /// The reply timeout of lane `i`: none for the held group, whose
    /// requests the server may hold for long on purpose (a script, a write
    /// during a pause); `reply` for the others.
    pub(crate) fn reply_timeout(i: usize, reply: Duration) -> Option<Duration> {
        (Group::of(i) != Some(Group::Held)).then_some(reply)
    }

    /// Whether lane `i` is the first of its group (kept open while idle).
    pub(crate) fn first_of_group(i: usize) -> bool {
        i == 0 || i == HELD
    }

    /// Which lane `lane` is, as an index ([`CONTROL`] for the control lane);
    /// `now` ([`clock`] nanoseconds), if the caller read the clock just
    /// before (a request read off its socket a moment ago), saves reading it
    /// again for each request.
    pub(crate) fn resolve(&self, lane: Lane, now: Option<u64>) -> usize {
        match lane {
            Lane::Keep(i) => i,
            Lane::Pick(Group::Main) => self.pick(&self.main, now),
            Lane::Pick(Group::Held) => HELD + self.pick(&self.held, now),
            Lane::Control => CONTROL,
        }
    }

    /// Lane `i` (the last of its group past its end).
    pub(crate) fn get(&self, i: usize) -> &Arc<SharedConnection> {
        let (group, at) = match Group::of(i) {
            None => return &self.control,
            Some(Group::Held) => (&self.held, i - HELD),
            Some(Group::Main) => (&self.main, i),
        };
        &group[at.min(group.len() - 1)]
    }

    /// The first lane of `group` that is not stalled; when all are, the one
    /// that heard from its server last.
    fn pick(&self, group: &[Arc<SharedConnection>], mut now: Option<u64>) -> usize {
        let mut least = (0, u64::MAX);
        for (i, lane) in group.iter().enumerate() {
            if lane.waiting() == 0 {
                return i;
            }
            let now = *now.get_or_insert_with(clock::now);
            let waited = lane.waited(now);
            if waited <= self.stall_after {
                return i;
            }
            if lane.count_stall() {
                self.stalls.fetch_add(1, Ordering::Relaxed);
            }
            if waited < least.1 {
                least = (i, waited);
            }
        }
        least.0
    }

    fn all(&self) -> impl Iterator<Item = &Arc<SharedConnection>> {
        self.main
            .iter()
            .chain(&self.held)
            .chain(std::iter::once(&self.control))
    }

    /// Stalls seen so far.
    pub(crate) fn stalls(&self) -> u64 {
        self.stalls.load(Ordering::Relaxed)
    }

    /// Times a lane's reply timeout ended its connection.
    pub(crate) fn timeouts(&self) -> u64 {
        self.all().map(|l| l.timeouts()).sum()
    }

    /// Lanes stalled now.
    pub(crate) fn stalled_now(&self) -> usize {
        let now = clock::now();
        self.all()
            .filter(|l| l.stalled(now, self.stall_after))
            .count()
    }

    /// Lanes whose connection is open.
    pub(crate) fn open(&self) -> usize {
        self.all().filter(|l| l.is_open()).count()
    }

    /// Every lane ends once nothing waits on it.
    pub(crate) fn retire(&self) {
        self.all().for_each(|l| l.retire());
    }
}

/// A monotonic clock as one number, for timestamps kept in atomics.
pub(crate) mod clock {
    use std::sync::OnceLock;

    use tokio::time::Instant;

    /// Nanoseconds since the first call.
    pub(crate) fn now() -> u64 {
        at(Instant::now())
    }

    /// `t` as nanoseconds since the first call of [`now`] or `at` (0 before).
    pub(crate) fn at(t: Instant) -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        let epoch = *EPOCH.get_or_init(|| t);
        u64::try_from(t.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Endpoint;
    use crate::config::RedisUrl;
    use crate::protocol::Proto;

    fn lanes(max: usize) -> Lanes {
        let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
        let backend = Endpoint::new(url, Duration::from_secs(1), 8);
        Lanes::new(max, Duration::from_millis(10), |_| {
            SharedConnection::new(Proto::Resp2, backend.clone(), None, Default::default())
        })
    }

    #[test]
    fn indices_name_their_group() {
        let l = lanes(2);
        assert_eq!(l.resolve(Lane::Pick(Group::Main), None), 0);
        assert_eq!(l.resolve(Lane::Pick(Group::Held), None), HELD);
        assert_eq!(l.resolve(Lane::Control, None), CONTROL);
        assert_eq!(Group::of(HELD + 1), Some(Group::Held));
        assert_eq!(Group::of(1), Some(Group::Main));
        assert_eq!(Group::of(CONTROL), None);
        assert!(Arc::ptr_eq(l.get(7), l.get(1)), "past the end: the last");
        assert!(!Arc::ptr_eq(l.get(0), l.get(HELD)));
        assert!(Lanes::first_of_group(HELD) && !Lanes::first_of_group(1));
    }
}
