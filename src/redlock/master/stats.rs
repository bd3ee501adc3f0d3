//! What the proxy reports about one master, for `INFO`, `PROXY MASTERS`,
//! health and `/metrics`: its state, and the counters kept by the master's
//! task and by the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Connection state, for logs, health and the restart guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MasterState {
    /// Connecting (at start or after the connection closed): requests wait.
    Connecting = 0,
    /// Connected.
    Up = 1,
    /// Connecting failed; waiting before the next attempt: requests fail at once.
    Down = 2,
}

/// Counters kept by the master's task and by the engine.
#[derive(Debug)]
pub struct MasterStats {
    /// Requests written.
    pub sent: AtomicU64,
    /// Requests refused while the master was down or backlogged.
    pub refused: AtomicU64,
    /// Requests skipped because their operation had already given up.
    pub expired: AtomicU64,
    /// Connections established (the first one included).
    pub connects: AtomicU64,
    /// Connection attempts that failed, and connections that broke.
    pub failures: AtomicU64,
    /// Releases owed to this master now.
    pub owed: AtomicU64,
    /// Owed releases dropped because too many were owed.
    pub owed_shed: AtomicU64,
    /// Restarts seen (a new `run_id`).
    pub restarts: AtomicU64,
    /// Quarantines begun or lengthened.
    pub quarantines: AtomicU64,
    /// From writing a request to reading its reply, in seconds.
    pub latency: prometheus_client::metrics::histogram::Histogram,
    /// Votes on acquisitions and extensions: granted by this master.
    pub votes_yes: AtomicU64,
    /// ... refused by it (or distrusted: quarantined).
    pub votes_no: AtomicU64,
    /// ... with no answer that counts (timeout, error, down, lost).
    pub votes_unknown: AtomicU64,
    /// Requests of operations that stopped waiting before it answered.
    pub timeouts: AtomicU64,
    /// Error replies, and requests lost with their connection.
    pub errors: AtomicU64,
    /// Request latency, an exponentially weighted moving average, in µs.
    pub latency_avg_us: AtomicU64,
    /// Times its clock was seen to run ahead of the proxy's (the clock guard).
    pub clock_jumps: AtomicU64,
    /// Times its clock was seen to go back, or run slow.
    pub clock_steps_back: AtomicU64,
    /// Its wall clock minus the proxy's at the last reading, in µs.
    pub clock_offset_us: std::sync::atomic::AtomicI64,
    /// Round trips by power of two: bucket `i` counts those under 2^(i+1) µs.
    rtt: [AtomicU64; RTT_BUCKETS],
    /// Why its last quarantine began (the status page shows it).
    pub quarantine_why: std::sync::Mutex<String>,
}

/// Round-trip buckets: up to 2^24 µs (about 17 s); longer ones count in the last.
const RTT_BUCKETS: usize = 24;

impl Default for MasterStats {
    fn default() -> Self {
        MasterStats {
            sent: AtomicU64::default(),
            refused: AtomicU64::default(),
            expired: AtomicU64::default(),
            connects: AtomicU64::default(),
            failures: AtomicU64::default(),
            owed: AtomicU64::default(),
            owed_shed: AtomicU64::default(),
            restarts: AtomicU64::default(),
            quarantines: AtomicU64::default(),
            latency: crate::metrics::latency_histogram(),
            votes_yes: AtomicU64::default(),
            votes_no: AtomicU64::default(),
            votes_unknown: AtomicU64::default(),
            timeouts: AtomicU64::default(),
            errors: AtomicU64::default(),
            latency_avg_us: AtomicU64::default(),
            clock_jumps: AtomicU64::default(),
            clock_steps_back: AtomicU64::default(),
            clock_offset_us: std::sync::atomic::AtomicI64::default(),
            rtt: std::array::from_fn(|_| AtomicU64::default()),
            quarantine_why: std::sync::Mutex::default(),
        }
    }
}

impl MasterStats {
    /// One request's latency, for the histogram and the moving average (kept
    /// by the master's task alone, so a load and a store suffice).
    pub(crate) fn observe_latency(&self, took: Duration) {
        self.latency.observe(took.as_secs_f64());
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - us.leading_zeros()) as usize;
        self.rtt[bucket.saturating_sub(1).min(RTT_BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        let avg = self.latency_avg_us.load(Ordering::Relaxed);
        let next = if avg == 0 { us } else { (avg * 7 + us) / 8 };
        self.latency_avg_us.store(next.max(1), Ordering::Relaxed);
    }

    /// The round trip that a fraction `q` (0.5: the median) of requests took
    /// at most, as the upper bound of its power-of-two bucket; `None` before
    /// any.
    pub fn rtt_quantile(&self, q: f64) -> Option<Duration> {
        let counts: Vec<u64> = self.rtt.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let want = ((total as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in counts.iter().enumerate() {
            seen += n;
            if seen >= want {
                return Some(Duration::from_micros(1 << (i + 1)));
            }
        }
        Some(Duration::from_micros(1 << RTT_BUCKETS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_quantiles_bound_what_was_seen() {
        let s = MasterStats::default();
        assert_eq!(s.rtt_quantile(0.5), None);
        for us in [100, 120, 130, 900, 5000] {
            s.observe_latency(Duration::from_micros(us));
        }
        // 100-130 µs fall under 128 or 256; 900 under 1024; 5000 under 8192.
        assert_eq!(s.rtt_quantile(0.5), Some(Duration::from_micros(256)));
        assert_eq!(s.rtt_quantile(0.8), Some(Duration::from_micros(1024)));
        assert_eq!(s.rtt_quantile(0.99), Some(Duration::from_micros(8192)));
        s.observe_latency(Duration::from_secs(100));
        assert_eq!(s.rtt_quantile(1.0), Some(Duration::from_micros(1 << 24)));
    }
}
