//! Every connected client, as the server sees it: its waker (shutdown and the
//! memory guard wake it), the bytes it holds in buffers, and whether it was
//! closed to bring the proxy back under its memory cap.
//!
//! A connection publishes its buffered bytes on every turn of its loop (a
//! relaxed store to a cache line of its own, no contention), and adds changes
//! of [`GRANULE`] or more to a shared total (so small clients never touch it).
//! The memory guard (`max_client_memory`, like Redis's `maxmemory-clients`)
//! looks a few times a second, and at once when the total passes the cap; then
//! it closes clients until the rest fits: first those that have not read for
//! [`STUCK`] (a client that never reads is what the cap is for), the largest
//! first, then the others, the largest first. A client reading a large reply
//! as fast as it can is the last to go.
//!
//! Each client also publishes what `CLIENT LIST` shows of it (see
//! `client_list.rs`): its [`Profile`] when it changes it, its state and the
//! time of its last request once per turn of its loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;

use super::client_list::{self, Filter, Moment, Profile, matches};
use super::multiplex::clock;

/// How often the memory guard looks.
const GUARD_EVERY: Duration = Duration::from_millis(100);
/// Changes in a client's buffers smaller than this are not added to the total.
pub(crate) const GRANULE: usize = 64 * 1024;
/// A client holding bytes it has not taken any of for this long is stuck.
const STUCK: Duration = Duration::from_millis(500);

/// One client, as its connection and the server share it.
#[derive(Debug)]
pub(crate) struct Client {
    /// What `CLIENT LIST` shows of it.
    pub(crate) profile: Mutex<Profile>,
    /// The name of the last command it sent, as in the command table.
    pub(crate) cmd: Mutex<&'static str>,
    /// When it connected, and last sent something ([`clock`] nanoseconds).
    created: u64,
    pub(crate) last_active: AtomicU64,
    /// `client_list::state` bits.
    pub(crate) state: AtomicU8,
    /// Closed by `CLIENT KILL`.
    pub(crate) killed: AtomicBool,
    /// In `MONITOR`: lines are waiting in its feed.
    pub(crate) lines: AtomicBool,
    /// Woken when the server has something to tell the connection.
    pub(crate) waker: AtomicWaker,
    /// Bytes the connection holds for this client (replies, requests, backend
    /// bytes not yet passed on).
    pub(crate) buffered: AtomicUsize,
    /// Closed by the memory guard.
    pub(crate) evicted: AtomicBool,
    /// Since when it has held bytes without taking any ([`clock`]
    /// nanoseconds; 0: it is taking them, or holds none).
    stuck_since: AtomicU64,
}

impl Client {
    pub(crate) fn new(profile: Profile) -> Self {
        let now = clock::now();
        Client {
            profile: Mutex::new(profile),
            cmd: Mutex::new("NULL"),
            created: now,
            last_active: AtomicU64::new(now),
            state: AtomicU8::new(0),
            killed: AtomicBool::new(false),
            lines: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            buffered: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            stuck_since: AtomicU64::new(0),
        }
    }

    /// Its numbers now.
    fn moment(&self, now: u64) -> Moment {
        let secs = |since: u64| now.saturating_sub(since) / 1_000_000_000;
        Moment {
            age: secs(self.created),
            idle: secs(self.last_active.load(Ordering::Relaxed)),
            state: self.state.load(Ordering::Relaxed),
            buffered: self.buffered.load(Ordering::Relaxed),
        }
    }

    /// Whether `filter` means this client, `id`, at `now` (one on its way out,
    /// killed or evicted, is gone as far as the others can tell).
    fn meant(&self, filter: &Filter, id: u64, now: u64) -> bool {
        !self.killed.load(Ordering::Relaxed)
            && !self.evicted.load(Ordering::Relaxed)
            && self
                .profile
                .lock()
                .is_ok_and(|p| matches(filter, id, &p, &self.moment(now)))
    }

    /// Its address's IP.
    pub(crate) fn ip(&self) -> std::net::IpAddr {
        self.profile
            .lock()
            .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |p| {
                p.addr.ip()
            })
    }

    /// Its `CLIENT LIST` line.
    pub(crate) fn line(&self, out: &mut String, id: u64) {
        let m = self.moment(clock::now());
        let cmd = self.cmd.lock().map_or("NULL", |c| *c);
        if let Ok(p) = self.profile.lock() {
            client_list::line(out, id, &p, m, cmd);
        }
    }

    /// Whether the client took some of its replies since the last call (or
    /// holds none): a client that stops taking them is stuck from then on.
    pub(crate) fn progress(&self, moving: bool) {
        let since = self.stuck_since.load(Ordering::Relaxed);
        if moving && since != 0 {
            self.stuck_since.store(0, Ordering::Relaxed);
        } else if !moving && since == 0 {
            self.stuck_since
                .store(clock::now().max(1), Ordering::Relaxed);
        }
    }

    /// Whether it has held bytes without taking any for [`STUCK`] by `now`.
    fn stuck(&self, now: u64) -> bool {
        let since = self.stuck_since.load(Ordering::Relaxed);
        since != 0 && now.saturating_sub(since) >= STUCK.as_nanos() as u64
    }
}

/// The connected clients.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    map: Mutex<HashMap<u64, Arc<Client>>>,
    /// Bytes all clients hold, to within [`GRANULE`] each.
    total: AtomicUsize,
    /// Past this total the guard is woken at once (0: never).
    cap: AtomicUsize,
    /// Wakes the guard.
    guard: tokio::sync::Notify,
}

impl Clients {
    /// A new connection.
    pub(crate) fn register(&self, id: u64, profile: Profile) -> Arc<Client> {
        let c = Arc::new(Client::new(profile));
        if let Ok(mut m) = self.map.lock() {
            m.insert(id, Arc::clone(&c));
        }
        c
    }

    /// The connection is gone.
    pub(crate) fn unregister(&self, id: u64) {
        if let Ok(mut m) = self.map.lock() {
            m.remove(&id);
        }
    }

    /// `CLIENT LIST`: a line per client `filter` matches, by id.
    pub(crate) fn list(&self, filter: &Filter) -> String {
        let now = clock::now();
        let mut out = String::new();
        let Ok(m) = self.map.lock() else {
            return out;
        };
        let mut ids: Vec<u64> = m.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let c = &m[&id];
            if c.meant(filter, id, now) {
                c.line(&mut out, id);
                out.push('\n');
            }
        }
        out
    }

    /// `CLIENT KILL`: closes the clients `filter` matches (`me` too unless
    /// it skips it); how many.
    pub(crate) fn kill(&self, filter: &Filter, me: u64) -> usize {
        let now = clock::now();
        let Ok(m) = self.map.lock() else {
            return 0;
        };
        let mut n = 0;
        for (&id, c) in m.iter() {
            if filter.skip_me && id == me {
                continue;
            }
            if c.meant(filter, id, now) {
                c.killed.store(true, Ordering::Relaxed);
                c.waker.wake();
                n += 1;
            }
        }
        n
    }

    /// Client `id`'s own backend connection's id there: `None` for no such
    /// client, `Some(None)` for one without an own connection.
    pub(crate) fn backend_id(&self, id: u64) -> Option<Option<u64>> {
        let m = self.map.lock().ok()?;
        let c = m.get(&id)?;
        c.profile.lock().ok().map(|p| p.backend_id)
    }

    /// The proxy's id of the client whose own backend connection has
    /// `backend_id` there.
    pub(crate) fn by_backend_id(&self, backend_id: u64) -> Option<u64> {
        let m = self.map.lock().ok()?;
        m.iter().find_map(|(&id, c)| {
            c.profile
                .lock()
                .is_ok_and(|p| p.backend_id == Some(backend_id))
                .then_some(id)
        })
    }

    /// Wakes every connection.
    pub(crate) fn wake_all(&self) {
        if let Ok(m) = self.map.lock() {
            for c in m.values() {
                c.waker.wake();
            }
        }
    }

    /// A client's buffers went from `was` to `now` bytes (a change of
    /// [`GRANULE`] or more): the total follows, and the guard hears of it past the cap.
    pub(crate) fn adjust(&self, was: usize, now: usize) {
        let total = if now >= was {
            self.total.fetch_add(now - was, Ordering::Relaxed) + (now - was)
        } else {
            self.total.fetch_sub(was - now, Ordering::Relaxed) - (was - now)
        };
        let cap = self.cap.load(Ordering::Relaxed);
        if cap > 0 && total > cap {
            self.guard.notify_one();
        }
    }

    /// Bytes all clients hold.
    pub(crate) fn buffered(&self) -> usize {
        self.map.lock().map_or(0, |m| {
            m.values().map(|c| c.buffered.load(Ordering::Relaxed)).sum()
        })
    }

    /// Past `cap` bytes in all: picks clients until the others fit, the stuck
    /// ones first, the largest first; marks them evicted and wakes them.
    /// Returns how many, and the bytes they held.
    pub(crate) fn evict_over(&self, cap: usize) -> (usize, usize) {
        self.evict_at(cap, clock::now())
    }

    /// [`evict_over`](Self::evict_over) at `now` ([`clock`] nanoseconds).
    fn evict_at(&self, cap: usize, now: u64) -> (usize, usize) {
        let Ok(m) = self.map.lock() else {
            return (0, 0);
        };
        let mut held: Vec<(bool, usize, &Arc<Client>)> = m
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .map(|c| (c.stuck(now), c.buffered.load(Ordering::Relaxed), c))
            .collect();
        let mut total: usize = held.iter().map(|h| h.1).sum();
        if total <= cap {
            return (0, 0);
        }
        held.sort_unstable_by_key(|h| std::cmp::Reverse((h.0, h.1)));
        let (mut n, mut freed) = (0, 0);
        for (_, bytes, c) in held {
            if total <= cap || bytes == 0 {
                break;
            }
            c.evicted.store(true, Ordering::Relaxed);
            c.waker.wake();
            total -= bytes;
            freed += bytes;
            n += 1;
        }
        (n, freed)
    }
}

/// Keeps the clients' buffers under `cap` bytes in all, until `stop`.
pub(crate) async fn guard_memory(
    clients: Arc<Clients>,
    cap: usize,
    evicted: impl Fn(usize, usize),
    stop: tokio_util::sync::CancellationToken,
) {
    clients.cap.store(cap, Ordering::Relaxed);
    let mut tick = tokio::time::interval(GUARD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = clients.guard.notified() => {}
            _ = stop.cancelled() => return,
        }
        let (n, bytes) = clients.evict_over(cap);
        if n > 0 {
            evicted(n, bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client per size, holding that many bytes, ids 0, 1, ...
    fn holding(clients: &Clients, sizes: &[usize]) -> Vec<Arc<Client>> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let c = clients.register(i as u64, test_profile());
                c.buffered.store(b, Ordering::Relaxed);
                c
            })
            .collect()
    }

    fn test_profile() -> Profile {
        let a = "127.0.0.1:1".parse().unwrap();
        Profile::new(a, a, 0, 0)
    }

    #[test]
    fn kill_closes_the_matching_clients_and_list_shows_the_rest() {
        let clients = Clients::default();
        let a = clients.register(1, test_profile());
        let b = clients.register(2, test_profile());
        let list = clients.list(&Filter::default());
        assert!(
            list.starts_with("id=1 ") && list.contains("\nid=2 "),
            "{list}"
        );
        let kill = crate::command::parse_kill(&["CLIENT", "KILL", "ADDR", "127.0.0.1:1"][..], 2)
            .unwrap()
            .filter();
        assert_eq!(clients.kill(&kill, 1), 1, "SKIPME yes by default");
        assert!(!a.killed.load(Ordering::Relaxed) && b.killed.load(Ordering::Relaxed));
        assert_eq!(clients.kill(&kill, 1), 0, "killed once");
    }

    #[test]
    fn the_largest_go_first_until_the_rest_fits() {
        let clients = Clients::default();
        let sizes = [10usize, 500, 40, 300];
        let handles = holding(&clients, &sizes);
        assert_eq!(clients.buffered(), 850);
        assert_eq!(clients.evict_over(1000), (0, 0));
        assert_eq!(clients.evict_over(100), (2, 800));
        let evicted: Vec<bool> = handles
            .iter()
            .map(|c| c.evicted.load(Ordering::Relaxed))
            .collect();
        assert_eq!(evicted, [false, true, false, true]);
        clients.unregister(1);
        assert_eq!(clients.buffered(), 350);
    }

    #[test]
    fn stuck_clients_go_before_larger_ones_that_read() {
        let clients = Clients::default();
        // A reader of a large reply, and two smaller clients that stopped reading.
        let sizes = [600usize, 200, 300];
        let handles = holding(&clients, &sizes);
        handles[0].progress(true);
        for c in &handles[1..] {
            c.progress(false);
        }
        let later = clock::now() + STUCK.as_nanos() as u64;
        assert_eq!(clients.evict_at(700, later), (2, 500));
        let evicted: Vec<bool> = handles
            .iter()
            .map(|c| c.evicted.load(Ordering::Relaxed))
            .collect();
        assert_eq!(evicted, [false, true, true]);
        // Past the cap with only readers left: the largest goes after all.
        assert_eq!(clients.evict_at(100, later), (1, 600));
    }

    #[test]
    fn a_client_is_stuck_only_while_it_takes_nothing() {
        let c = Client::new(test_profile());
        c.progress(false);
        assert_ne!(c.stuck_since.load(Ordering::Relaxed), 0);
        let since = c.stuck_since.load(Ordering::Relaxed);
        c.progress(false);
        assert_eq!(
            c.stuck_since.load(Ordering::Relaxed),
            since,
            "kept from the first"
        );
        c.progress(true);
        assert_eq!(c.stuck_since.load(Ordering::Relaxed), 0);
    }
}
