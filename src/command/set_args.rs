//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`, parsed the
//! way Redis 7 parses it, so every error is Redis's, in Redis's order: the
//! options first (`parseExtendedStringArgumentsOrReply`: a repeated expiry
//! option of the same kind replaces the value, two kinds conflict), then the
//! expiry value (`getExpireMillisecondsOrReply`: an integer, positive, and no
//! overflow once the current time is added to `EX`/`PX`).

use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};

/// Which expiry option, as written (its value not checked yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// The expiry of a SET, its value checked: when the key expires, as Redis
/// computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No expiry option.
    None,
    /// `KEEPTTL`.
    KeepTtl,
    /// `EX`/`PX`: this many milliseconds from now.
    In(i64),
    /// `EXAT`/`PXAT`: at this Unix time, in milliseconds.
    At(i64),
}

/// The options of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SetArgs {
    /// `NX`.
    pub(super) nx: bool,
    /// `XX`.
    pub(super) xx: bool,
    /// `GET`.
    pub(super) get: bool,
    /// The expiry.
    pub(super) expiry: Expiry,
}

impl SetArgs {
    /// Parses `SET key value ...` (`args` is the whole request), with `now_ms`
    /// the current Unix time in milliseconds.
    pub(super) fn parse<A: ArgList + ?Sized>(args: &A, now_ms: i64) -> Result<SetArgs, Reply> {
        if args.len() < 3 {
            return Err(errors::wrong_arity(args.arg(0)));
        }
        let (mut nx, mut xx, mut get, mut keepttl) = (false, false, false, false);
        let mut expire: Option<(Unit, &[u8])> = None;
        let mut i = 3;
        while i < args.len() {
            let opt = args.arg(i);
            let next = args.get(i + 1);
            let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
            // An expiry option may repeat itself (the last value wins), but no
            // other expiry, and no KEEPTTL, may come with it.
            let unit = if is("EX") {
                Some(Unit::Ex)
            } else if is("PX") {
                Some(Unit::Px)
            } else if is("EXAT") {
                Some(Unit::ExAt)
            } else if is("PXAT") {
                Some(Unit::PxAt)
            } else {
                None
            };
            match unit {
                Some(u) => {
                    let compatible = !keepttl && expire.is_none_or(|(e, _)| e == u);
                    match next {
                        Some(value) if compatible => {
                            expire = Some((u, value));
                            i += 1;
                        }
                        _ => return Err(errors::syntax()),
                    }
                }
                None if is("NX") && !xx => nx = true,
                None if is("XX") && !nx => xx = true,
                None if is("GET") => get = true,
                None if is("KEEPTTL") && expire.is_none() => keepttl = true,
                None => return Err(errors::syntax()),
            }
            i += 1;
        }
        let expiry = match expire {
            None if keepttl => Expiry::KeepTtl,
            None => Expiry::None,
            Some((unit, value)) => expiry_ms(unit, value, now_ms)?,
        };
        Ok(SetArgs {
            nx,
            xx,
            get,
            expiry,
        })
    }
}

/// The expiry value, checked as Redis's `getExpireMillisecondsOrReply` does.
fn expiry_ms(unit: Unit, value: &[u8], now_ms: i64) -> Result<Expiry, Reply> {
    let v = parse_i64(value).ok_or_else(errors::not_integer)?;
    let seconds = matches!(unit, Unit::Ex | Unit::ExAt);
    if v <= 0 || (seconds && v > i64::MAX / 1000) {
        return Err(errors::invalid_expire("set"));
    }
    let ms = if seconds { v * 1000 } else { v };
    match unit {
        // Redis adds the current time and refuses what overflows.
        Unit::Ex | Unit::Px => match ms.checked_add(now_ms) {
            Some(at) if at > 0 => Ok(Expiry::In(ms)),
            _ => Err(errors::invalid_expire("set")),
        },
        Unit::ExAt | Unit::PxAt => Ok(Expiry::At(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: i64 = 1_700_000_000_000;

    fn parse(args: &[&str]) -> Result<SetArgs, Reply> {
        SetArgs::parse(args, NOW)
    }

    #[test]
    fn redis_rules() {
        let s = parse(&["SET", "k", "v", "NX", "PX", "100"]).unwrap();
        assert!(s.nx && !s.xx && !s.get);
        assert_eq!(s.expiry, Expiry::In(100));
        assert_eq!(
            parse(&["set", "k", "v", "px", "100", "nx"]).unwrap().expiry,
            Expiry::In(100)
        );
        // The last value of a repeated option wins.
        assert_eq!(
            parse(&["SET", "k", "v", "NX", "PX", "10", "PX", "20000"])
                .unwrap()
                .expiry,
            Expiry::In(20000)
        );
        assert_eq!(parse(&["SET", "k", "v", "NX", "XX"]), Err(errors::syntax()));
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "1", "PX", "1"]),
            Err(errors::syntax())
        );
        assert_eq!(
            parse(&["SET", "k", "v", "KEEPTTL", "PX", "1"]),
            Err(errors::syntax())
        );
        assert_eq!(
            parse(&["SET", "k", "v", "PX", "1", "KEEPTTL"]),
            Err(errors::syntax())
        );
        assert_eq!(parse(&["SET", "k", "v", "PX"]), Err(errors::syntax()));
        // Options are checked before values.
        assert_eq!(
            parse(&["SET", "k", "v", "NX", "PX", "abc", "XX"]),
            Err(errors::syntax())
        );
        assert_eq!(
            parse(&["SET", "k", "v", "PX", "x"]),
            Err(errors::not_integer())
        );
        assert_eq!(
            parse(&["SET", "k", "v", "PX", "0"]),
            Err(errors::invalid_expire("set"))
        );
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "-5"]),
            Err(errors::invalid_expire("set"))
        );
        // Past what the current time can be added to.
        for (unit, v) in [
            ("PX", "9223372036854775807"),
            ("EX", "9223372036854775"),
            ("EX", "9223372036854776"),
        ] {
            assert_eq!(
                parse(&["SET", "k", "v", "NX", unit, v]),
                Err(errors::invalid_expire("set")),
                "{unit} {v}"
            );
        }
        assert_eq!(
            parse(&["SET", "k", "v", "NX", "PXAT", "9223372036854775807"])
                .unwrap()
                .expiry,
            Expiry::At(i64::MAX)
        );
        assert_eq!(
            parse(&["SET", "k", "v", "EXAT", "5"]).unwrap().expiry,
            Expiry::At(5000)
        );
        assert!(parse(&["SET", "k", "v", "NX", "NX"]).unwrap().nx);
        assert_eq!(
            parse(&["SET", "k", "v", "KEEPTTL", "KEEPTTL"])
                .unwrap()
                .expiry,
            Expiry::KeepTtl
        );
        assert_eq!(parse(&["SET", "k"]), Err(errors::wrong_arity(b"SET")));
    }

    fn random_case(s: &str, mask: u32) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if mask >> (i % 32) & 1 == 1 {
                    c.to_ascii_lowercase()
                } else {
                    c
                }
            })
            .collect()
    }

    proptest! {
        /// NX plus one expiry, in any order and any case, always parses to the same thing.
        #[test]
        fn order_and_case_do_not_matter(
            unit in prop::sample::select(vec!["EX", "PX", "EXAT", "PXAT"]),
            value in 1i64..1_000_000_000,
            nx_first in any::<bool>(),
            masks in any::<(u32, u32)>(),
        ) {
            let value_s = value.to_string();
            let nx = random_case("NX", masks.0);
            let unit_s = random_case(unit, masks.1);
            let mut args = vec!["SET", "lock:k", "tok"];
            if nx_first {
                args.extend([nx.as_str(), unit_s.as_str(), value_s.as_str()]);
            } else {
                args.extend([unit_s.as_str(), value_s.as_str(), nx.as_str()]);
            }
            let s = SetArgs::parse(&args[..], NOW).unwrap();
            prop_assert!(s.nx && !s.xx && !s.get);
            let expected = match unit {
                "EX" => Expiry::In(value * 1000),
                "PX" => Expiry::In(value),
                "EXAT" => Expiry::At(value * 1000),
                _ => Expiry::At(value),
            };
            prop_assert_eq!(s.expiry, expected);
        }

        /// No input makes the parser panic.
        #[test]
        fn never_panics(opts in prop::collection::vec("[a-zA-Z0-9-]{0,6}", 0..6)) {
            let mut args: Vec<&str> = vec!["SET", "k", "v"];
            args.extend(opts.iter().map(String::as_str));
            let _ = SetArgs::parse(&args[..], NOW);
        }
    }
}
