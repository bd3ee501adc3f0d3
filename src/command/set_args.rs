//! `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT ts|PXAT ts|KEEPTTL]`, parsed with
//! Redis's rules and error texts (options in any order and case).

use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};

/// The expiry option of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expiry {
    /// No expiry option.
    None,
    /// `EX seconds`.
    Ex(i64),
    /// `PX milliseconds`.
    Px(i64),
    /// `EXAT unix-seconds`.
    ExAt(i64),
    /// `PXAT unix-milliseconds`.
    PxAt(i64),
    /// `KEEPTTL`.
    KeepTtl,
}

/// The options of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SetArgs {
    /// `NX`.
    pub nx: bool,
    /// `XX`.
    pub xx: bool,
    /// `GET`.
    pub get: bool,
    /// The expiry.
    pub expiry: Expiry,
}

impl SetArgs {
    /// Parses the options of `SET key value ...` (`args` is the whole request).
    pub(super) fn parse<A: ArgList + ?Sized>(args: &A) -> Result<SetArgs, Reply> {
        if args.len() < 3 {
            return Err(errors::wrong_arity(args.arg(0)));
        }
        let mut s = SetArgs {
            nx: false,
            xx: false,
            get: false,
            expiry: Expiry::None,
        };
        let mut i = 3;
        while i < args.len() {
            let opt = args.arg(i);
            let next = args.get(i + 1);
            let is = |name: &str| opt.eq_ignore_ascii_case(name.as_bytes());
            if is("NX") && !s.xx {
                s.nx = true;
            } else if is("XX") && !s.nx {
                s.xx = true;
            } else if is("GET") {
                s.get = true;
            } else if is("KEEPTTL") && matches!(s.expiry, Expiry::None | Expiry::KeepTtl) {
                s.expiry = Expiry::KeepTtl;
            } else if (is("EX") || is("PX") || is("EXAT") || is("PXAT"))
                && matches!(s.expiry, Expiry::None)
                && next.is_some()
            {
                let v = next.and_then(parse_i64).ok_or_else(errors::not_integer)?;
                let seconds = is("EX") || is("EXAT");
                if v <= 0 || (seconds && v > i64::MAX / 1000) {
                    return Err(errors::invalid_expire("set"));
                }
                s.expiry = if is("EX") {
                    Expiry::Ex(v)
                } else if is("PX") {
                    Expiry::Px(v)
                } else if is("EXAT") {
                    Expiry::ExAt(v)
                } else {
                    Expiry::PxAt(v)
                };
                i += 1;
            } else {
                return Err(errors::syntax());
            }
            i += 1;
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(args: &[&str]) -> Result<SetArgs, Reply> {
        SetArgs::parse(args)
    }

    #[test]
    fn redis_rules() {
        let s = parse(&["SET", "k", "v", "NX", "PX", "100"]).unwrap();
        assert!(s.nx && !s.xx && !s.get);
        assert_eq!(s.expiry, Expiry::Px(100));
        assert_eq!(
            parse(&["set", "k", "v", "px", "100", "nx"]).unwrap().expiry,
            Expiry::Px(100)
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
        assert_eq!(parse(&["SET", "k", "v", "PX"]), Err(errors::syntax()));
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
        assert_eq!(
            parse(&["SET", "k", "v", "EX", "9223372036854775807"]),
            Err(errors::invalid_expire("set"))
        );
        assert!(parse(&["SET", "k", "v", "NX", "NX"]).unwrap().nx);
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
            let s = SetArgs::parse(&args[..]).unwrap();
            prop_assert!(s.nx && !s.xx && !s.get);
            let expected = match unit {
                "EX" => Expiry::Ex(value),
                "PX" => Expiry::Px(value),
                "EXAT" => Expiry::ExAt(value),
                _ => Expiry::PxAt(value),
            };
            prop_assert_eq!(s.expiry, expected);
        }

        /// No input makes the parser panic.
        #[test]
        fn never_panics(opts in prop::collection::vec("[a-zA-Z0-9-]{0,6}", 0..6)) {
            let mut args: Vec<&str> = vec!["SET", "k", "v"];
            args.extend(opts.iter().map(String::as_str));
            let _ = SetArgs::parse(&args[..]);
        }
    }
}
