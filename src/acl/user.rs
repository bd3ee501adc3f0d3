//! One user: whether it is on, its passwords (SHA-256, as Redis keeps them),
//! and its selectors; and the check of a request against them, picking the
//! error to report the way Redis's `ACLCheckAllUserCommandPerm` does.

use super::selector::{Denied, Selector, may_name_channels};
use crate::command::{CommandSpec, lookup_any};
use crate::protocol::ArgList;

/// A user and its permissions, compiled from its rules.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(super) enabled: bool,
    pub(super) nopass: bool,
    pub(super) passwords: Vec<[u8; 32]>,
    /// The root selector first, then the `(...)` ones.
    pub(super) selectors: Vec<Selector>,
    fast: Fast,
}

/// What can be decided without looking the command up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fast {
    /// Every command, key and channel (`+@all ~* &*`): nothing to check.
    Anything,
    /// Every command and key (`+@all ~*`): only pub/sub commands' channels.
    ChannelsOnly,
    /// Anything else.
    Check,
}

/// A refused request: why, and the command it named.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    /// What was not allowed.
    pub(crate) denied: Denied,
    /// The command's full name, as Redis names it (`get`, `config|set`).
    pub(crate) command: std::borrow::Cow<'static, str>,
}

impl Refusal {
    fn of(denied: Denied, spec: &'static CommandSpec) -> Self {
        Refusal {
            denied,
            command: spec.name.into(),
        }
    }
}

/// SHA-256 of a password.
pub(crate) fn hash(password: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, password);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl User {
    /// A new user, as `ACL SETUSER` makes one: off, no password, and
    /// allowed nothing.
    pub(crate) fn new() -> Self {
        User {
            enabled: false,
            nopass: false,
            passwords: Vec::new(),
            selectors: vec![Selector::default()],
            fast: Fast::Check,
        }
    }

    /// Works out what can be decided without looking at a request, once
    /// rules changed (`rules.rs` calls it).
    pub(super) fn settle(&mut self) {
        let root = &self.selectors[0];
        self.fast = if root.all_but_channels() && root.all_channels {
            Fast::Anything
        } else if root.all_but_channels() {
            Fast::ChannelsOnly
        } else {
            Fast::Check
        };
    }

    pub(super) fn add_password(&mut self, h: [u8; 32]) {
        if !self.passwords.contains(&h) {
            self.passwords.push(h);
        }
        self.nopass = false;
    }

    /// Removes a password; `false` if it had none such.
    pub(super) fn remove_password(&mut self, h: &[u8; 32]) -> bool {
        let before = self.passwords.len();
        self.passwords.retain(|p| p != h);
        self.passwords.len() != before
    }

    /// Whether it has `nopass`.
    pub(crate) fn nopass(&self) -> bool {
        self.nopass
    }

    /// Whether it may log in without a password (on and `nopass`).
    pub(crate) fn open(&self) -> bool {
        self.enabled && self.nopass
    }

    /// Whether `password` logs it in: it is on, and `nopass` or the password
    /// is one of its own (compared in constant time, against every one).
    pub(crate) fn accepts(&self, password: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        let h = hash(password);
        let mut ok = self.nopass;
        for p in &self.passwords {
            let diff = p.iter().zip(&h).fold(0u8, |d, (a, b)| d | (a ^ b));
            ok |= diff == 0;
        }
        ok
    }

    /// Whether the user may run `args`; `found` is its command if the
    /// caller looked it up already (`None`: looked up here, the proxy's own
    /// commands included). `keys_need` overrides what the
    /// command's keys need ([`access`](crate::command::access) bits): a lock
    /// script the proxy knows only reads. Commands Redis would refuse before
    /// looking at permissions (wrong arity, unknown subcommand) pass:
    /// their own error follows.
    pub(crate) fn check<A: ArgList + ?Sized>(
        &self,
        args: &A,
        found: Option<&'static CommandSpec>,
        keys_need: Option<u8>,
    ) -> Result<(), Refusal> {
        match self.fast {
            Fast::Anything => return Ok(()),
            Fast::ChannelsOnly if !may_name_channels(args.arg(0)) => return Ok(()),
            _ => {}
        }
        let Some(spec) = found.or_else(|| lookup_any(args)) else {
            // A command the proxy does not know (a module's): its keys and
            // channels cannot be found, so only a selector that allows
            // everything runs it; anyone else is refused as Redis refuses a
            // module command a user lacks.
            if self
                .selectors
                .iter()
                .any(|s| s.all_but_channels() && s.all_channels)
            {
                return Ok(());
            }
            return Err(Refusal {
                denied: Denied::Command,
                command: String::from_utf8_lossy(args.arg(0)).to_lowercase().into(),
            });
        };
        let n = args.len() as i64;
        let arity = i64::from(spec.arity);
        let arity_ok = if arity >= 0 { n == arity } else { n >= -arity };
        if !spec.subcommands.is_empty() || !arity_ok {
            return Ok(());
        }
        let mut worst: Option<Denied> = None;
        let mut passed = false;
        for sel in &self.selectors {
            match sel.check(spec, args, keys_need) {
                Ok(()) if !matches!(spec.name, "sort" | "sort_ro") || sel.reads_every_key() => {
                    return Ok(());
                }
                Ok(()) => passed = true,
                Err(d) => worst = Some(worst.map_or(d, |w| w.max(d))),
            }
        }
        if passed {
            // SORT allowed, but by no selector that reads every key.
            return match sort_pattern(args) {
                Some(by) => Err(Refusal::of(Denied::SortPattern(by), spec)),
                None => Ok(()),
            };
        }
        Err(Refusal::of(worst.unwrap_or(Denied::Command), spec))
    }
}

/// The first `BY` with a `*` pattern (`Some(true)`) or `GET` (`Some(false)`)
/// among `SORT`'s options, read as `sortCommandGeneric` reads them; `None`
/// when there is none before the end or a syntax error (the backend's own
/// error follows).
fn sort_pattern<A: ArgList + ?Sized>(args: &A) -> Option<bool> {
    let mut j = 2;
    while j < args.len() {
        let a = args.arg(j);
        let left = args.len() - j - 1;
        let is = |w: &str| a.eq_ignore_ascii_case(w.as_bytes());
        if is("asc") || is("desc") || is("alpha") {
            j += 1;
        } else if is("limit") && left >= 2 {
            j += 3;
        } else if is("store") && left >= 1 {
            j += 2;
        } else if is("by") && left >= 1 {
            if args.arg(j + 1).contains(&b'*') {
                return Some(true);
            }
            j += 2;
        } else if is("get") && left >= 1 {
            return Some(false);
        } else {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(rules: &str) -> User {
        let mut u = User::new();
        u.apply(rules).expect("valid rules");
        u
    }

    fn check(u: &User, args: &[&str]) -> Result<(), Denied> {
        u.check(args, None, None).map_err(|r| r.denied)
    }

    #[test]
    fn commands_categories_and_subcommands() {
        let u = user("on nopass ~* +@all -@dangerous -config|set +config|get");
        assert_eq!(check(&u, &["GET", "k"]), Ok(()));
        assert_eq!(check(&u, &["FLUSHALL"]), Err(Denied::Command));
        assert_eq!(
            check(&u, &["config", "SET", "a", "b"]),
            Err(Denied::Command)
        );
        assert_eq!(check(&u, &["CONFIG", "GET", "a"]), Ok(()));
        // Wrong arity, unknown subcommands: Redis's own errors come first.
        // A command the proxy does not know cannot be checked: only a user
        // allowed everything runs it.
        assert_eq!(check(&u, &["NOSUCH"]), Err(Denied::Command));
        assert_eq!(check(&user("on nopass ~* &* +@all"), &["JSON.SET"]), Ok(()));
        assert_eq!(
            check(&user("on nopass ~* &* -get (+@all ~* &*)"), &["JSON.SET"]),
            Ok(())
        );
        assert_eq!(check(&u, &["FLUSHALL", "ASYNC", "x"]), Err(Denied::Command));
        assert_eq!(check(&user("on nopass"), &["GET"]), Ok(()));
        assert_eq!(check(&u, &["CONFIG", "NOSUCH"]), Ok(()));
        let sel0 = user("on nopass -@all +select|0 +ping");
        assert_eq!(check(&sel0, &["SELECT", "0"]), Ok(()));
        assert_eq!(check(&sel0, &["SELECT", "1"]), Err(Denied::Command));
        // AUTH and HELLO are never refused.
        assert_eq!(check(&sel0, &["AUTH", "x"]), Ok(()));
    }

    #[test]
    fn read_and_write_key_patterns() {
        let u = user("on nopass +@all ~app:* %R~ro:* %W~wo:*");
        assert_eq!(check(&u, &["GET", "app:1"]), Ok(()));
        assert_eq!(check(&u, &["GET", "other"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &["GET", "ro:1"]), Ok(()));
        assert_eq!(check(&u, &["SET", "ro:1", "v"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &["SET", "wo:1", "v"]), Ok(()));
        assert_eq!(check(&u, &["SET", "wo:1", "v", "GET"]), Err(Denied::Key(1)));
        assert_eq!(
            check(&u, &["MSET", "app:1", "v", "x", "v"]),
            Err(Denied::Key(3))
        );
        assert_eq!(check(&u, &["BITFIELD", "ro:1", "GET", "u8", "0"]), Ok(()));
        assert_eq!(
            check(&u, &["BITFIELD", "ro:1", "SET", "u8", "0", "1"]),
            Err(Denied::Key(1))
        );
        // A lock script the proxy knows to only read: read permission is enough.
        let args = ["EVALSHA", "sha", "1", "ro:1"];
        assert!(u.check(&args[..], None, None).is_err());
        assert!(
            u.check(&args[..], None, Some(crate::command::access::READ))
                .is_ok()
        );
    }

    #[test]
    fn channels_and_patterns() {
        let u = user("on nopass +@all ~* &news.*");
        assert_eq!(u.fast, Fast::ChannelsOnly);
        assert_eq!(check(&u, &["PUBLISH", "news.a", "m"]), Ok(()));
        assert_eq!(check(&u, &["PUBLISH", "x", "m"]), Err(Denied::Channel(1)));
        assert_eq!(
            check(&u, &["SUBSCRIBE", "news.a", "x"]),
            Err(Denied::Channel(2))
        );
        // A pattern subscription needs the same pattern, literally.
        assert_eq!(check(&u, &["PSUBSCRIBE", "news.*"]), Ok(()));
        assert_eq!(
            check(&u, &["PSUBSCRIBE", "news.a*"]),
            Err(Denied::Channel(1))
        );
        assert_eq!(check(&u, &["UNSUBSCRIBE", "x"]), Ok(()));
        assert_eq!(user("on nopass +@all ~* &*").fast, Fast::Anything);
    }

    #[test]
    fn sort_patterns_need_every_key() {
        let u = user("on nopass +@all ~app:*");
        assert_eq!(check(&u, &["SORT", "app:l", "BY", "nosort"]), Ok(()));
        assert_eq!(
            check(&u, &["SORT", "app:l", "LIMIT", "0", "1", "BY", "w_*"]),
            Err(Denied::SortPattern(true))
        );
        assert_eq!(
            check(&u, &["SORT", "app:l", "GET", "#"]),
            Err(Denied::SortPattern(false))
        );
        assert_eq!(check(&u, &["SORT", "app:l", "BOGUS", "GET", "#"]), Ok(()));
        assert_eq!(
            check(&user("on nopass +@all %R~*"), &["SORT", "l", "GET", "#"]),
            Ok(())
        );
        // The sorted key is read, the STORE destination written.
        let rw = user("on nopass +@all %R~src:* %W~dst:*");
        assert_eq!(check(&rw, &["SORT", "src:l", "STORE", "dst:l"]), Ok(()));
        assert_eq!(
            check(&rw, &["SORT", "dst:l", "STORE", "src:l"]),
            Err(Denied::Key(1))
        );
    }

    #[test]
    fn selectors_and_the_error_reported() {
        let u = user("on nopass ~* +get (+set ~x*)");
        assert_eq!(check(&u, &["SET", "x1", "v"]), Ok(()));
        assert_eq!(check(&u, &["SET", "y", "v"]), Err(Denied::Key(1)));
        assert_eq!(check(&u, &["DEL", "x1"]), Err(Denied::Command));
    }

    #[test]
    fn passwords() {
        let mut u = user("on >a >b");
        assert!(u.accepts(b"a") && u.accepts(b"b") && !u.accepts(b"c"));
        u.apply("<a").unwrap();
        assert!(!u.accepts(b"a"));
        assert_eq!(
            u.apply("<zz").unwrap_err().1,
            super::super::rules::RuleError::NoSuchPassword
        );
        u.apply("off").unwrap();
        assert!(!u.accepts(b"b"));
        let h = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"; // sha256("a")
        assert!(user(&format!("on #{h}")).accepts(b"a"));
        assert!(User::new().apply("#ABC").is_err());
        assert!(user("on nopass").accepts(b"anything"));
    }

    #[test]
    fn rule_errors_are_redis_texts() {
        let err = |r: &str| User::new().apply(r).unwrap_err().1.to_string();
        assert_eq!(err("+nosuch"), "Unknown command or category name in ACL");
        assert_eq!(err("+@nosuch"), "Unknown command or category name in ACL");
        assert_eq!(err("bogus"), "Syntax error");
        assert_eq!(err("%X~a"), "Syntax error");
        assert!(err("~* ~a").starts_with("Adding a pattern after the * pattern (or the 'allkeys'"));
        assert!(err("&* &a").contains("'allchannels'"));
        assert_eq!(
            err("+config|get|x"),
            "Allowing first-arg of a subcommand is not supported"
        );
        assert_eq!(err("(+get"), "Syntax error");
    }
}
