//! The scripts behind the proxy's own read/write lock and semaphore commands
//! (`RWLOCK.*`, `SEMAPHORE.*`). They keep the same data as the libraries the
//! proxy serves, so both can share a key: a read/write lock is Symfony Lock's
//! sorted set of holders scored by expiry, with `__write__` while its one
//! holder writes; a semaphore is redis-semaphore's sorted set of seats scored
//! by when they were taken. The clock is the master's (`TIME`).

use std::sync::OnceLock;

/// A script and its SHA1, computed once.
pub struct Native {
    /// The text.
    pub text: &'static str,
    sha: OnceLock<String>,
}

impl Native {
    /// Its SHA1, lowercase hex.
    pub fn sha(&self) -> &str {
        self.sha
            .get_or_init(|| super::sha1_hex(self.text.as_bytes()))
    }
}

const fn native(text: &'static str) -> Native {
    Native {
        text,
        sha: OnceLock::new(),
    }
}

/// The master's clock in ms, and the set cleared of expired holders; a key
/// holding a string (a mutex) is not a read/write lock: 0.
macro_rules! rw_prelude {
    () => {
        "local key, token, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]) \
         if redis.call('type', key).ok == 'string' then return 0 end \
         local t = redis.call('time') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
         redis.call('zremrangebyscore', key, '-inf', now) "
    };
}

/// The key lives as long as its longest holder.
macro_rules! rw_expire {
    () => {
        "redis.call('pexpireat', key, redis.call('zrevrange', key, 0, 0, 'withscores')[2]) "
    };
}

/// `RWLOCK.READ key token ttl_ms`: a shared hold, refused while another
/// writes (a writer asking to read becomes a reader). 1 / 0.
pub static RW_READ: Native = native(concat!(
    rw_prelude!(),
    "if not redis.call('zscore', key, token) and redis.call('zscore', key, '__write__') then return 0 end \
     redis.call('zadd', key, now + ttl, token) redis.call('zrem', key, '__write__') ",
    rw_expire!(),
    "return 1"
));

/// `RWLOCK.WRITE key token ttl_ms`: the key alone, refused while anyone else
/// holds it (a lone reader asking to write becomes the writer). 1 / 0.
pub static RW_WRITE: Native = native(concat!(
    rw_prelude!(),
    "if redis.call('zscore', key, token) then \
       if not redis.call('zscore', key, '__write__') and redis.call('zcard', key) > 1 then return 0 end \
     elseif redis.call('zcard', key) > 0 then return 0 end \
     redis.call('zadd', key, now + ttl, token) redis.call('zadd', key, now + ttl, '__write__') ",
    rw_expire!(),
    "return 1"
));

/// `RWLOCK.REFRESH key token ttl_ms`: the caller's hold, read or write, now
/// lasts `ttl_ms`. 1 / 0 when the caller holds nothing.
pub static RW_REFRESH: Native = native(concat!(
    rw_prelude!(),
    "if not redis.call('zscore', key, token) then return 0 end \
     redis.call('zadd', key, now + ttl, token) \
     if redis.call('zscore', key, '__write__') then redis.call('zadd', key, now + ttl, '__write__') end ",
    rw_expire!(),
    "return 1"
));

/// `RWLOCK.RELEASE key token`: the caller's hold, and the write marker with
/// it (with the caller's token there, the marker is the caller's). 1 / 0.
pub static RW_RELEASE: Native = native(
    "local key, token = KEYS[1], ARGV[1] \
     if redis.call('type', key).ok ~= 'zset' or not redis.call('zscore', key, token) then return 0 end \
     redis.call('zrem', key, token, '__write__') \
     local last = redis.call('zrevrange', key, 0, 0, 'withscores')[2] \
     if last then redis.call('pexpireat', key, last) end \
     return 1",
);

/// `SEMAPHORE.ACQUIRE key token limit ttl_ms`: a seat, when fewer than
/// `limit` are taken (seats older than `ttl_ms` are gone). 1 / 0.
pub static SEM_ACQUIRE: Native = native(
    "local key, limit, token, ttl = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]) \
     local t = redis.call('time') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
     redis.call('zremrangebyscore', key, '-inf', now - ttl) \
     if redis.call('zcard', key) < limit then \
       redis.call('zadd', key, now, token) redis.call('pexpire', key, ttl) return 1 \
     end return 0",
);

/// `SEMAPHORE.REFRESH key token limit ttl_ms`: the caller's seat lasts
/// `ttl_ms` more. 1 / 0 when the caller has none.
pub static SEM_REFRESH: Native = native(
    "local key, token, ttl = KEYS[1], ARGV[2], tonumber(ARGV[3]) \
     local t = redis.call('time') local now = t[1] * 1000 + math.floor(t[2] / 1000) \
     redis.call('zremrangebyscore', key, '-inf', now - ttl) \
     if redis.call('zscore', key, token) then \
       redis.call('zadd', key, now, token) redis.call('pexpire', key, ttl) return 1 \
     end return 0",
);

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench/cpu.py` reads these texts from this file for its direct
    /// baseline; their SHA1s pin what it must find.
    #[test]
    fn texts_are_what_the_benchmark_reads() {
        let shas: Vec<&str> = [
            &RW_READ,
            &RW_WRITE,
            &RW_REFRESH,
            &RW_RELEASE,
            &SEM_ACQUIRE,
            &SEM_REFRESH,
        ]
        .iter()
        .map(|n| n.sha())
        .collect();
        assert_eq!(
            shas,
            [
                "400b8d5abed1901f70f4eb5bfc601f411928c7ed",
                "bc5ea82641fdb81587851bdbe2c58438f1c94dc2",
                "5982fc530969b3dd421d52d9f706ca53895a8cbe",
                "a961f32e245f51f872929b7fe25bc688d2d2e501",
                "a3984457ff09b0cd9ee27c322d108b9a5e0630e3",
                "0c8c6790f84a14a1078bf8918059f9ee7f8deb73",
            ]
        );
    }
}
