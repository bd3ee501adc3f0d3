//! Client authentication: `requirepass` (the default user's password) and
//! ACL-style `[[users]]`. Passwords are compared in constant time and never
//! logged.

use std::collections::HashMap;

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    users: HashMap<String, String>,
}

/// The default user's name.
pub const DEFAULT_USER: &str = "default";

impl Authenticator {
    /// From `requirepass` (empty: the default user has no password) and `(name, password)` users.
    pub fn new(requirepass: &str, users: &[(String, String)]) -> Self {
        let mut map: HashMap<String, String> = users.iter().cloned().collect();
        if !requirepass.is_empty() {
            map.insert(DEFAULT_USER.to_string(), requirepass.to_string());
        }
        Authenticator { users: map }
    }

    /// Whether clients must authenticate before anything else.
    pub fn required(&self) -> bool {
        !self.users.is_empty()
    }

    /// Checks a user name (`None`: the default user) and password.
    pub fn check(&self, user: Option<&[u8]>, password: &[u8]) -> bool {
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
        let a = Authenticator::new("pw", &[("alice".into(), "wonder".into())]);
        assert!(a.required());
        assert!(a.check(None, b"pw"));
        assert!(a.check(Some(b"default"), b"pw"));
        assert!(a.check(Some(b"alice"), b"wonder"));
        assert!(!a.check(Some(b"alice"), b"pw"));
        assert!(!a.check(Some(b"bob"), b"pw"));
        assert!(!a.check(None, b"p"));
        assert!(!a.check(None, b"pww"));
        assert!(!Authenticator::new("", &[]).required());
        let only_users = Authenticator::new("", &[("svc".into(), "x".into())]);
        assert!(only_users.required());
        assert!(!only_users.check(None, b""));
    }
}
