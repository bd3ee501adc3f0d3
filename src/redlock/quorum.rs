//! The RedLock arithmetic: quorum, clock drift, validity, per-master timeouts and
//! the conservative TTL of a quorum. Pure functions, no I/O.

use std::time::Duration;

/// The algorithm's parameters (from `[redlock]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Per-master timeout (before the TTL cap).
    pub node_timeout: Duration,
    /// Drift allowance as a fraction of the TTL.
    pub drift_factor: f64,
    /// Drift allowance added to the fraction.
    pub drift_floor: Duration,
    /// Least validity for a grant.
    pub min_validity: Duration,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            node_timeout: Duration::from_millis(50),
            drift_factor: 0.01,
            drift_floor: Duration::from_millis(2),
            min_validity: Duration::from_millis(1),
        }
    }
}

/// A per-master timeout is never more than this fraction of the TTL, so a slow
/// master cannot eat the lock's validity (the spec: 5-50 ms for a 10 s TTL).
pub const NODE_TIMEOUT_TTL_DIVISOR: u32 = 10;

/// Votes needed out of `n` masters: a strict majority.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Votes needed out of `n` voters for a counting semaphore of `limit` seats
/// (a shared lock of at most `limit` holders): the least `q` with
/// `q × (limit + 1) > n × limit`.
///
/// Why: each voter admits at most `limit` holders. If `limit + 1` holders
/// were each granted by `q` voters, they would hold `q × (limit + 1)` seats
/// among `n × limit`; when that exceeds the seats there are, some voter
/// admitted `limit + 1` of them, which it never does. So no more than `limit`
/// hold at once. With `q × (limit + 1) ≤ n × limit`, seats can be dealt out
/// so that `limit + 1` holders each have `q` voters: a majority is not enough
/// once `limit` ≥ 2 (3 voters: all three; 5 voters: 4 for a limit of 2 or 3,
/// all five from 4 on). `limit` 1 (a mutex) and 0 give the majority.
pub fn quorum_for_limit(n: usize, limit: u64) -> usize {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX).max(1);
    if limit >= n {
        // n × limit / (limit + 1) rounds down to n − 1.
        return n;
    }
    n * limit / (limit + 1) + 1
}

/// Clock drift allowance for a TTL: `ttl × drift_factor + drift_floor`.
pub fn drift(ttl: Duration, p: &Params) -> Duration {
    ttl.mul_f64(p.drift_factor) + p.drift_floor
}

/// Time left on a lock: `ttl − elapsed − drift`, or `None` when nothing is left
/// (never an underflow).
pub fn validity(ttl: Duration, elapsed: Duration, p: &Params) -> Option<Duration> {
    ttl.checked_sub(elapsed)?
        .checked_sub(drift(ttl, p))
        .filter(|v| !v.is_zero())
}

/// The timeout for each master in an operation on a lock with `ttl` (none: no
/// expiry): `node_timeout`, capped at a tenth of the TTL, at least 1 ms.
pub fn node_timeout(ttl: Option<Duration>, p: &Params) -> Duration {
    match ttl {
        Some(ttl) => p
            .node_timeout
            .min(ttl / NODE_TIMEOUT_TTL_DIVISOR)
            .max(Duration::from_millis(1)),
        None => p.node_timeout,
    }
}

/// The outcome of a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Granted; `None` validity means the lock has no expiry.
    Granted(Option<Duration>),
    /// Fewer votes than the quorum.
    NoQuorum,
    /// A quorum, but too little validity left.
    Expired,
}

/// Decides a grant: `votes ≥ q` (the quorum) and, for a lock with a TTL,
/// validity of at least `min_validity` after `elapsed` and drift.
pub fn decide(
    votes: usize,
    q: usize,
    ttl: Option<Duration>,
    elapsed: Duration,
    p: &Params,
) -> Decision {
    if votes < q {
        return Decision::NoQuorum;
    }
    let Some(ttl) = ttl else {
        return Decision::Granted(None);
    };
    match validity(ttl, elapsed, p) {
        Some(v) if v >= p.min_validity => Decision::Granted(Some(v)),
        _ => Decision::Expired,
    }
}

/// The largest value that at least `q` of `values` reach: the conservative
/// answer of a quorum (for TTLs: a quorum holds the lock at least this long).
/// `None` when there are fewer than `q` values.
pub fn quorum_value(values: &mut [i64], q: usize) -> Option<i64> {
    if q == 0 || values.len() < q {
        return None;
    }
    values.sort_unstable_by(|a, b| b.cmp(a));
    Some(values[q - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn quorum_is_a_strict_majority() {
        assert_eq!(quorum(1), 1);
        assert_eq!(quorum(2), 2);
        assert_eq!(quorum(3), 2);
        assert_eq!(quorum(4), 3);
        assert_eq!(quorum(5), 3);
    }

    #[test]
    fn semaphore_quorums() {
        assert_eq!(quorum_for_limit(3, 1), 2);
        assert_eq!(quorum_for_limit(3, 2), 3);
        assert_eq!(quorum_for_limit(3, 100), 3);
        assert_eq!(quorum_for_limit(5, 2), 4);
        assert_eq!(quorum_for_limit(5, 3), 4);
        assert_eq!(quorum_for_limit(5, 4), 5);
        assert_eq!(quorum_for_limit(1, 5), 1);
        assert_eq!(quorum_for_limit(7, 0), 4);
        assert_eq!(quorum_for_limit(7, u64::MAX), 7);
    }

    #[test]
    fn validity_follows_the_spec() {
        let p = Params::default();
        // 10 s TTL, 5 ms elapsed: drift = 100 ms + 2 ms.
        assert_eq!(validity(10_000 * MS, 5 * MS, &p), Some(9_893 * MS));
        assert_eq!(
            decide(2, quorum(3), Some(10_000 * MS), 5 * MS, &p),
            Decision::Granted(Some(9_893 * MS))
        );
        assert_eq!(
            decide(1, quorum(3), Some(10_000 * MS), 5 * MS, &p),
            Decision::NoQuorum
        );
        assert_eq!(
            decide(2, quorum(3), None, 5 * MS, &p),
            Decision::Granted(None)
        );
    }

    #[test]
    fn tiny_ttls_are_never_granted() {
        let p = Params::default();
        assert_eq!(
            decide(3, quorum(3), Some(MS), Duration::ZERO, &p),
            Decision::Expired
        );
        assert_eq!(
            decide(3, quorum(3), Some(2 * MS), Duration::ZERO, &p),
            Decision::Expired
        );
        assert_eq!(validity(MS, 10 * MS, &p), None);
        assert_eq!(
            decide(3, quorum(3), Some(Duration::ZERO), Duration::ZERO, &p),
            Decision::Expired
        );
    }

    #[test]
    fn node_timeout_is_capped_by_ttl() {
        let p = Params::default();
        assert_eq!(node_timeout(Some(10_000 * MS), &p), 50 * MS);
        assert_eq!(node_timeout(Some(100 * MS), &p), 10 * MS);
        assert_eq!(node_timeout(Some(MS), &p), MS);
        assert_eq!(node_timeout(None, &p), 50 * MS);
    }

    #[test]
    fn quorum_value_is_the_qth_largest() {
        assert_eq!(quorum_value(&mut [100, 300, 200], 2), Some(200));
        assert_eq!(quorum_value(&mut [100], 2), None);
        assert_eq!(quorum_value(&mut [5, 5, 5, 1, 0], 3), Some(5));
    }

    proptest! {
        #[test]
        fn validity_never_underflows_and_never_exceeds_ttl(
            ttl_ms in 0u64..100_000_000, elapsed_us in 0u64..200_000_000_000,
            factor in 0.0f64..0.49, floor_ms in 0u64..1000,
        ) {
            let p = Params { drift_factor: factor, drift_floor: Duration::from_millis(floor_ms), ..Params::default() };
            let ttl = Duration::from_millis(ttl_ms);
            let elapsed = Duration::from_micros(elapsed_us);
            if let Some(v) = validity(ttl, elapsed, &p) {
                prop_assert!(v < ttl);
                prop_assert!(v + elapsed + drift(ttl, &p) <= ttl + MS);
            }
            // A grant always leaves at least min_validity.
            if let Decision::Granted(Some(v)) = decide(3, quorum(3), Some(ttl), elapsed, &p) {
                prop_assert!(v >= p.min_validity);
            }
        }

        #[test]
        fn a_semaphore_quorum_is_the_least_that_keeps_the_limit(n in 1usize..12, limit in 1u64..20) {
            let q = quorum_for_limit(n, limit);
            let l = limit as usize;
            prop_assert!(q >= 1 && q <= n);
            // Enough: limit + 1 holders would need more seats than there are.
            prop_assert!(q == n || q * (l + 1) > n * l);
            // Least: one fewer, and seats can be dealt to limit + 1 holders.
            prop_assert!(q == 1 || (q - 1) * (l + 1) <= n * l);
            if limit == 1 {
                prop_assert_eq!(q, quorum(n));
            }
        }

        #[test]
        fn granted_only_with_a_majority(votes in 0usize..10, n in 1usize..10) {
            let votes = votes.min(n);
            let d = decide(votes, quorum(n), None, Duration::ZERO, &Params::default());
            prop_assert_eq!(matches!(d, Decision::Granted(_)), votes * 2 > n);
        }
    }
}
