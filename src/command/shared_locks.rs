//! The proxy's own read/write lock and semaphore commands: each becomes the
//! quorum operation the libraries' scripts become, over the same data.
//!
//! - `RWLOCK.READ key token ttl_ms`, `RWLOCK.WRITE key token ttl_ms`: 1
//!   granted, 0 refused; `RWLOCK.REFRESH key token ttl_ms`: 1 / 0 (holds
//!   nothing); `RWLOCK.RELEASE key token`: 1 / 0.
//! - `SEMAPHORE.ACQUIRE key token limit ttl_ms`, `SEMAPHORE.REFRESH key token
//!   limit ttl_ms`: 1 / 0; `SEMAPHORE.RELEASE key token`: 1 / 0.

use std::time::Duration;

use bytes::Bytes;

use super::lock::LockRules;
use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};
use crate::redlock::op::{LockOp, ScriptAction, ScriptCall, ScriptOp, Takeback, Tokens};
use crate::redlock::scripts::Convention;
use crate::redlock::scripts::native::{self, Native};

/// What one command does.
#[derive(Clone, Copy)]
enum Does {
    Acquire,
    Extend,
    Release,
}

/// Parses one of the commands (`name` uppercased); `None` for any other.
pub(super) fn parse<A: ArgList + ?Sized>(
    name: &[u8],
    args: &A,
    patterns: &super::LockPatterns,
    rules: &LockRules,
) -> Option<Result<LockOp, Reply>> {
    let (command, does, script, semaphore): (&str, Does, Option<&Native>, bool) = match name {
        b"RWLOCK.READ" => ("RWLOCK.READ", Does::Acquire, Some(&native::RW_READ), false),
        b"RWLOCK.WRITE" => (
            "RWLOCK.WRITE",
            Does::Acquire,
            Some(&native::RW_WRITE),
            false,
        ),
        b"RWLOCK.REFRESH" => (
            "RWLOCK.REFRESH",
            Does::Extend,
            Some(&native::RW_REFRESH),
            false,
        ),
        b"RWLOCK.RELEASE" => (
            "RWLOCK.RELEASE",
            Does::Release,
            Some(&native::RW_RELEASE),
            false,
        ),
        b"SEMAPHORE.ACQUIRE" => (
            "SEMAPHORE.ACQUIRE",
            Does::Acquire,
            Some(&native::SEM_ACQUIRE),
            true,
        ),
        b"SEMAPHORE.REFRESH" => (
            "SEMAPHORE.REFRESH",
            Does::Extend,
            Some(&native::SEM_REFRESH),
            true,
        ),
        b"SEMAPHORE.RELEASE" => ("SEMAPHORE.RELEASE", Does::Release, None, true),
        _ => return None,
    };
    Some(build(
        command, does, script, semaphore, args, patterns, rules,
    ))
}

fn build<A: ArgList + ?Sized>(
    command: &str,
    does: Does,
    script: Option<&Native>,
    semaphore: bool,
    args: &A,
    patterns: &super::LockPatterns,
    rules: &LockRules,
) -> Result<LockOp, Reply> {
    let arity = match (does, semaphore) {
        (Does::Release, _) => 3,
        (_, false) => 4,
        (_, true) => 5,
    };
    if args.len() != arity {
        return Err(errors::wrong_arity(args.arg(0)));
    }
    if !patterns.is_lock_key(args.arg(1)) {
        return Err(errors::err(format_args!(
            "{command}: '{}' is not a lock key (it matches no lock pattern)",
            String::from_utf8_lossy(args.arg(1))
        )));
    }
    let key = Bytes::copy_from_slice(args.arg(1));
    let token = Bytes::copy_from_slice(args.arg(2));
    let positive = |i: usize, what: &str| match parse_i64(args.arg(i)) {
        Some(n) if n > 0 => Ok(n as u64),
        _ => Err(errors::err(format_args!(
            "{command}: {what} must be a positive integer"
        ))),
    };
    let (limit, ttl) = match (does, semaphore) {
        (Does::Release, _) => (None, None),
        (_, false) => (None, Some(positive(3, "ttl_ms")?)),
        (_, true) => (Some(positive(3, "limit")?), Some(positive(4, "ttl_ms")?)),
    };
    let Some(script) = script else {
        // A seat is released as redis-semaphore releases it.
        return Ok(LockOp::RemoveSeats {
            key,
            members: vec![token],
        });
    };
    let ttl_duration = ttl.map(Duration::from_millis);
    let action = match does {
        Does::Acquire => {
            rules.check_ttl(ttl_duration)?;
            ScriptAction::Acquire {
                tokens: Tokens::One(token.clone()),
                ttl: ttl_duration,
            }
        }
        Does::Extend => {
            rules.check_extension(ttl_duration, false)?;
            ScriptAction::Extend {
                ttl: ttl_duration,
                adds: false,
                token: Some(token.clone()),
            }
        }
        Does::Release => ScriptAction::Release {
            token: Some(token.clone()),
        },
    };
    let ttl_arg = ttl.map(|t| Bytes::from(t.to_string()));
    let argv: Vec<Bytes> = match limit {
        Some(limit) => vec![Bytes::from(limit.to_string()), token.clone()]
            .into_iter()
            .chain(ttl_arg)
            .collect(),
        None => std::iter::once(token.clone()).chain(ttl_arg).collect(),
    };
    Ok(LockOp::Script(Box::new(ScriptOp {
        call: ScriptCall {
            sha: Bytes::from(script.sha().to_owned()),
            text: Bytes::from_static(script.text.as_bytes()),
            keys: vec![key],
            argv,
        },
        convention: Convention::OneZero,
        action,
        data_part: None,
        takeback: if semaphore {
            Takeback::Seats(vec![token])
        } else {
            Takeback::ReadWrite
        },
        limit,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Option<Result<LockOp, Reply>> {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let name = args[0].to_ascii_uppercase();
        let patterns = super::super::LockPatterns::new(&["lock:*"]);
        parse(&name, &args[..], &patterns, &LockRules::default())
    }

    #[test]
    fn commands_become_quorum_operations() {
        let Some(Ok(LockOp::Script(op))) = parse_strs(&["rwlock.read", "lock:r", "t", "5000"])
        else {
            panic!("a read lock");
        };
        assert_eq!(op.takeback, Takeback::ReadWrite);
        assert_eq!(op.limit, None);
        assert_eq!(op.call.argv, vec![Bytes::from("t"), Bytes::from("5000")]);
        let Some(Ok(LockOp::Script(op))) =
            parse_strs(&["SEMAPHORE.ACQUIRE", "lock:s", "t", "3", "5000"])
        else {
            panic!("a seat");
        };
        assert_eq!(op.limit, Some(3));
        assert_eq!(op.takeback, Takeback::Seats(vec![Bytes::from("t")]));
        assert!(matches!(
            parse_strs(&["SEMAPHORE.RELEASE", "lock:s", "t"]),
            Some(Ok(LockOp::RemoveSeats { .. }))
        ));
        assert!(matches!(
            parse_strs(&["RWLOCK.RELEASE", "lock:r", "t"]),
            Some(Ok(LockOp::Script(ref op))) if matches!(op.action, ScriptAction::Release { .. })
        ));
        assert!(parse_strs(&["GET", "lock:r"]).is_none());
    }

    #[test]
    fn bad_arguments_are_refused() {
        for bad in [
            &["RWLOCK.READ", "lock:r", "t"][..],
            &["RWLOCK.READ", "data", "t", "5000"],
            &["RWLOCK.WRITE", "lock:r", "t", "0"],
            &["SEMAPHORE.ACQUIRE", "lock:s", "t", "x", "5000"],
            &["SEMAPHORE.REFRESH", "lock:s", "t", "2", "-1"],
            &["SEMAPHORE.RELEASE", "lock:s"],
        ] {
            assert!(matches!(parse_strs(bad), Some(Err(_))), "{bad:?}");
        }
    }
}
