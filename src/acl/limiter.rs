//! Failed logins, counted per source address: past `server.auth_failure_limit`
//! failures within `server.auth_failure_window`, that address's next tries are
//! refused without a password check until the window ends, so a password
//! cannot be guessed at the speed of a pipeline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once: past it, addresses whose window ended are
/// forgotten first, and a new address is not tracked while none has ended
/// (memory stays bounded whatever the number of sources).
const MAX_TRACKED: usize = 16_384;

/// The failure counts.
#[derive(Debug, Default)]
pub(crate) struct AuthLimiter {
    by_addr: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl AuthLimiter {
    /// `Err(wait)` when `addr` has failed `limit` times in the window that
    /// is running (0: no limit).
    pub(crate) fn check(
        &self,
        addr: IpAddr,
        (limit, window): (u32, Duration),
        now: Instant,
    ) -> Result<(), Duration> {
        if limit == 0 {
            return Ok(());
        }
        let map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&addr) {
            Some(&(n, start)) if n >= limit && now.saturating_duration_since(start) < window => {
                Err(window.saturating_sub(now.saturating_duration_since(start)))
            }
            _ => Ok(()),
        }
    }

    /// Counts a failure from `addr`.
    pub(crate) fn failed(&self, addr: IpAddr, window: Duration, now: Instant) {
        let mut map = self.by_addr.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(&addr) {
            map.retain(|_, (_, start)| now.saturating_duration_since(*start) < window);
            if map.len() >= MAX_TRACKED {
                return;
            }
        }
        let e = map.entry(addr).or_insert((0, now));
        if now.saturating_duration_since(e.1) >= window {
            *e = (0, now);
        }
        e.0 = e.0.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_until_the_window_ends() {
        let l = AuthLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let w = Duration::from_secs(60);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.check(a, (3, w), t).is_ok());
            l.failed(a, w, t);
        }
        assert_eq!(
            l.check(a, (3, w), t + Duration::from_secs(20)),
            Err(Duration::from_secs(40))
        );
        assert!(l.check(b, (3, w), t).is_ok());
        assert!(l.check(a, (0, w), t).is_ok());
        assert!(l.check(a, (3, w), t + w).is_ok());
        l.failed(a, w, t + w);
        assert!(l.check(a, (3, w), t + w).is_ok());
    }

    #[test]
    fn tracks_a_bounded_number_of_addresses() {
        let l = AuthLimiter::default();
        let w = Duration::from_secs(60);
        let t = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 100) {
            l.failed(IpAddr::from(i.to_be_bytes()), w, t);
        }
        assert_eq!(l.by_addr.lock().unwrap().len(), MAX_TRACKED);
        // Once their windows end, new addresses are tracked again.
        l.failed("10.9.9.9".parse().unwrap(), w, t + w);
        assert_eq!(l.by_addr.lock().unwrap().len(), 1);
    }
}
