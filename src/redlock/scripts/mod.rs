//! Lock scripts: which scripts the proxy runs as RedLock operations, how their
//! replies are read and aggregated, and the texts learned from clients.
//!
//! Recognition is by SHA1 first — the table below holds the lock scripts of the
//! popular client libraries (from `lock-scripts.tsv`), plus `[[redlock.scripts]]`
//! from the configuration — and, for `EVAL` texts only, by a whitespace- and
//! case-normalised match of the compare-and-delete and compare-and-pexpire shapes.
//!
//! The proxy runs the client's own script on every master and votes on the
//! per-master replies (see `engine.rs`), so each library keeps its exact
//! semantics (redis-py's "add to the current TTL", redsync's -1, ...). It can
//! only do so with the text, which it learns from `EVAL` and `SCRIPT LOAD`;
//! until then `EVALSHA` gets `NOSCRIPT`, as from a fresh Redis.

use std::collections::HashMap;
use std::sync::RwLock;

use bytes::Bytes;

use crate::config::{ScriptConfig, ScriptFailure, ScriptKind, ScriptSuccess};

mod known;
pub mod native;

pub use known::KNOWN;

/// What a lock script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Takes the lock (on failure the proxy releases it on every master).
    Acquire,
    /// Takes the lock when `ARGV[3]` is "yes", only extends it when "no" (redlock-rb).
    AcquireOrExtend,
    /// Compare-and-delete.
    Release,
    /// Compare-and-pexpire (never released on failure).
    Extend,
    /// Reads the lock (answered from a quorum).
    Query,
    /// A script whose semantics cannot be kept across independent masters.
    Unsupported(&'static str),
}

/// How a script's reply says success, and what the aggregated reply looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// Integer count (DEL count): the reply is the count a quorum reached.
    Count,
    /// Integer 1 on success, 0 otherwise.
    OneZero,
    /// Status OK on success, nil otherwise.
    OkNil,
    /// Integer 1 on success, nil otherwise.
    OneNil,
    /// Integer equal to the number of keys on success, 0 otherwise (node-redlock).
    KeysZero,
    /// redsync ≥ 4.12 release: 1 released, 0 other owner, -1 missing.
    RedsyncRelease,
    /// Status OK on success, the bulk string "ERR" otherwise (redsync v1 extend).
    OkErr,
    /// Remaining PTTL when owned, 0 otherwise (pottery `locked()`).
    PttlOrZero,
    /// PTTL when owned, -3 otherwise (bsm/redislock ≤ 0.9).
    PttlOrMinus3,
    /// Least PTTL when owned, nil otherwise (bsm/redislock ≥ 0.10).
    PttlOrNil,
    /// TTL in seconds when owned, the error `ERROR` otherwise (aioredlock's
    /// `get_lock_ttl`: that error is the script's "no", not a failure).
    TtlOrError,
    /// `[value, pttl]` when the key exists, nil otherwise (redlock-universal's
    /// inspect).
    ValuePttlOrNil,
    /// `[code, pttl]`: 1 extended; 0 held but too little time left; -1 not
    /// held (pttl -2: missing) (redlock-universal's atomic extend).
    CodePttl,
    /// `[1, nkeys]` when every key was free and is now taken, `[0, i,
    /// KEYS[i]]` naming a key that was held (redlock-universal's batch acquire).
    BatchCode,
    /// Integer 1 on success, 0 otherwise, and the client is answered nil
    /// either way, as the script itself answers (simple-redis-mutex's
    /// release returns nothing).
    Silent,
    /// `[value or nil, pttl]` (redlock-rb).
    ValuePttl,
    /// Integer 0 on success; 1 when not owned, 2 when it has no expiry
    /// (python-redis-lock's extend).
    ZeroOne,
    /// Scripts declared in the configuration: success as declared, and the
    /// reply a successful master gave when a quorum succeeded; otherwise the
    /// declared failure value, never a master's reply (a library that reads
    /// anything but an error as success must never see a refusal as nil).
    Declared(ScriptSuccess, ScriptFailure),
}

/// What the proxy knows about one lock script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScriptSpec {
    /// What it does.
    pub kind: Kind,
    /// How its reply reads.
    pub convention: Convention,
    /// 1-based ARGV index of the TTL, for validity checks.
    pub ttl_arg: Option<usize>,
    /// 1-based ARGV index of the owner's token.
    pub token_arg: usize,
    /// The TTL argument is in seconds (EXPIRE), not milliseconds.
    pub ttl_in_seconds: bool,
    /// How an extension's TTL argument applies.
    pub ttl_mode: TtlMode,
    /// Library and purpose, for messages.
    pub origin: &'static str,
    /// For a script that also touches data keys: how it is split.
    pub split: Option<Split>,
    /// A batch acquisition: `ARGV[i]` is the token of `KEYS[i]`, and the
    /// argument after them the TTL in ms (`token_arg` and `ttl_arg` unused).
    pub batch: bool,
    /// How the lock key keeps its holders.
    pub holders: Holders,
}

/// How a lock key keeps its holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holders {
    /// A string holding the owner's token: one holder (every mutex).
    Token,
    /// A sorted set of holders' tokens scored by expiry, with a `__write__`
    /// member while its one holder writes (Symfony Lock's `RedisStore`):
    /// readers share the key, a writer holds it alone.
    ReadWrite,
    /// A sorted set of at most ARGV[`limit_arg`] seats (redis-semaphore's
    /// `Semaphore`, one seat per holder: its token; `MultiSemaphore`, with
    /// `permits_arg`: ARGV[i] seats per holder, `<token>_0` ..).
    Semaphore {
        /// 1-based ARGV index of the limit (`None`: a release, which needs none).
        limit_arg: Option<usize>,
        /// 1-based ARGV index of the seats one holder takes.
        permits_arg: Option<usize>,
    },
}

/// A known script that touches a lock key and data keys (python-redis-lock's
/// signal list): its lock part runs as a quorum operation on the masters, its
/// data part on the passthrough backend after the vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The KEYS index (1-based) of the lock key; every other key is a data key.
    pub lock_key: usize,
    /// The lock part, run with the lock key and all of ARGV (`None`: the
    /// script itself, which uses no other key).
    pub lock_part: Option<&'static str>,
    /// The data part, run with the data keys and all of ARGV, and when.
    pub data_part: Option<(&'static str, DataWhen)>,
    /// The data part gets the lock key too, as the argument after ARGV
    /// (simple-redis-mutex publishes it).
    pub lock_key_arg: bool,
}

/// When a split script's data part runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataWhen {
    /// After the vote, whatever it decided (a forced release).
    Always,
    /// When the lock part's reply is this integer (success).
    OnInt(i64),
}

/// How an extend script's TTL argument applies to the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlMode {
    /// It is the new TTL.
    Set,
    /// It is added to the TTL left (redis-py's `extend`).
    Add,
    /// Added, unless ARGV at this (1-based) index is `"1"`: then it is the new
    /// TTL (redis-py's `extend(replace_ttl=True)`).
    AddUnlessArg(usize),
}

/// A spec with the TTL argument in milliseconds.
const fn spec(
    kind: Kind,
    convention: Convention,
    ttl_arg: Option<usize>,
    origin: &'static str,
) -> ScriptSpec {
    ScriptSpec {
        kind,
        convention,
        ttl_arg,
        token_arg: 1,
        ttl_in_seconds: false,
        ttl_mode: TtlMode::Set,
        origin,
        split: None,
        batch: false,
        holders: Holders::Token,
    }
}

/// The SHA1 of `text` as 40 lowercase hex digits (the id `EVALSHA` uses).
pub fn sha1_hex(text: &[u8]) -> String {
    sha1_smol::Sha1::from(text).digest().to_string()
}

/// Normalises a script for shape matching: lowercase, no whitespace, one kind of
/// quote, no semicolons.
fn normalise(text: &[u8]) -> String {
    text.iter()
        .filter(|c| !c.is_ascii_whitespace() && **c != b';')
        .map(|&c| {
            if c == b'\'' {
                '"'
            } else {
                (c as char).to_ascii_lowercase()
            }
        })
        .collect()
}

/// Compare-and-delete and compare-and-pexpire as people write them, normalised.
const SHAPES: &[(&str, Kind)] = &[
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("unlink",KEYS[1]) else return 0 end"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) end return 0"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("unlink",KEYS[1]) end return 0"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) ~= ARGV[1] then return 0 end return redis.call("del",KEYS[1])"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) ~= ARGV[1] then return 0 else return redis.call("del",KEYS[1]) end"#,
        Kind::Release,
    ),
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("pexpire",KEYS[1],ARGV[2]) else return 0 end"#,
        Kind::Extend,
    ),
    (
        r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("pexpire",KEYS[1],ARGV[2]) end return 0"#,
        Kind::Extend,
    ),
    (
        r#"if redis.call("get",KEYS[1]) ~= ARGV[1] then return 0 end return redis.call("pexpire",KEYS[1],ARGV[2])"#,
        Kind::Extend,
    ),
];

/// Recognises a compare-and-delete or compare-and-pexpire script by its shape.
pub fn recognise_shape(text: &[u8]) -> Option<ScriptSpec> {
    let n = normalise(text);
    SHAPES
        .iter()
        .find(|(shape, _)| normalise(shape.as_bytes()) == n)
        .map(|&(_, kind)| match kind {
            Kind::Extend => spec(
                Kind::Extend,
                Convention::OneZero,
                Some(2),
                "compare-and-pexpire (recognised by shape)",
            ),
            _ => spec(
                Kind::Release,
                Convention::Count,
                None,
                "compare-and-delete (recognised by shape)",
            ),
        })
}

/// What the proxy knows of a script declared in `[[redlock.scripts]]`.
fn declared(c: &ScriptConfig) -> ScriptSpec {
    let ttl_arg = Some(c.ttl_arg.map_or(2, |n| n.get()));
    let conv = Convention::Declared(c.success.unwrap_or_default(), c.failure.unwrap_or_default());
    let mut s = match c.kind {
        ScriptKind::Acquire => spec(Kind::Acquire, conv, ttl_arg, "a declared acquire script"),
        ScriptKind::Extend => spec(Kind::Extend, conv, ttl_arg, "a declared extend script"),
        ScriptKind::Query => spec(
            Kind::Query,
            Convention::PttlOrZero,
            None,
            "a declared query script",
        ),
        // A release declared with neither convention replies as DEL does: the
        // count of keys a quorum released.
        ScriptKind::Release if c.success.is_none() && c.failure.is_none() => spec(
            Kind::Release,
            Convention::Count,
            None,
            "a declared release script",
        ),
        ScriptKind::Release => spec(Kind::Release, conv, None, "a declared release script"),
    };
    s.token_arg = c.token_arg.map_or(1, |n| n.get());
    s
}

/// Most scripts recognised by shape the proxy remembers (each distinct spacing of
/// a script is a distinct SHA1; this bounds what a client can make it store).
const MAX_SHAPE_SCRIPTS: usize = 1024;

/// Known lock scripts and learned texts, shared by all connections.
#[derive(Debug, Default)]
pub struct ScriptRegistry {
    configured: HashMap<String, ScriptSpec>,
    inner: RwLock<Learned>,
}

#[derive(Debug, Default)]
struct Learned {
    texts: HashMap<String, Bytes>,
    by_shape: HashMap<String, ScriptSpec>,
}

impl ScriptRegistry {
    /// A registry with the built-in table plus the scripts declared in the configuration.
    pub fn new(configured: &[ScriptConfig]) -> Self {
        let configured = configured
            .iter()
            .map(|c| (c.sha1.as_str().to_string(), declared(c)))
            .collect();
        ScriptRegistry {
            configured,
            inner: RwLock::default(),
        }
    }

    /// What the script with this SHA1 (lowercase hex) is, if it is a lock script.
    pub fn spec(&self, sha: &[u8]) -> Option<ScriptSpec> {
        let sha = std::str::from_utf8(sha).ok()?;
        if let Some(s) = self.configured.get(sha) {
            return Some(*s);
        }
        if let Ok(i) = KNOWN.binary_search_by(|(k, _)| (*k).cmp(sha)) {
            return Some(KNOWN[i].1);
        }
        self.inner.read().ok()?.by_shape.get(sha).copied()
    }

    /// Whether this SHA1 is a lock script.
    pub fn is_lock_script(&self, sha: &[u8]) -> bool {
        self.spec(sha).is_some()
    }

    /// The text of a lock script, if a client has sent it.
    pub fn text(&self, sha: &[u8]) -> Option<Bytes> {
        let sha = std::str::from_utf8(sha).ok()?;
        self.inner.read().ok()?.texts.get(sha).cloned()
    }

    /// Learns `text` (whose SHA1 is `sha`) if it is a lock script, by SHA1 or by
    /// shape; returns whether it is one.
    pub fn learn(&self, sha: &str, text: &[u8]) -> bool {
        let by_table = self.spec(sha.as_bytes()).is_some();
        let shape = if by_table {
            None
        } else {
            recognise_shape(text)
        };
        if !by_table && shape.is_none() {
            return false;
        }
        let Ok(mut inner) = self.inner.write() else {
            return false;
        };
        if let Some(s) = shape {
            if inner.by_shape.len() >= MAX_SHAPE_SCRIPTS && !inner.by_shape.contains_key(sha) {
                return false;
            }
            inner.by_shape.insert(sha.to_string(), s);
        }
        inner
            .texts
            .entry(sha.to_string())
            .or_insert_with(|| Bytes::copy_from_slice(text));
        true
    }

    /// `SCRIPT FLUSH`: forget learned texts (clients will send them again).
    pub fn flush(&self) {
        if let Ok(mut inner) = self.inner.write() {
            inner.texts.clear();
            inner.by_shape.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        // binary_search needs the table sorted; the TSV lists two SHAs twice.
        let mut sorted: Vec<&str> = KNOWN.iter().map(|k| k.0).collect();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), KNOWN.len(), "duplicate SHA in KNOWN");
        for (sha, _) in KNOWN {
            assert_eq!(sha.len(), 40);
            assert!(
                sha.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
    }

    #[test]
    fn redis_io_one_liner_is_known_by_sha_and_shape() {
        let text = br#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;
        let sha = sha1_hex(text);
        assert_eq!(sha, "b70c2384248f88e6b75b9f89241a180f856ad852");
        let reg = ScriptRegistry::new(&[]);
        assert_eq!(
            reg.spec(sha.as_bytes()).map(|s| s.kind),
            Some(Kind::Release)
        );
        assert!(reg.text(sha.as_bytes()).is_none());
        assert!(reg.learn(&sha, text));
        assert_eq!(reg.text(sha.as_bytes()).as_deref(), Some(&text[..]));
    }

    #[test]
    fn shapes_survive_spacing_and_case() {
        let text = b"IF redis.call('GET', KEYS[1]) == ARGV[1]\n  THEN return redis.call('DEL', KEYS[1]);\nELSE return 0 END";
        assert_eq!(recognise_shape(text).map(|s| s.kind), Some(Kind::Release));
        let ext = b"if redis.call('get', KEYS[1]) == ARGV[1] then\n return redis.call('pexpire', KEYS[1], ARGV[2])\nelse return 0 end";
        assert_eq!(recognise_shape(ext).map(|s| s.kind), Some(Kind::Extend));
        assert_eq!(recognise_shape(b"return redis.call('del', KEYS[1])"), None);
        let reg = ScriptRegistry::new(&[]);
        let sha = sha1_hex(text);
        assert!(reg.learn(&sha, text));
        assert_eq!(
            reg.spec(sha.as_bytes()).map(|s| s.kind),
            Some(Kind::Release)
        );
        reg.flush();
        assert!(reg.spec(sha.as_bytes()).is_none());
    }

    #[test]
    fn configured_scripts() {
        let sha = "0123456789abcdef0123456789abcdef01234567".to_string();
        let reg = ScriptRegistry::new(&[ScriptConfig {
            sha1: sha.to_uppercase().try_into().unwrap(),
            kind: ScriptKind::Extend,
            ttl_arg: std::num::NonZeroUsize::new(3),
            token_arg: std::num::NonZeroUsize::new(2),
            success: None,
            failure: None,
        }]);
        let s = reg.spec(sha.as_bytes()).unwrap();
        assert_eq!((s.kind, s.ttl_arg, s.token_arg), (Kind::Extend, Some(3), 2));
        assert_eq!(
            s.convention,
            Convention::Declared(ScriptSuccess::OkOrPositive, ScriptFailure::Error)
        );
        assert!(!reg.learn("ffffffffffffffffffffffffffffffffffffffff", b"return 1"));
    }
}
