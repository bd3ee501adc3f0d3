//! What the table of known scripts is written with: the reasons some are
//! refused, the parts of split scripts, and constructors for the specs that
//! share a shape (a library's token or TTL position, sorted-set holders).

use super::super::{Convention, DataWhen, Holders, Kind, ScriptSpec, Split, spec};

use Convention as C;
use Kind as K;

pub(super) const REDISSON: &str = "Redisson RLock keeps reentrancy counters in a hash, wakes waiters with PUBLISH from inside its scripts and renews many locks in one script: none of this can be voted on across independent masters";
pub(super) const PUBSUB_LOCK: &str = "Spring Integration's PUB_SUB_LOCK publishes the unlock notification from the script, which every master would repeat; use the SPIN_LOCK type";

/// python-redis-lock's release, lock part: compare-and-delete, 0 when released.
pub(super) const PRL_UNLOCK_LOCK_PART: &str = "if redis.call('get', KEYS[1]) ~= ARGV[1] then return 1 else redis.call('del', KEYS[1]) return 0 end";
/// python-redis-lock's reset, lock part: a forced release.
pub(super) const PRL_RESET_LOCK_PART: &str = "return redis.call('del', KEYS[1])";
/// python-redis-lock's signal, the data part of its release and reset: wakes
/// `BLPOP lock-signal:NAME` waiters on the backend.
pub(super) const PRL_SIGNAL: &str = "redis.call('del', KEYS[1]) redis.call('lpush', KEYS[1], 1) redis.call('pexpire', KEYS[1], ARGV[2]) return 0";

/// A split spec: the lock key first, then the lock part and the data part.
pub(super) const fn split(
    mut s: ScriptSpec,
    lock_part: Option<&'static str>,
    data_part: Option<(&'static str, DataWhen)>,
) -> ScriptSpec {
    s.split = Some(Split {
        lock_key: 1,
        lock_part,
        data_part,
        lock_key_arg: false,
    });
    s
}
/// simple-redis-mutex's release, lock part: compare-and-delete, 1 released.
pub(super) const SRM_RELEASE_LOCK_PART: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then redis.call('del', KEYS[1]) return 1 end return 0";
/// simple-redis-mutex's release notice, the data part: published on the
/// backend to the channel its release names (ARGV: the lock's value, then the
/// lock key), so waiters subscribed there try again.
pub(super) const SRM_NOTICE: &str = "redis.call('publish', KEYS[1], string.format('{ \"key\": \"%s\", \"value\": \"%s\" }', ARGV[2], ARGV[1])) return 0";

/// simple-redis-mutex's release: its lock part on the masters, then its notice
/// on the backend whatever the vote (a waiter woken for nothing tries once more).
pub(super) const fn srm_release() -> ScriptSpec {
    let mut s = split(
        spec(K::Release, C::Silent, None, "simple-redis-mutex release"),
        Some(SRM_RELEASE_LOCK_PART),
        Some((SRM_NOTICE, DataWhen::Always)),
    );
    if let Some(split) = &mut s.split {
        split.lock_key_arg = true;
    }
    s
}

pub(super) const PYTHON_REDIS_LOCK_RESET_ALL: &str = "python-redis-lock's reset_all deletes every key matching lock:* with KEYS on one server: across independent masters it would be a forced release of every lock";

/// A spec whose token is ARGV[`token_arg`] (not the first argument).
pub(super) const fn with_token(mut s: ScriptSpec, token_arg: usize) -> ScriptSpec {
    s.token_arg = token_arg;
    s
}

/// A batch acquisition's spec (see [`ScriptSpec::batch`]).
pub(super) const fn batch(mut s: ScriptSpec) -> ScriptSpec {
    s.batch = true;
    s
}

/// Symfony Lock's `RedisStore` script: a read/write set, the token in ARGV[2]
/// (ARGV[1] in its delete), the TTL in ms in ARGV[3].
pub(super) const fn symfony(
    kind: Kind,
    token_arg: usize,
    ttl_arg: Option<usize>,
    origin: &'static str,
) -> ScriptSpec {
    let mut s = with_token(spec(kind, C::OneNil, ttl_arg, origin), token_arg);
    s.holders = Holders::ReadWrite;
    s
}

/// redis-semaphore's `Semaphore` (`permits: false`: ARGV limit, token, TTL
/// in ms) or `MultiSemaphore` (ARGV limit, permits, token, TTL in ms) script.
pub(super) const fn semaphore(kind: Kind, permits: bool, origin: &'static str) -> ScriptSpec {
    let (token_arg, ttl_arg) = if permits { (3, 4) } else { (2, 3) };
    let ttl = match kind {
        K::Acquire | K::Extend => Some(ttl_arg),
        _ => None,
    };
    let mut s = with_token(spec(kind, C::OneZero, ttl, origin), token_arg);
    s.holders = Holders::Semaphore {
        limit_arg: Some(1),
        permits_arg: if permits { Some(2) } else { None },
    };
    s
}

/// A spec whose TTL argument is in seconds (`EXPIRE`).
pub(super) const fn in_seconds(mut s: ScriptSpec) -> ScriptSpec {
    s.ttl_in_seconds = true;
    s
}
