//! Every connected client, as the server sees it: its waker (shutdown and the
//! memory guard wake it), the bytes it holds in buffers, and whether it was
//! closed to bring the proxy back under its memory cap.
//!
//! A connection publishes its buffered bytes on every turn of its loop (a
//! relaxed store to a cache line of its own, no contention), and adds changes
//! of [`GRANULE`] or more to a shared total (so small clients never touch it).
//! The memory guard (`max_client_memory`, like Redis's `maxmemory-clients`)
//! looks a few times a second, and at once when the total passes the cap; then
//! it closes the clients holding the most until the rest fits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::task::AtomicWaker;

/// How often the memory guard looks.
const GUARD_EVERY: Duration = Duration::from_millis(100);
/// Changes in a client's buffers smaller than this are not added to the total.
pub(crate) const GRANULE: usize = 64 * 1024;

/// One client, as its connection and the server share it.
#[derive(Debug, Default)]
pub(crate) struct Client {
    /// Woken when the server has something to tell the connection.
    pub(crate) waker: AtomicWaker,
    /// Bytes the connection holds for this client (replies, requests, backend
    /// bytes not yet passed on).
    pub(crate) buffered: AtomicUsize,
    /// Closed by the memory guard.
    pub(crate) evicted: AtomicBool,
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
    pub(crate) fn register(&self, id: u64) -> Arc<Client> {
        let c = Arc::new(Client::default());
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

    /// Past `cap` bytes in all: picks the clients holding the most, until the
    /// others fit, marks them evicted and wakes them. Returns how many, and the
    /// bytes they held.
    pub(crate) fn evict_over(&self, cap: usize) -> (usize, usize) {
        let Ok(m) = self.map.lock() else {
            return (0, 0);
        };
        let mut held: Vec<(usize, &Arc<Client>)> = m
            .values()
            .filter(|c| !c.evicted.load(Ordering::Relaxed))
            .map(|c| (c.buffered.load(Ordering::Relaxed), c))
            .collect();
        let mut total: usize = held.iter().map(|h| h.0).sum();
        if total <= cap {
            return (0, 0);
        }
        held.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        let (mut n, mut freed) = (0, 0);
        for (bytes, c) in held {
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

    #[test]
    fn the_largest_go_first_until_the_rest_fits() {
        let clients = Clients::default();
        let sizes = [10usize, 500, 40, 300];
        let handles: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                let c = clients.register(i as u64);
                c.buffered.store(b, Ordering::Relaxed);
                c
            })
            .collect();
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
}
