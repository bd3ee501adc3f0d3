//! Fencing tokens: a number that strictly increases across the grants of one
//! lock key, so a storage service can reject writes from a holder whose lease
//! ran out while it was paused.
//!
//! Independent per-master counters do not give one (the maximum of increments
//! on different majorities goes backwards), so this is the majority scheme:
//! read the counter from a quorum and take the maximum `m`, then set `m + 1`
//! where it is still greater, and the fence is `m + 1` once a quorum accepted
//! it; otherwise read again. Any two quorums share a master, so a fence issued
//! before a read is seen by it, and every later fence is larger — as long as
//! the masters keep their counters (persistence: the proxy reports it at
//! start). Only the holder gets one: both phases check the token, and the
//! fence a quorum of holders remembers for the token is given again.

use std::time::Duration;

use bytes::Bytes;

use super::{Engine, Outcome, count};
use crate::backend::cluster::hash_tag;
use crate::errors;
use crate::protocol::Reply;
use crate::redlock::master::Role;
use crate::redlock::op::LockOp;
use crate::redlock::vote::{self, Answer, FenceRead, Votes};

/// Reads the holder check, the counter and the fence remembered for a token:
/// `[held, counter, fence]`.
pub(super) const FENCE_READ_SCRIPT: &str =
    "local f = redis.call('hmget', KEYS[2], 'max', 'tok', 'fence')
local held = 0
if redis.call('get', KEYS[1]) == ARGV[1] then held = 1 end
local mine = 0
if held == 1 and f[2] == ARGV[1] then mine = tonumber(f[3]) or 0 end
return {held, tonumber(f[1]) or 0, mine}
";

/// Sets the counter to ARGV[2] where the token holds the lock and the counter
/// is smaller; 1 when set.
pub(super) const FENCE_ISSUE_SCRIPT: &str =
    "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[2])
if (tonumber(redis.call('hget', KEYS[2], 'max')) or 0) >= n then return 0 end
redis.call('hset', KEYS[2], 'max', ARGV[2], 'tok', ARGV[1], 'fence', ARGV[2])
return 1
";

/// Read-then-issue rounds before giving up under contention.
const ATTEMPTS: usize = 8;

/// The key of a lock key's counter, on the masters.
fn counter_key(key: &[u8]) -> Bytes {
    let mut k = Vec::with_capacity(20 + key.len());
    k.extend_from_slice(b"redlock-proxy:fence:");
    k.extend_from_slice(key);
    Bytes::from(k)
}

/// The key of a lock key's counter on a cluster voter, where both must be in
/// one slot: [`counter_key`] when the lock key has a hash tag (the counter
/// keeps it), else the lock key itself as the counter's tag. `None` for a key
/// with a `}` and no tag of its own, which no tag can name.
fn cluster_counter_key(key: &[u8]) -> Option<Bytes> {
    if hash_tag(key).is_some() {
        return Some(counter_key(key));
    }
    if key.contains(&b'}') {
        return None;
    }
    let mut k = Vec::with_capacity(22 + key.len());
    k.extend_from_slice(b"redlock-proxy:fence:{");
    k.extend_from_slice(key);
    k.push(b'}');
    Some(Bytes::from(k))
}

impl Engine {
    /// `LOCK.FENCE key token`.
    pub(super) async fn fence_op(&self, key: Bytes, token: Bytes) -> Outcome {
        match self.fence(&key, &token).await {
            Ok(n) => Reply::Int(n).into(),
            Err(reply) => reply.into(),
        }
    }

    /// Issues (or gives again) the fence of the grant of `key` held by `token`.
    async fn fence(&self, key: &Bytes, token: &Bytes) -> Result<i64, Reply> {
        let q = self.quorum();
        let timeout = self.cfg.op_timeout;
        let keys = [key.clone(), counter_key(key)];
        // A cluster voter's counter is in the lock key's slot (plain masters
        // keep the name they always had).
        let cluster_keys = cluster_counter_key(key).map(|c| [key.clone(), c]);
        let variant = |script: &super::Internal, argv: &[&[u8]]| super::Cmd {
            plain: script.call(&keys, argv),
            cluster: cluster_keys.as_ref().map(|k| script.call(k, argv)),
        };
        for _ in 0..ATTEMPTS {
            let read = variant(&self.fence_read, &[token]);
            let script = Some(std::sync::Arc::clone(&self.fence_read.preload));
            let round = self
                .collect(read, script, timeout, Role::None, |a| {
                    vote::fence_read(a, q, false).is_some()
                })
                .await;
            let max = match vote::fence_read(&round.answers, q, true) {
                None => return Err(self.undecided("fence", &round.answers, timeout)),
                Some(FenceRead::NotHeld) => return Err(errors::not_holder()),
                Some(FenceRead::Held {
                    issued: Some(n), ..
                }) => return Ok(n),
                Some(FenceRead::Held { max, .. }) => max,
            };
            let next = max.saturating_add(1).to_string();
            let issue = variant(&self.fence_issue, &[token, next.as_bytes()]);
            let script = Some(std::sync::Arc::clone(&self.fence_issue.preload));
            let yes = |f: &redis_protocol::resp2::types::BytesFrame| vote::is_one(f);
            let round = self
                .collect(issue, script, timeout, Role::None, |a: &[Answer]| {
                    Votes::count(a, yes).decided(q)
                })
                .await;
            if Votes::count(&round.answers, yes).carried(q) {
                count(&self.stats.fences);
                return Ok(max + 1);
            }
            // Another fence got there first, the lock changed hands, or too
            // few answered: read again (numbers only grow, so a partly set
            // counter is harmless).
        }
        Err(errors::err(
            "LOCK.FENCE: too much contention to issue a fencing token; try again",
        ))
    }

    /// `LOCK.ACQUIRE key token ttl_ms`: the acquisition, then its fence.
    /// `[validity_ms, fence]`, or nil when refused; the grant is released if
    /// no fence can be issued, or no validity is left after it.
    pub(super) async fn acquire_fenced(&self, key: Bytes, token: Bytes, ttl: Duration) -> Outcome {
        let mut outcome = self
            .acquire_set(key.clone(), token.clone(), Some(ttl), None, false)
            .await;
        let Some(mut lease) = outcome.lease.take() else {
            return outcome; // refused: nil
        };
        let fence = self.fence(&key, &token).await;
        let valid_until = lease.valid_until.unwrap_or_else(tokio::time::Instant::now);
        let left = valid_until.saturating_duration_since(tokio::time::Instant::now());
        let fence = match fence {
            Ok(n) if left >= self.cfg.params.min_validity && !left.is_zero() => n,
            Ok(_) => {
                if let Some(g) = &lease.grant {
                    self.release_grant(g);
                }
                count(&self.stats.expired);
                return Reply::Nil.into();
            }
            Err(reply) => {
                if let Some(g) = &lease.grant {
                    self.release_grant(g);
                }
                return reply.into();
            }
        };
        let validity_ms = i64::try_from(left.as_millis()).unwrap_or(i64::MAX);
        lease.again = Some(LockOp::AcquireFenced { key, token, ttl });
        lease.instead = Reply::Nil;
        Outcome {
            reply: Reply::Array(vec![Reply::Int(validity_ms), Reply::Int(fence)]),
            lease: Some(lease),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cluster::key_slot;

    #[test]
    fn counters_live_beside_their_lock() {
        assert_eq!(&counter_key(b"lock:a")[..], b"redlock-proxy:fence:lock:a");
        // On a cluster, in the lock key's slot, whatever the key.
        for key in [&b"lock:a"[..], b"lock:{user1}:a", b"lock:{", b"x{y}z"] {
            let counter = cluster_counter_key(key).unwrap();
            assert_eq!(key_slot(&counter), key_slot(key), "{key:?}");
        }
        assert_eq!(
            &cluster_counter_key(b"lock:{u}").unwrap()[..],
            b"redlock-proxy:fence:lock:{u}"
        );
        assert!(cluster_counter_key(b"lock:a}").is_none());
        assert!(
            cluster_counter_key(b"lock:{}x").is_none(),
            "an empty tag is none"
        );
    }
}
