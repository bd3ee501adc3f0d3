//! The configuration's side of client authentication: `requirepass` (the
//! default user's password) and `[[users]]`, each with an optional password
//! and ACL rules (compiled and checked by `acl`). Passwords are never logged:
//! [`Secret`] hides them from `Debug`.

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

/// A user (`[[users]]` in the configuration; `name = "default"` is the
/// default user).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// User name.
    pub name: String,
    /// Password (optional when the rules set one, or `nopass`).
    #[serde(default)]
    pub password: Secret,
    /// ACL rules in Redis's syntax, as `ACL SETUSER` takes them. Without
    /// them the user may do anything (`on ~* &* +@all`).
    #[serde(default)]
    pub rules: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:***", self.name)?;
        if let Some(r) = &self.rules {
            // Rules may hold passwords (`>secret`): only their shape shows.
            write!(f, " ({} rules)", r.split_whitespace().count())?;
        }
        Ok(())
    }
}

/// The default user's name.
pub(crate) const DEFAULT_USER: &str = "default";
