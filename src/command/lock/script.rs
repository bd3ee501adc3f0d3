//! Lock scripts on lock keys: which known script a call is, what it does
//! with its arguments (an acquisition, extension, release or read, with its
//! tokens, TTL and, for sorted-set locks, how a holder is taken back), and
//! the split of scripts that also touch data keys.

use bytes::Bytes;

use super::{LockRules, check_arity, copy_range, ttl_arg};
use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};
use crate::redlock::op::{DataPart, LockOp, ScriptAction, ScriptCall, ScriptOp, Takeback, Tokens};
use crate::redlock::scripts::{
    Holders, Kind, ScriptRegistry, ScriptSpec, Split, TtlMode, sha1_hex,
};

pub(super) fn parse_script<A: ArgList + ?Sized>(
    name: &[u8],
    args: &A,
    scripts: &ScriptRegistry,
    rules: &LockRules,
    patterns: &crate::command::LockPatterns,
) -> Result<LockOp, Reply> {
    check_arity(args, -3)?;
    let numkeys = parse_i64(args.arg(2)).ok_or_else(errors::not_integer)?;
    if numkeys < 0 {
        return Err(errors::err("Number of keys can't be negative"));
    }
    let numkeys = numkeys as usize;
    if numkeys > args.len() - 3 {
        return Err(errors::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let (sha, text) = if name.starts_with(b"EVALSHA") {
        let sha = args.arg(1).to_ascii_lowercase();
        let text = scripts.text(&sha);
        (sha, text)
    } else {
        let text = args.arg(1);
        let sha = sha1_hex(text);
        scripts.learn(&sha, text);
        (sha.into_bytes(), Some(Bytes::copy_from_slice(text)))
    };
    let Some(spec) = scripts.spec(&sha) else {
        if let Some(why) = text.as_deref().and_then(unsupported_by_text) {
            return Err(errors::err(why));
        }
        let sha = String::from_utf8_lossy(&sha).into_owned();
        return Err(errors::err(format_args!(
            "unknown script {sha} on a lock key: redlock-proxy runs only known lock scripts on lock keys; if it is a lock script, declare it in the configuration: [[redlock.scripts]] sha1 = \"{sha}\" kind = \"acquire\" (or release, extend, query), and as the library needs: token_arg (ARGV index of the token, default 1), ttl_arg (of the TTL in ms, default 2), success (ok_or_positive, ok, one, positive, any: the replies that mean success), failure (error, nil, zero: what the library reads as failure)"
        )));
    };
    if let Kind::Unsupported(why) = spec.kind {
        return Err(errors::err(format_args!(
            "{} script {} cannot run through redlock-proxy: {why}",
            spec.origin,
            String::from_utf8_lossy(&sha)
        )));
    }
    let Some(text) = text else {
        return Err(errors::noscript());
    };
    let mut call = ScriptCall {
        sha: Bytes::from(sha),
        text,
        keys: copy_range(args, 3, 3 + numkeys),
        argv: copy_range(args, 3 + numkeys, args.len()),
    };
    let data_part = match spec.split {
        None => None,
        Some(split) => split_call(&mut call, split, &spec, patterns)?,
    };
    let action = action(&spec, &call.argv, call.keys.len())?;
    // Every way a TTL is set obeys the same policy.
    match &action {
        ScriptAction::Acquire { ttl, .. } => rules.check_ttl(*ttl)?,
        ScriptAction::Extend { ttl, adds, .. } => rules.check_extension(*ttl, *adds)?,
        ScriptAction::Release { .. } | ScriptAction::Query => {}
    }
    let (takeback, limit) = holding(&spec, &call.argv, &action)?;
    Ok(LockOp::Script(Box::new(ScriptOp {
        action,
        convention: spec.convention,
        call,
        data_part,
        takeback,
        limit,
    })))
}

/// Most seats one holder of a semaphore may take in one call (each is a
/// member the proxy keeps until the masters confirm its release).
const MAX_PERMITS: i64 = 100_000;

/// Most bytes the names of one holder's seats may take together.
const MAX_SEAT_BYTES: usize = 16 << 20;

/// How a call of a script with this spec takes its holder off a master, and
/// for a semaphore the limit its acquisitions and extensions are voted under.
fn holding(
    spec: &ScriptSpec,
    argv: &[Bytes],
    action: &ScriptAction,
) -> Result<(Takeback, Option<u64>), Reply> {
    let (limit_arg, permits_arg) = match spec.holders {
        Holders::Token => return Ok((Takeback::CompareAndDelete, None)),
        Holders::ReadWrite => return Ok((Takeback::ReadWrite, None)),
        Holders::Semaphore {
            limit_arg,
            permits_arg,
        } => (limit_arg, permits_arg),
    };
    let int = |i: usize| {
        i.checked_sub(1)
            .and_then(|i| argv.get(i))
            .and_then(|a| parse_i64(a))
    };
    let limit = match limit_arg {
        None => None,
        Some(i) => match int(i) {
            Some(l) if l >= 0 => Some(l as u64),
            _ => {
                return Err(errors::err(format_args!(
                    "{} script: its limit (ARGV[{i}]) must be a number of seats",
                    spec.origin
                )));
            }
        },
    };
    // Only what takes seats or gives them back needs their names.
    let token = match action {
        ScriptAction::Acquire { tokens, .. } => tokens.of(0).cloned(),
        ScriptAction::Release { token } => token.clone(),
        ScriptAction::Extend { .. } | ScriptAction::Query => {
            return Ok((Takeback::Seats(Vec::new()), limit));
        }
    }
    .unwrap_or_default();
    let seats = match permits_arg {
        None => vec![token],
        Some(i) => match int(i) {
            Some(p)
                if (p as usize).saturating_mul(token.len() + 8) > MAX_SEAT_BYTES
                    && (1..=MAX_PERMITS).contains(&p) =>
            {
                return Err(errors::err(format_args!(
                    "{} script: {p} seats named after a token of {} bytes exceed {} MiB",
                    spec.origin,
                    token.len(),
                    MAX_SEAT_BYTES >> 20
                )));
            }
            Some(p) if (1..=MAX_PERMITS).contains(&p) => (0..p)
                .map(|n| {
                    let mut seat = token.to_vec();
                    seat.extend_from_slice(format!("_{n}").as_bytes());
                    Bytes::from(seat)
                })
                .collect(),
            _ => {
                return Err(errors::err(format_args!(
                    "{} script: its permits (ARGV[{i}]) must be from 1 to {MAX_PERMITS}",
                    spec.origin
                )));
            }
        },
    };
    Ok((Takeback::Seats(seats), limit))
}

/// Lock scripts recognised by their text, of versions the proxy does not
/// know (their SHA1 varies with the library's version and settings).
fn unsupported_by_text(text: &[u8]) -> Option<&'static str> {
    let has = |s: &str| memchr::memmem::find(text, s.as_bytes()).is_some();
    (has("__write__") && has("ZADD")).then_some(
        "a Symfony Lock RedisStore script of a version redlock-proxy does not know: it runs those of Symfony Lock 5.4 (read and write locks voted on by the masters), whose texts it recognises exactly; another version's texts differ and are refused until the proxy learns them",
    )
}

/// Splits a call of a script that touches a lock key and data keys: `call`
/// becomes the lock part (the lock key alone), and the data part is returned
/// as a request for the backend.
fn split_call(
    call: &mut ScriptCall,
    split: Split,
    spec: &ScriptSpec,
    patterns: &crate::command::LockPatterns,
) -> Result<Option<DataPart>, Reply> {
    let i = split.lock_key - 1;
    let lock_key = call.keys.get(i).cloned();
    let data_keys: Vec<Bytes> = (call.keys.iter().enumerate())
        .filter(|(j, _)| *j != i)
        .map(|(_, k)| k.clone())
        .collect();
    let Some(lock_key) = lock_key.filter(|k| patterns.is_lock_key(k)) else {
        return Err(errors::err(format_args!(
            "{} script: KEYS[{}] must be a lock key",
            spec.origin, split.lock_key
        )));
    };
    if data_keys.iter().any(|k| patterns.is_lock_key(k)) {
        return Err(errors::err(format_args!(
            "{} script: only KEYS[{}] may be a lock key (the others are data, kept on the passthrough backend)",
            spec.origin, split.lock_key
        )));
    }
    if let Some(text) = split.lock_part {
        call.sha = Bytes::from(sha1_hex(text.as_bytes()));
        call.text = Bytes::from_static(text.as_bytes());
    }
    call.keys = vec![lock_key.clone()];
    Ok(split.data_part.map(|(text, when)| {
        let numkeys = data_keys.len().to_string();
        let mut request = bytes::BytesMut::new();
        let lock_key_arg = split.lock_key_arg.then_some(&lock_key[..]);
        let parts = [b"EVAL".as_slice(), text.as_bytes(), numkeys.as_bytes()]
            .into_iter()
            .chain(data_keys.iter().map(|k| &k[..]))
            .chain(call.argv.iter().map(|a| &a[..]))
            .chain(lock_key_arg);
        let parts: Vec<&[u8]> = parts.collect();
        crate::protocol::encode_command(&mut request, parts.into_iter());
        DataPart {
            request: request.freeze(),
            when,
        }
    }))
}

/// What a call of a script with this spec does, given its ARGV and its
/// number of keys.
fn action(spec: &ScriptSpec, argv: &[Bytes], nkeys: usize) -> Result<ScriptAction, Reply> {
    if spec.batch {
        // ARGV: one token per key, then the TTL.
        if argv.len() != nkeys + 1 || nkeys == 0 {
            return Err(errors::err(format_args!(
                "{} script: expected one token per key and the TTL after them ({nkeys} keys, {} arguments)",
                spec.origin,
                argv.len()
            )));
        }
        return Ok(ScriptAction::Acquire {
            tokens: Tokens::PerKey(argv[..nkeys].into()),
            ttl: argv.last().and_then(|a| ttl_arg(a, false)),
        });
    }
    let ttl = spec
        .ttl_arg
        .and_then(|i| argv.get(i.checked_sub(1)?))
        .and_then(|a| ttl_arg(a, spec.ttl_in_seconds));
    let token = spec
        .token_arg
        .checked_sub(1)
        .and_then(|i| argv.get(i))
        .cloned();
    let adds = match spec.ttl_mode {
        TtlMode::Set => false,
        TtlMode::Add => true,
        TtlMode::AddUnlessArg(i) => i
            .checked_sub(1)
            .and_then(|i| argv.get(i))
            .is_none_or(|a| &a[..] != b"1"),
    };
    Ok(match spec.kind {
        // redlock-rb: ARGV[3] "no" only extends a lock the caller holds.
        Kind::AcquireOrExtend if argv.get(2).is_some_and(|a| a.eq_ignore_ascii_case(b"no")) => {
            ScriptAction::Extend {
                ttl,
                adds: false,
                token,
            }
        }
        Kind::Acquire | Kind::AcquireOrExtend => ScriptAction::Acquire {
            tokens: Tokens::One(token.unwrap_or_default()),
            ttl,
        },
        Kind::Extend => ScriptAction::Extend { ttl, adds, token },
        Kind::Release => ScriptAction::Release { token },
        // Refused by `parse_script` before this is reached; a read is harmless.
        Kind::Query | Kind::Unsupported(_) => ScriptAction::Query,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::parse;
    use super::super::tests::parse_strs;
    use super::*;
    use crate::redlock::scripts::Convention;

    #[test]
    fn unknown_symfony_lock_scripts_are_refused_by_name() {
        let save = "local key = KEYS[1] redis.call(\"ZADD\", key, now + ttl, uniqueToken) redis.call(\"ZADD\", key, now + ttl, \"__write__\") return true";
        let r = parse_strs(&["EVAL", save, "1", "lock:s", "0", "tok", "1000"]);
        assert!(
            matches!(r, Err(Reply::Error(ref e)) if e.starts_with("ERR a Symfony Lock RedisStore script")),
            "{r:?}"
        );
    }

    /// python-redis-lock's release: the lock part (compare-and-delete on the
    /// lock key alone) for the masters, the signal for the backend.
    #[test]
    fn a_split_script_becomes_its_lock_part_and_a_data_part() {
        const UNLOCK: &str = "\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n        return 1\n    else\n        redis.call(\"del\", KEYS[2])\n        redis.call(\"lpush\", KEYS[2], 1)\n        redis.call(\"pexpire\", KEYS[2], ARGV[2])\n        redis.call(\"del\", KEYS[1])\n        return 0\n    end\n";
        assert_eq!(
            sha1_hex(UNLOCK.as_bytes()),
            "90da91872223f85eb1376a17e3c4df21ace8c54b"
        );
        let op = parse_strs(&["EVAL", UNLOCK, "2", "lock:p", "lock-signal:p", "id", "1000"]);
        let Ok(LockOp::Script(op)) = op else {
            panic!("{op:?}")
        };
        assert_eq!(op.call.keys, [Bytes::from_static(b"lock:p")]);
        assert_ne!(
            &op.call.sha[..],
            b"90da91872223f85eb1376a17e3c4df21ace8c54b"
        );
        assert!(
            matches!(op.action, ScriptAction::Release { token: Some(ref t) } if &t[..] == b"id")
        );
        let data = op.data_part.expect("a data part");
        let text = String::from_utf8_lossy(&data.request);
        assert!(
            text.contains("lock-signal:p") && text.contains("lpush") && !text.contains("lock:p\r")
        );
        assert!(data.runs_after(&Reply::Int(0)) && !data.runs_after(&Reply::Int(1)));
        // The lock key must be where the script says, and the other key data.
        let r = parse_strs(&["EVAL", UNLOCK, "2", "lock:p", "lock:q", "id", "1000"]);
        assert!(
            matches!(r, Err(Reply::Error(ref e)) if e.contains("only KEYS[1]")),
            "{r:?}"
        );
        let r = parse_strs(&["EVAL", UNLOCK, "2", "data", "lock:p", "id", "1000"]);
        assert!(
            matches!(r, Err(Reply::Error(ref e)) if e.contains("must be a lock key")),
            "{r:?}"
        );
    }

    #[test]
    fn batch_acquisitions_take_a_token_per_key() {
        let spec = ScriptSpec {
            batch: true,
            ..crate::redlock::scripts::KNOWN[0].1
        };
        let argv: Vec<Bytes> = ["t1", "t2", "5000"]
            .iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        assert_eq!(
            action(&spec, &argv, 2),
            Ok(ScriptAction::Acquire {
                tokens: Tokens::PerKey(
                    vec![Bytes::from_static(b"t1"), Bytes::from_static(b"t2")].into()
                ),
                ttl: Some(Duration::from_secs(5)),
            })
        );
        assert!(action(&spec, &argv, 3).is_err());
        assert!(action(&spec, &argv[..0], 0).is_err());
    }

    #[test]
    fn script_ttl_arguments() {
        assert_eq!(ttl_arg(b"1500", false), Some(Duration::from_millis(1500)));
        assert_eq!(ttl_arg(b"8", true), Some(Duration::from_secs(8)));
        assert_eq!(ttl_arg(b"", false), None);
        assert_eq!(ttl_arg(b"-1", false), None);
    }

    #[test]
    fn scripts_need_their_text_and_a_known_sha() {
        let release = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;
        let sha = sha1_hex(release.as_bytes());
        // EVALSHA before the proxy saw the text: NOSCRIPT, like a fresh Redis.
        assert_eq!(
            parse_strs(&["EVALSHA", &sha, "1", "lock:a", "t"]),
            Err(errors::noscript())
        );
        let unknown = parse_strs(&["EVAL", "return 1", "1", "lock:a"]).unwrap_err();
        assert!(matches!(unknown, Reply::Error(ref e) if e.contains("[[redlock.scripts]]")));
        let op = parse_strs(&["EVAL", release, "1", "lock:a", "t"]).unwrap();
        assert!(matches!(
            op,
            LockOp::Script(ref op) if matches!(op.action, ScriptAction::Release { token: Some(ref t) } if &t[..] == b"t")
        ));
        assert!(parse_strs(&["EVAL", release, "2", "lock:a"]).is_err());
        assert!(parse_strs(&["EVAL", release, "-1", "lock:a"]).is_err());
    }

    #[test]
    fn acquire_or_extend_scripts_resolve_at_parse_time() {
        let spec = ScriptSpec {
            kind: Kind::AcquireOrExtend,
            convention: Convention::OkNil,
            ttl_arg: Some(2),
            token_arg: 1,
            split: None,
            ttl_in_seconds: false,
            ttl_mode: TtlMode::Set,
            origin: "test",
            batch: false,
            holders: Holders::Token,
        };
        let argv = |third: &str| -> Vec<Bytes> {
            ["tok", "1500", third]
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let ttl = Some(Duration::from_millis(1500));
        assert_eq!(
            action(&spec, &argv("yes"), 1),
            Ok(ScriptAction::Acquire {
                tokens: Tokens::One(Bytes::from_static(b"tok")),
                ttl
            })
        );
        assert_eq!(
            action(&spec, &argv("NO"), 1).unwrap(),
            ScriptAction::Extend {
                ttl,
                adds: false,
                token: Some(Bytes::from_static(b"tok"))
            }
        );
    }

    #[test]
    fn script_ttls_obey_the_policy() {
        let reg = ScriptRegistry::new(&[]);
        let rules = LockRules {
            require_ttl: true,
            max_ttl: Some(Duration::from_secs(60)),
        };
        let patterns = crate::command::LockPatterns::new(&["lock:*"]);
        let parse_with = |args: &[&str]| parse(b"EVAL", args, &reg, &rules, &patterns);
        let extend = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("pexpire",KEYS[1],ARGV[2]) else return 0 end"#;
        let r = parse_with(&["EVAL", extend, "1", "lock:a", "t", "1000000000"]).unwrap_err();
        assert!(
            matches!(r, Reply::Error(ref e) if e.contains("max_ttl")),
            "{r:?}"
        );
        let r = parse_with(&["EVAL", extend, "1", "lock:a", "t", "soon"]).unwrap_err();
        assert!(
            matches!(r, Reply::Error(ref e) if e.contains("cannot be checked")),
            "{r:?}"
        );
        assert!(parse_with(&["EVAL", extend, "1", "lock:a", "t", "60000"]).is_ok());
    }

    #[test]
    fn semaphore_seats_are_named_and_bounded() {
        use crate::redlock::scripts::KNOWN;
        let multi = |sha: &str| KNOWN.iter().find(|(s, _)| *s == sha).unwrap().1;
        let acquire = multi("10c1c2e05e7c48aa5824d227b8c51abcde87b18e");
        let refresh = multi("2327bcdc5edb5b8687f6d19b5e1f42b815ebddab");
        let argv = |permits: &str, token: &str| -> Vec<Bytes> {
            ["5", permits, token, "1000", "0"]
                .iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let a = argv("3", "id");
        let act = action(&acquire, &a, 1).unwrap();
        let (takeback, limit) = holding(&acquire, &a, &act).unwrap();
        assert_eq!(limit, Some(5));
        assert_eq!(
            takeback,
            Takeback::Seats(vec![
                Bytes::from("id_0"),
                Bytes::from("id_1"),
                Bytes::from("id_2")
            ])
        );
        // A refresh takes no seats and names none.
        let act = action(&refresh, &a, 1).unwrap();
        assert_eq!(
            holding(&refresh, &a, &act).unwrap().0,
            Takeback::Seats(vec![])
        );
        // Permits out of range, or too many bytes of seat names, are refused.
        for bad in [argv("0", "id"), argv("100001", "id")] {
            let act = action(&acquire, &bad, 1).unwrap();
            assert!(holding(&acquire, &bad, &act).is_err());
        }
        let long = "x".repeat(1 << 10);
        let big = argv("100000", &long);
        let act = action(&acquire, &big, 1).unwrap();
        let err = holding(&acquire, &big, &act).unwrap_err();
        assert!(
            matches!(err, Reply::Error(ref e) if e.contains("MiB")),
            "{err:?}"
        );
    }
}
