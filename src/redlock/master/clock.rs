//! The clock guard's arithmetic: whether a master's clock ran ahead of the
//! proxy's.
//!
//! RedLock assumes every master's clock advances at about the rate of the
//! proxy's, within the drift the votes allow (`ttl × drift_factor +
//! drift_floor`). Redis expires keys by its wall clock, so a master whose
//! clock is stepped forward (NTP, a VM resumed, an operator) or runs fast
//! forgets its locks early, and the same lock could be granted twice.
//!
//! Each reading is the master's `TIME`, bracketed by the proxy's monotonic
//! clock: asked at `sent`, answered at `got`, so the master read its clock
//! somewhere in between. Against a reference reading at most [`WINDOW`] old,
//! the master's clock ran ahead for certain when it gained more than the
//! longest the proxy's could have (`got − reference.sent`) plus the drift
//! allowed over that span. Ahead is what endangers locks; a clock stepped
//! back (or running slow) keeps locks longer, which costs availability, not
//! safety, and is reported only.

use std::time::Duration;

use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

/// A reference reading is kept at most this long: over a longer span the
/// drift allowance would hide a step (1% of an hour is 36 s).
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// One reading of a master's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    /// When `TIME` was written (or earlier).
    pub(crate) sent: Instant,
    /// When its reply was read.
    pub(crate) got: Instant,
    /// The master's clock: microseconds since the Unix epoch.
    pub(crate) remote_us: u64,
}

/// What a reading says about the master's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the allowed drift (or nothing to compare with yet).
    Steady,
    /// It gained at least this much more than the proxy's clock allows.
    Ahead(Duration),
    /// It lost at least this much (stepped back, or slow).
    Behind(Duration),
}

/// The drift a span may show: `span × factor + floor`, as in the votes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    /// `drift_factor`.
    pub(crate) factor: f64,
    /// `drift_floor`.
    pub(crate) floor: Duration,
}

impl Allowance {
    fn over(&self, span: Duration) -> Duration {
        span.mul_f64(self.factor.clamp(0.0, 1.0)) + self.floor
    }
}

/// One master's clock, as the proxy has seen it.
#[derive(Debug, Default)]
pub(crate) struct ClockWatch {
    reference: Option<Reading>,
}

impl ClockWatch {
    /// Judges `r` against the reference, then keeps `r` as the reference when
    /// the reference is older than [`WINDOW`] or the clock jumped (the next
    /// readings are judged from where it is now).
    pub(crate) fn observe(&mut self, r: Reading, allow: Allowance) -> Verdict {
        let Some(base) = self.reference else {
            self.reference = Some(r);
            return Verdict::Steady;
        };
        let verdict = judge(&base, &r, allow);
        if verdict != Verdict::Steady || r.sent.saturating_duration_since(base.got) >= WINDOW {
            self.reference = Some(r);
        }
        verdict
    }
}

/// Whether the master's clock, read at `base` then at `now`, gained or lost
/// more than the proxy's could have with the allowed drift.
pub(crate) fn judge(base: &Reading, now: &Reading, allow: Allowance) -> Verdict {
    let us = |d: Duration| i128::try_from(d.as_micros()).unwrap_or(i128::MAX);
    let remote = i128::from(now.remote_us) - i128::from(base.remote_us);
    // The proxy's clock advanced at most `longest` between the two readings,
    // and at least `shortest`.
    let longest = now.got.saturating_duration_since(base.sent);
    let shortest = now.sent.saturating_duration_since(base.got);
    let most = us(longest) + us(allow.over(longest));
    let least = us(shortest) - us(allow.over(shortest));
    let micros = |n: i128| Duration::from_micros(u64::try_from(n).unwrap_or(u64::MAX));
    if remote > most {
        Verdict::Ahead(micros(remote - most))
    } else if remote < least {
        Verdict::Behind(micros(least - remote))
    } else {
        Verdict::Steady
    }
}

/// The microseconds since the epoch in a `TIME` reply (`[seconds,
/// microseconds]`, as bulk strings); `None` for anything else.
pub(crate) fn time_reply(frame: &BytesFrame) -> Option<u64> {
    let BytesFrame::Array(parts) = frame else {
        return None;
    };
    let [BytesFrame::BulkString(s), BytesFrame::BulkString(us)] = parts.as_slice() else {
        return None;
    };
    let s: u64 = std::str::from_utf8(s).ok()?.parse().ok()?;
    let us: u64 = std::str::from_utf8(us).ok()?.parse().ok()?;
    s.checked_mul(1_000_000)?.checked_add(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: Allowance = Allowance {
        factor: 0.01,
        floor: Duration::from_millis(2),
    };

    fn reading(t0: Instant, sent_ms: u64, rtt_us: u64, remote_ms: u64) -> Reading {
        let sent = t0 + Duration::from_millis(sent_ms);
        Reading {
            sent,
            got: sent + Duration::from_micros(rtt_us),
            remote_us: 1_700_000_000_000_000 + remote_ms * 1000,
        }
    }

    #[test]
    fn a_steady_clock_is_steady_whatever_its_offset() {
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        // Five minutes off the proxy's wall clock: offsets do not matter, rates do.
        for i in 0..50 {
            let r = reading(t0, i * 100, 300, 300_000 + i * 100);
            assert_eq!(w.observe(r, ALLOW), Verdict::Steady, "reading {i}");
        }
    }

    #[test]
    fn a_step_forward_is_ahead_by_about_the_step() {
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        w.observe(reading(t0, 0, 200, 0), ALLOW);
        w.observe(reading(t0, 100, 200, 100), ALLOW);
        match w.observe(reading(t0, 200, 200, 60_200), ALLOW) {
            Verdict::Ahead(d) => {
                assert!(d > Duration::from_millis(59_000) && d <= Duration::from_secs(60))
            }
            v => panic!("{v:?}"),
        }
        // Judged from where it is now: steady again after the step.
        assert_eq!(
            w.observe(reading(t0, 300, 200, 60_300), ALLOW),
            Verdict::Steady
        );
    }

    #[test]
    fn a_step_within_the_allowance_is_steady() {
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        w.observe(reading(t0, 0, 200, 0), ALLOW);
        // 1 ms more over 500 ms: within 500 × 1% + 2 ms.
        assert_eq!(
            w.observe(reading(t0, 500, 200, 501), ALLOW),
            Verdict::Steady
        );
    }

    #[test]
    fn a_clock_twice_as_fast_is_ahead_within_a_few_readings() {
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        let verdicts: Vec<Verdict> = (0..20)
            .map(|i| w.observe(reading(t0, i * 10, 200, i * 20), ALLOW))
            .collect();
        let first = verdicts
            .iter()
            .position(|v| matches!(v, Verdict::Ahead(_)))
            .expect("never ahead");
        assert!(first <= 3, "{verdicts:?}");
    }

    #[test]
    fn a_slow_reply_is_no_jump() {
        // The master answered 5 s late (DEBUG SLEEP, a fork): its clock read
        // anywhere in those 5 s.
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        w.observe(reading(t0, 0, 200, 0), ALLOW);
        for remote in [100, 2_500, 5_000] {
            let r = Reading {
                sent: t0 + Duration::from_millis(100),
                got: t0 + Duration::from_millis(5_100),
                remote_us: 1_700_000_000_000_000 + remote * 1000,
            };
            assert_eq!(judge(&reading(t0, 0, 200, 0), &r, ALLOW), Verdict::Steady);
        }
        assert_eq!(
            w.observe(reading(t0, 5_200, 200, 5_200), ALLOW),
            Verdict::Steady
        );
    }

    #[test]
    fn a_step_back_is_behind_never_ahead() {
        let t0 = Instant::now();
        let mut w = ClockWatch::default();
        w.observe(reading(t0, 0, 200, 10_000), ALLOW);
        assert!(matches!(
            w.observe(reading(t0, 100, 200, 5_000), ALLOW),
            Verdict::Behind(_)
        ));
        assert_eq!(
            w.observe(reading(t0, 200, 200, 5_100), ALLOW),
            Verdict::Steady
        );
    }

    #[test]
    fn time_replies_are_parsed_and_anything_else_is_not() {
        let bulk = |s: &str| BytesFrame::BulkString(bytes::Bytes::copy_from_slice(s.as_bytes()));
        let ok = BytesFrame::Array(vec![bulk("1700000000"), bulk("123456")]);
        assert_eq!(time_reply(&ok), Some(1_700_000_000_123_456));
        let err = BytesFrame::Error("NOPERM".into());
        assert_eq!(time_reply(&err), None);
        assert_eq!(
            time_reply(&BytesFrame::Array(vec![bulk("x"), bulk("1")])),
            None
        );
    }
}
