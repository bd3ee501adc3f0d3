//! The clock guard at work on one master: every batch of lock requests ends
//! with a `TIME`, and the answers in the batch count only once that reading
//! shows the master's clock did not run ahead (see `clock.rs` for the
//! arithmetic). A master whose clock ran ahead is distrusted like a
//! restarted one: its locks may have expired early.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis_protocol::resp2::types::BytesFrame;

use super::Master;
use super::clock::{Allowance, Reading, Verdict, time_reply};

/// `TIME`, encoded.
pub(super) const TIME: &[u8] = b"*1\r\n$4\r\nTIME\r\n";

/// What the guard keeps of one master's clock.
#[derive(Debug, Default)]
pub(super) struct ClockState {
    watch: super::clock::ClockWatch,
    /// `TIME` was refused (an ACL, a renamed command): the guard is off for
    /// this master, said once.
    off: bool,
    /// When a step back was last logged.
    logged_back: Option<tokio::time::Instant>,
}

impl Master {
    /// Whether the master's `TIME` can be read (the guard is on for it).
    pub(super) fn clock_guarded(&self) -> bool {
        self.clock.lock().map(|c| !c.off).unwrap_or(false)
    }

    /// A `TIME` reply, asked at `sent` and read at `got`: judges the clock,
    /// and quarantines the master if it ran ahead.
    pub(super) fn clock_read(
        &self,
        frame: &BytesFrame,
        sent: tokio::time::Instant,
        got: tokio::time::Instant,
    ) {
        let Ok(mut clock) = self.clock.lock() else {
            return;
        };
        let Some(remote_us) = time_reply(frame) else {
            if !clock.off {
                clock.off = true;
                tracing::warn!(master = %self.url, reply = ?frame, "clock guard off for this master: TIME is not allowed");
            }
            return;
        };
        self.stats
            .clock_offset_us
            .store(offset_us(remote_us, sent, got), Ordering::Relaxed);
        let cfg = &self.guard.cfg;
        let allow = Allowance {
            factor: cfg.drift_factor,
            floor: cfg.drift_floor,
        };
        let reading = Reading {
            sent,
            got,
            remote_us,
        };
        match clock.watch.observe(reading, allow) {
            Verdict::Steady => {}
            Verdict::Ahead(by) => {
                drop(clock);
                self.clock_ran_ahead(by);
            }
            Verdict::Behind(by) => {
                self.stats.clock_steps_back.fetch_add(1, Ordering::Relaxed);
                let quiet = clock
                    .logged_back
                    .is_some_and(|at| got.duration_since(at) < super::LOG_EVERY);
                if !quiet {
                    clock.logged_back = Some(got);
                    tracing::warn!(
                        master = %self.url,
                        behind_ms = by.as_millis() as u64,
                        "master clock went back (or runs slow): its locks last longer than their TTL; no lock is at risk"
                    );
                }
            }
        }
    }

    /// The clock ran ahead by at least `by`: locks it holds may have expired
    /// early. Quarantined like a restarted master, for the longest TTL a
    /// lock can have.
    fn clock_ran_ahead(&self, by: Duration) {
        self.stats.clock_jumps.fetch_add(1, Ordering::Relaxed);
        let ahead_ms = by.as_millis() as u64;
        let run_id = self.run_id().unwrap_or_default();
        match self.guard.quarantine() {
            Some(d) => self.quarantine_for(
                d,
                &run_id,
                &format!("its clock ran {ahead_ms} ms ahead of the proxy's (beyond drift_factor): locks on it may have expired early"),
            ),
            None => tracing::warn!(
                master = %self.url,
                ahead_ms,
                "master clock ran ahead of the proxy's; not quarantined: max_ttl is not set and this proxy has granted no lock with a TTL"
            ),
        }
    }
}

/// The master's wall clock minus the proxy's, in microseconds, at the
/// middle of the reading.
fn offset_us(remote_us: u64, sent: tokio::time::Instant, got: tokio::time::Instant) -> i64 {
    let half = got.saturating_duration_since(sent) / 2;
    let now = tokio::time::Instant::now();
    let since_middle = now.saturating_duration_since(got) + half;
    let local = SystemTime::now()
        .checked_sub(since_middle)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as i64);
    (remote_us as i64).saturating_sub(local)
}
