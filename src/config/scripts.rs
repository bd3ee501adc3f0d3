//! `[[redlock.scripts]]`: lock scripts the proxy does not know, declared with
//! what they do and how their replies read.

use serde::Deserialize;

/// A `[[redlock.scripts]]` entry: declares what a script the proxy does not
/// know does, so it can run it on the masters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptConfig {
    /// SHA1 of the script text.
    pub sha1: ScriptSha,
    /// What the script does.
    pub kind: ScriptKind,
    /// For `acquire` and `extend`: which ARGV (1-based) holds the TTL in ms
    /// (default 2).
    #[serde(default)]
    pub ttl_arg: Option<std::num::NonZeroUsize>,
    /// Which ARGV (1-based) holds the owner's token (default 1): the proxy
    /// releases with it what an acquisition did not get a quorum for.
    #[serde(default)]
    pub token_arg: Option<std::num::NonZeroUsize>,
    /// Which of a master's replies mean the script succeeded there (default
    /// `ok_or_positive`).
    #[serde(default)]
    pub success: Option<ScriptSuccess>,
    /// What the client gets when a quorum did not succeed: the value the
    /// library reads as failure. Default: an error for acquisitions and
    /// extensions (every library reads it as failure), the count of keys a
    /// quorum released (0) for releases.
    #[serde(default)]
    pub failure: Option<ScriptFailure>,
}

/// Which replies of a declared script mean success on a master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptSuccess {
    /// The status `OK`, or an integer of 1 or more.
    #[default]
    OkOrPositive,
    /// The status `OK`.
    Ok,
    /// The integer 1.
    One,
    /// An integer of 1 or more.
    Positive,
    /// Any reply but an error (libraries whose scripts fail with an error
    /// reply, such as `redis.error_reply('ERROR')`).
    Any,
}

/// What a declared script answers when a quorum did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptFailure {
    /// An error reply: every library reads it as failure.
    #[default]
    Error,
    /// Nil.
    Nil,
    /// The integer 0.
    Zero,
}

/// What a declared script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptKind {
    /// Takes the lock.
    Acquire,
    /// Compare-and-delete.
    Release,
    /// Compare-and-pexpire.
    Extend,
    /// Reads the lock.
    Query,
}

/// A script's SHA1: 40 hex digits, kept lowercase (the form `EVALSHA` ids take
/// once the proxy has normalised them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ScriptSha(String);

impl ScriptSha {
    /// The SHA1 as 40 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ScriptSha {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if s.len() != 40 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("sha1 {s:?} is not 40 hex digits"));
        }
        Ok(ScriptSha(s.to_ascii_lowercase()))
    }
}
