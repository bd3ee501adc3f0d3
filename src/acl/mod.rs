//! Who may run what: the users of `[[users]]` and `requirepass`, each with
//! permissions in Redis's ACL language, checked on every request the proxy
//! sees before it runs — passthrough commands, lock operations (a lock key
//! is a key like any other), scripts and the proxy's own commands.
//!
//! - `rules.rs` reads the rules (`on >pw ~app:* &app:* +@all -@dangerous`)
//!   as `ACL SETUSER` does;
//! - `selector.rs` holds what one selector allows and checks a request
//!   against it; `user.rs` a user's selectors and passwords;
//! - `log.rs` is `ACL LOG`; `limiter.rs` counts failed logins per address.
//!
//! Refusals are Redis's own texts ([`noperm`]), so a client sees what a
//! redis-server with the same users would say.

mod limiter;
mod log;
mod rules;
mod selector;
mod user;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub(crate) use limiter::AuthLimiter;
pub(crate) use log::{AclLog, Context, Reason};
pub(crate) use selector::Denied;
pub(crate) use user::{Refusal, User};

use crate::auth::{DEFAULT_USER, Secret, User as UserConfig};
use crate::config::Config;
use crate::errors;
use crate::protocol::Reply;

/// The users, compiled from the configuration.
#[derive(Debug)]
pub(crate) struct Users {
    by_name: HashMap<String, Arc<User>>,
    default: Arc<User>,
}

/// A user's rules were refused: which user, which rule, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsersError(pub String);

impl std::fmt::Display for UsersError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks the configuration's users and their rules, as the proxy will
/// compile them (`check-config`, and before a reload takes a file).
pub fn validate(config: &Config) -> Result<(), UsersError> {
    Users::from_config(&config.server.requirepass, &config.users).map(|_| ())
}

impl Users {
    /// The users of `[[users]]`, and the default user: its own `[[users]]`
    /// entry if it has one, else Redis's default (`on ~* &* +@all`) with
    /// `requirepass` as its password, or off when other users exist and no
    /// `requirepass` is set, or `nopass` when there are no users at all.
    ///
    /// A user without `rules` may do anything, as every user could before
    /// rules existed; one with `rules` starts as `ACL SETUSER` makes a new
    /// user (off, allowed nothing), `password` first if it has one.
    pub(crate) fn from_config(
        requirepass: &Secret,
        users: &[UserConfig],
    ) -> Result<Users, UsersError> {
        let mut by_name = HashMap::new();
        for u in users {
            let fail = |what: String| UsersError(format!("[[users]] '{}': {what}", u.name));
            if u.name == DEFAULT_USER && !requirepass.is_empty() {
                return Err(fail(
                    "requirepass also sets the default user's password: keep one of the two".into(),
                ));
            }
            if u.password.is_empty() && u.rules.is_none() {
                return Err(fail(
                    "needs a password, or rules (with >password or nopass)".into(),
                ));
            }
            let mut user = User::new();
            if !u.password.is_empty() {
                user.apply(&format!(">{}", u.password.expose()))
                    .map_err(|(_, e)| fail(format!("password: {e}")))?;
            }
            let rules = u.rules.as_deref().unwrap_or("on ~* &* +@all");
            user.apply(rules)
                .map_err(|(rule, e)| fail(format!("rule '{rule}': {e}")))?;
            if by_name.insert(u.name.clone(), Arc::new(user)).is_some() {
                return Err(fail("defined twice".into()));
            }
        }
        let default = match by_name.get(DEFAULT_USER) {
            Some(u) => Arc::clone(u),
            None => {
                let mut u = User::new();
                let login = if !requirepass.is_empty() {
                    "on"
                } else if users.is_empty() {
                    "on nopass"
                } else {
                    "off"
                };
                u.apply(&format!("{login} ~* &* +@all"))
                    .map_err(|(_, e)| UsersError(e.to_string()))?;
                if !requirepass.is_empty() {
                    u.add_password(user::hash(requirepass.expose().as_bytes()));
                }
                let u = Arc::new(u);
                by_name.insert(DEFAULT_USER.to_string(), Arc::clone(&u));
                u
            }
        };
        Ok(Users { by_name, default })
    }

    /// The user a new connection starts as.
    pub(crate) fn default_user(&self) -> &Arc<User> {
        &self.default
    }

    /// Whether clients must log in first: the default user is off or has
    /// a password.
    pub(crate) fn auth_required(&self) -> bool {
        !self.default.open()
    }

    /// A user by name.
    pub(crate) fn get(&self, name: &[u8]) -> Option<&Arc<User>> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.by_name.get(n))
    }

    /// The user `name` (`None`: the default user) if `password` logs it in.
    pub(crate) fn login(&self, name: Option<&[u8]>, password: &[u8]) -> Option<&Arc<User>> {
        match name {
            None => Some(&self.default),
            Some(n) => self.get(n),
        }
        .filter(|u| u.accepts(password))
    }

    /// The users' names, sorted (`ACL USERS`).
    pub(crate) fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// What the proxy keeps of ACL refusals, for the life of the process.
#[derive(Debug, Default)]
pub(crate) struct AclState {
    /// `ACL LOG`.
    pub(crate) log: Mutex<AclLog>,
    /// Failed logins per address.
    pub(crate) limiter: AuthLimiter,
}

/// Redis's text for a refusal: `-NOPERM` in 7.0's words, or `SORT`'s own error.
pub(crate) fn noperm(r: &Refusal) -> Reply {
    match r.denied {
        Denied::Command => errors::with_code(
            "NOPERM",
            format_args!(
                "this user has no permissions to run the '{}' command",
                r.command
            ),
        ),
        Denied::Key(_) => errors::with_code(
            "NOPERM",
            "this user has no permissions to access one of the keys used as arguments",
        ),
        Denied::Channel(_) => errors::with_code(
            "NOPERM",
            "this user has no permissions to access one of the channels used as arguments",
        ),
        Denied::SortPattern(by) => errors::err(format_args!(
            "{} option of SORT denied due to insufficient ACL permissions.",
            if by { "BY" } else { "GET" }
        )),
    }
}

/// The log entry's reason and object for a refusal of `args` (`None`:
/// Redis logs no entry for it).
pub(crate) fn log_object<'a, A: crate::protocol::ArgList + ?Sized>(
    r: &'a Refusal,
    args: &'a A,
) -> Option<(Reason, &'a [u8])> {
    Some(match r.denied {
        Denied::Command => (Reason::Command, r.command.as_bytes()),
        Denied::Key(i) => (Reason::Key, args.arg(i)),
        Denied::Channel(i) => (Reason::Channel, args.arg(i)),
        Denied::SortPattern(_) => return None,
    })
}

/// `ACL CAT`: the categories; `ACL CAT c`: the commands in it (their full
/// names, subcommands too), or `None` for an unknown category.
pub(crate) fn cat(category: Option<&[u8]>) -> Option<Reply> {
    use crate::command::category::{NAMES, bit};
    let Some(c) = category else {
        return Some(Reply::Array(
            NAMES.iter().map(|n| Reply::bulk_static(n)).collect(),
        ));
    };
    let bit = bit(c)?;
    let mut out = Vec::new();
    for spec in crate::command::every() {
        if spec.acl & bit != 0 {
            out.push(Reply::bulk_static(spec.name));
        }
        for sub in spec.subcommands {
            if sub.acl & bit != 0 {
                out.push(Reply::bulk_static(sub.name));
            }
        }
    }
    Some(Reply::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, password: &str, rules: Option<&str>) -> UserConfig {
        UserConfig {
            name: name.into(),
            password: Secret(password.into()),
            rules: rules.map(Into::into),
        }
    }

    #[test]
    fn the_default_user_and_logins() {
        let none = Users::from_config(&Secret::default(), &[]).unwrap();
        assert!(!none.auth_required());
        let pass = Users::from_config(&Secret("pw".into()), &[cfg("alice", "w", None)]).unwrap();
        assert!(pass.auth_required());
        assert!(pass.login(None, b"pw").is_some());
        assert!(pass.login(Some(b"default"), b"pw").is_some());
        assert!(pass.login(Some(b"alice"), b"w").is_some());
        assert!(pass.login(Some(b"alice"), b"pw").is_none());
        assert!(pass.login(Some(b"bob"), b"w").is_none());
        let only = Users::from_config(&Secret::default(), &[cfg("svc", "x", None)]).unwrap();
        assert!(only.auth_required());
        assert!(only.login(None, b"").is_none());
        // The default user restricted, without a password.
        let open = Users::from_config(
            &Secret::default(),
            &[cfg("default", "", Some("on nopass ~public:* +@read"))],
        )
        .unwrap();
        assert!(!open.auth_required());
        assert!(
            open.default_user()
                .check(&["GET", "secret"][..], None, None)
                .is_err()
        );
        assert!(
            open.default_user()
                .check(&["GET", "public:1"][..], None, None)
                .is_ok()
        );
        assert_eq!(open.names(), ["default"]);
    }

    #[test]
    fn configuration_errors_say_who_and_what() {
        let err = |u: UserConfig| Users::from_config(&Secret::default(), &[u]).unwrap_err().0;
        assert_eq!(
            err(cfg("a", "x", Some("on +nosuch"))),
            "[[users]] 'a': rule '+nosuch': Unknown command or category name in ACL"
        );
        assert!(err(cfg("a", "", None)).contains("needs a password"));
        let twice = Users::from_config(
            &Secret::default(),
            &[cfg("a", "x", None), cfg("a", "y", None)],
        );
        assert!(twice.unwrap_err().0.contains("defined twice"));
        let both = Users::from_config(&Secret("p".into()), &[cfg("default", "x", None)]);
        assert!(both.unwrap_err().0.contains("requirepass"));
    }

    #[test]
    fn acl_cat() {
        let Some(Reply::Array(all)) = cat(None) else {
            panic!("an array")
        };
        assert_eq!(all.len(), 21);
        let Some(Reply::Array(write)) = cat(Some(b"WRITE")) else {
            panic!("an array")
        };
        let names: Vec<_> = write
            .iter()
            .filter_map(|r| match r {
                Reply::Bulk(b) => Some(b.clone()),
                _ => None,
            })
            .collect();
        assert!(names.iter().any(|n| &n[..] == b"set"));
        assert!(names.iter().any(|n| &n[..] == b"lock.acquire"));
        assert!(!names.iter().any(|n| &n[..] == b"get"));
        assert!(cat(Some(b"nosuch")).is_none());
    }
}
