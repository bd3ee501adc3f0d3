//! Client authentication: `requirepass` (the default user's password) and
//! ACL-style `[[users]]`. Passwords are compared in constant time and never
//! logged: [`Secret`] hides them from `Debug`.

use std::collections::HashMap;
use std::fmt;

use serde::Deserialize;

/// A password: `Debug` never shows it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no password is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// A user besides the default one (`[[users]]` in the configuration).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password.
    pub password: Secret,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.name)
    }
}

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub(crate) struct Authenticator {
    users: HashMap<String, String>,
}

/// The default user's name.
pub(crate) const DEFAULT_USER: &str = "default";

impl Authenticator {
    /// From `requirepass` (empty: the default user has no password) and the other users.
    pub(crate) fn new(requirepass: &Secret, users: &[User]) -> Self {
        let mut map: HashMap<String, String> = users
            .iter()
            .map(|u| (u.name.clone(), u.password.0.clone()))
            .collect();
        if !requirepass.is_empty() {
            map.insert(DEFAULT_USER.to_string(), requirepass.0.clone());
        }
        Authenticator { users: map }
    }

    /// Whether clients must authenticate before anything else.
    pub(crate) fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a user name (`None`: the default user) and password.
    pub(crate) fn check(&self, user: Option<&[u8]>, password: &[u8]) -> bool {
        let name = user.unwrap_or(DEFAULT_USER.as_bytes());
        let Some(expected) = std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.users.get(n))
        else {
            // Compare anyway, so an unknown user takes as long as a wrong password.
            let _ = constant_time_eq(password, password);
            return false;
        };
        constant_time_eq(expected.as_bytes(), password)
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | ((a.len() ^ b.len()) >> 8) as u8;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requirepass_and_users() {
        let user = |name: &str, pw: &str| User {
            name: name.into(),
            password: Secret(pw.into()),
        };
        let a = Authenticator::new(&Secret("pw".into()), &[user("alice", "wonder")]);
        assert!(a.required());
        assert!(a.check(None, b"pw"));
        assert!(a.check(Some(b"default"), b"pw"));
        assert!(a.check(Some(b"alice"), b"wonder"));
        assert!(!a.check(Some(b"alice"), b"pw"));
        assert!(!a.check(Some(b"bob"), b"pw"));
        assert!(!a.check(None, b"p"));
        assert!(!a.check(None, b"pww"));
        assert!(!Authenticator::new(&Secret::default(), &[]).required());
        let only_users = Authenticator::new(&Secret::default(), &[user("svc", "x")]);
        assert!(only_users.required());
        assert!(!only_users.check(None, b""));
    }
}
