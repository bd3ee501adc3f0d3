//! Requests on lock keys: each becomes a typed [`LockOp`] the engine can run,
//! or a clear error. Every check happens here, once — the engine never sees a
//! request it would have to refuse.

mod script;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::set_args::{Expiry, SetArgs};
use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};
use crate::redlock::op::LockOp;
use crate::redlock::scripts::{ScriptRegistry, sha1_hex};

/// Limits on lock operations from the configuration.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockRules {
    /// Refuse locks without an expiry.
    pub require_ttl: bool,
    /// Longest TTL accepted.
    pub max_ttl: Option<Duration>,
}

impl LockRules {
    /// An extension sets the TTL `ttl` (or, with `adds`, adds `ttl` to what is
    /// left: the engine checks the sum once it knows it).
    pub(super) fn check_extension(&self, ttl: Option<Duration>, adds: bool) -> Result<(), Reply> {
        match (ttl, self.max_ttl) {
            (None, Some(max)) => Err(errors::err(format_args!(
                "extension refused: its TTL argument is not a number of milliseconds, so it cannot be checked against max_ttl of {} ms",
                max.as_millis()
            ))),
            (Some(ttl), Some(max)) if ttl > max => Err(errors::err(format_args!(
                "extension to a TTL of {}{} ms exceeds max_ttl of {} ms",
                if adds { "more than " } else { "" },
                ttl.as_millis(),
                max.as_millis()
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn check_ttl(&self, ttl: Option<Duration>) -> Result<(), Reply> {
        match (ttl, self.max_ttl) {
            (None, _) if self.require_ttl => Err(errors::err(
                "lock without an expiry refused: require_ttl is set, add PX <ms> or EX <seconds>",
            )),
            (None, Some(max)) => Err(errors::err(format_args!(
                "lock without an expiry refused: max_ttl is {} ms",
                max.as_millis()
            ))),
            (Some(ttl), Some(max)) if ttl > max => Err(errors::err(format_args!(
                "lock TTL of {} ms exceeds max_ttl of {} ms",
                ttl.as_millis(),
                max.as_millis()
            ))),
            _ => Ok(()),
        }
    }
}

fn check_arity<A: ArgList + ?Sized>(args: &A, arity: i64) -> Result<(), Reply> {
    let n = args.len() as i64;
    let ok = if arity >= 0 { n == arity } else { n >= -arity };
    if ok {
        Ok(())
    } else {
        Err(errors::wrong_arity(args.arg(0)))
    }
}

fn copy_range<A: ArgList + ?Sized>(args: &A, from: usize, to: usize) -> Vec<Bytes> {
    (from..to)
        .map(|i| Bytes::copy_from_slice(args.arg(i)))
        .collect()
}

/// The current Unix time in milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The TTL of a SET's expiry, relative to `now_ms`; `Ok(None)` means no expiry,
/// `Some(ZERO)` an absolute time already past.
pub(super) fn ttl_of(expiry: Expiry, now_ms: i64) -> Option<Duration> {
    let ms = match expiry {
        Expiry::None | Expiry::KeepTtl => return None,
        Expiry::In(ms) => ms,
        Expiry::At(at) => at.saturating_sub(now_ms),
    };
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// A TTL argument of a script (ms, or seconds); empty or non-numeric: none.
fn ttl_arg(a: &[u8], seconds: bool) -> Option<Duration> {
    let v = parse_i64(a).filter(|v| *v > 0)? as u64;
    Some(if seconds {
        Duration::from_secs(v)
    } else {
        Duration::from_millis(v)
    })
}

/// The proxy's own lock commands, `LOCK.FENCE key token` and `LOCK.ACQUIRE
/// key token ttl_ms` (`name` is uppercased); `None` for any other command.
pub(super) fn parse_own<A: ArgList + ?Sized>(
    name: &[u8],
    args: &A,
    patterns: &super::LockPatterns,
    rules: &LockRules,
) -> Option<Result<LockOp, Reply>> {
    let (arity, command) = match name {
        b"LOCK.FENCE" => (3, "LOCK.FENCE"),
        b"LOCK.ACQUIRE" => (4, "LOCK.ACQUIRE"),
        _ => return None,
    };
    Some((|| {
        check_arity(args, arity)?;
        if !patterns.is_lock_key(args.arg(1)) {
            return Err(errors::err(format_args!(
                "{command}: '{}' is not a lock key (it matches no lock pattern)",
                String::from_utf8_lossy(args.arg(1))
            )));
        }
        let (key, token) = (
            Bytes::copy_from_slice(args.arg(1)),
            Bytes::copy_from_slice(args.arg(2)),
        );
        if arity == 3 {
            return Ok(LockOp::Fence { key, token });
        }
        let ttl = match parse_i64(args.arg(3)) {
            Some(ms) if ms > 0 => Duration::from_millis(ms as u64),
            _ => {
                return Err(errors::err(format_args!(
                    "{command}: ttl_ms must be a positive integer"
                )));
            }
        };
        rules.check_ttl(Some(ttl))?;
        Ok(LockOp::AcquireFenced { key, token, ttl })
    })())
}

/// Whether a request that mixes lock and data keys is a call of a known split
/// script (which `parse` splits; anything else mixing them is refused).
pub(super) fn is_split_call<A: ArgList + ?Sized>(
    name: &[u8],
    args: &A,
    scripts: &ScriptRegistry,
) -> bool {
    let sha = match name {
        b"EVALSHA" | b"EVALSHA_RO" => args.arg(1).to_ascii_lowercase(),
        b"EVAL" | b"EVAL_RO" => sha1_hex(args.arg(1)).into_bytes(),
        _ => return false,
    };
    scripts.spec(&sha).is_some_and(|s| s.split.is_some())
}

/// Parses a request whose keys are all lock keys, or a call of a split script
/// (`name` is the uppercased command).
pub(super) fn parse<A: ArgList + ?Sized>(
    name: &[u8],
    args: &A,
    scripts: &ScriptRegistry,
    rules: &LockRules,
    patterns: &super::LockPatterns,
) -> Result<LockOp, Reply> {
    let key = |i: usize| Bytes::copy_from_slice(args.arg(i));
    match name {
        b"SET" => {
            // Redis's own checks first, with Redis's errors; then the lock's.
            let now = now_ms();
            let s = SetArgs::parse(args, now)?;
            if !s.nx || s.xx || s.get || s.expiry == Expiry::KeepTtl {
                return Err(errors::err(
                    "lock keys accept only lock operations: SET key token NX [PX ms|EX s|PXAT ms|EXAT s] (no XX, GET or KEEPTTL, and NX is required)",
                ));
            }
            let ttl = ttl_of(s.expiry, now);
            rules.check_ttl(ttl)?;
            let at_ms = match s.expiry {
                Expiry::At(at) => Some(at),
                _ => None,
            };
            Ok(LockOp::Acquire {
                key: key(1),
                token: key(2),
                ttl,
                at_ms,
                setnx: false,
            })
        }
        b"SETNX" => {
            // The same acquisition as `SET key token NX`, answered 1 / 0.
            check_arity(args, 3)?;
            rules.check_ttl(None)?;
            Ok(LockOp::Acquire {
                key: key(1),
                token: key(2),
                ttl: None,
                at_ms: None,
                setnx: true,
            })
        }
        b"GET" => {
            check_arity(args, 2)?;
            Ok(LockOp::Get { key: key(1) })
        }
        b"EXISTS" => {
            check_arity(args, -2)?;
            Ok(LockOp::Exists {
                keys: copy_range(args, 1, args.len()),
            })
        }
        b"PTTL" | b"TTL" => {
            check_arity(args, 2)?;
            Ok(LockOp::Ttl {
                key: key(1),
                millis: name == b"PTTL",
            })
        }
        b"PEXPIRE" | b"EXPIRE" | b"PEXPIREAT" | b"EXPIREAT" => {
            check_arity(args, -3)?;
            let n = parse_i64(args.arg(2)).ok_or_else(errors::not_integer)?;
            let ms = match name {
                b"PEXPIRE" => n,
                b"EXPIRE" => n.saturating_mul(1000),
                b"PEXPIREAT" => n.saturating_sub(now_ms()),
                _ => n.saturating_mul(1000).saturating_sub(now_ms()),
            };
            if ms <= 0 {
                return Err(errors::err(
                    "an expiry in the past deletes a lock key: release it, or force it with DEL",
                ));
            }
            let ttl = Duration::from_millis(ms as u64);
            rules.check_extension(Some(ttl), false)?;
            Ok(LockOp::Expire {
                args: copy_range(args, 0, args.len()),
                ttl,
            })
        }
        b"ZREM" => {
            // A semaphore's release (redis-semaphore): those seats, on every master.
            check_arity(args, -3)?;
            Ok(LockOp::RemoveSeats {
                key: key(1),
                members: copy_range(args, 2, args.len()),
            })
        }
        b"DEL" | b"UNLINK" => {
            check_arity(args, -2)?;
            Ok(LockOp::Delete {
                keys: copy_range(args, 1, args.len()),
            })
        }
        b"EVAL" | b"EVAL_RO" | b"EVALSHA" | b"EVALSHA_RO" => {
            script::parse_script(name, args, scripts, rules, patterns)
        }
        b"FCALL" | b"FCALL_RO" => Err(errors::err(
            "functions cannot run on lock keys: redlock-proxy runs only the known lock scripts there",
        )),
        _ => Err(errors::lock_key_not_allowed(args.arg(0))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a request on the default lock patterns (also used by
    /// `script.rs`'s tests).
    pub(super) fn parse_strs(args: &[&str]) -> Result<LockOp, Reply> {
        let reg = ScriptRegistry::new(&[]);
        let name = args[0].to_ascii_uppercase();
        let patterns = crate::command::LockPatterns::new(&["lock:*"]);
        parse(
            name.as_bytes(),
            args,
            &reg,
            &LockRules::default(),
            &patterns,
        )
    }

    #[test]
    fn acquire_forms() {
        let op = parse_strs(&["set", "lock:a", "t", "ex", "8", "nx"]).unwrap();
        assert_eq!(
            op,
            LockOp::Acquire {
                key: Bytes::from_static(b"lock:a"),
                token: Bytes::from_static(b"t"),
                ttl: Some(Duration::from_secs(8)),
                at_ms: None,
                setnx: false,
            }
        );
        assert!(matches!(
            parse_strs(&["SET", "lock:a", "t", "NX"]).unwrap(),
            LockOp::Acquire { ttl: None, .. }
        ));
        assert!(matches!(
            parse_strs(&["setnx", "lock:a", "t"]).unwrap(),
            LockOp::Acquire {
                ttl: None,
                setnx: true,
                ..
            }
        ));
        assert!(parse_strs(&["SETNX", "lock:a"]).is_err());
        for bad in [
            &["SET", "lock:a", "t"][..],
            &["SET", "lock:a", "t", "XX", "PX", "5"],
            &["SET", "lock:a", "t", "NX", "GET", "PX", "5"],
            &["SET", "lock:a", "t", "NX", "KEEPTTL"],
        ] {
            assert!(parse_strs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn absolute_expiry_becomes_relative() {
        assert_eq!(
            ttl_of(Expiry::At(10_500), 10_000),
            Some(Duration::from_millis(500))
        );
        assert_eq!(ttl_of(Expiry::At(5), 10_000), Some(Duration::ZERO));
        assert_eq!(
            ttl_of(Expiry::In(8000), 10_000),
            Some(Duration::from_secs(8))
        );
        assert_eq!(ttl_of(Expiry::None, 10_000), None);
    }

    #[test]
    fn rules() {
        let r = LockRules {
            require_ttl: true,
            max_ttl: Some(Duration::from_secs(60)),
        };
        assert!(r.check_ttl(None).is_err());
        assert!(r.check_ttl(Some(Duration::from_secs(61))).is_err());
        assert!(r.check_ttl(Some(Duration::from_secs(60))).is_ok());
    }

    #[test]
    fn other_commands_are_refused() {
        for cmd in [
            &["INCR", "lock:a"][..],
            &["PERSIST", "lock:a"],
            &["HSET", "lock:a", "f", "v"],
        ] {
            assert!(parse_strs(cmd).is_err());
        }
    }
}
