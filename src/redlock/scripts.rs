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

use crate::config::{ScriptConfig, ScriptKind};

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
    /// `[value or nil, pttl]` (redlock-rb).
    ValuePttl,
    /// Scripts declared in the configuration: success is `OK` or a positive
    /// integer, and the reply is the one the masters gave (a successful one when
    /// a quorum succeeded).
    Generic,
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
    /// The TTL argument is in seconds (EXPIRE), not milliseconds.
    pub ttl_in_seconds: bool,
    /// Library and purpose, for messages.
    pub origin: &'static str,
}

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
        ttl_in_seconds: false,
        origin,
    }
}

use Convention as C;
use Kind as K;

const REDISSON: &str = "Redisson RLock keeps reentrancy counters in a hash, wakes waiters with PUBLISH from inside its scripts and renews many locks in one script: none of this can be voted on across independent masters";
const PUBSUB_LOCK: &str = "Spring Integration's PUB_SUB_LOCK publishes the unlock notification from the script, which every master would repeat; use the SPIN_LOCK type";

/// Lock scripts of known client libraries, by SHA1 (from `lock-scripts.tsv`).
pub static KNOWN: &[(&str, ScriptSpec)] = &[
    (
        "00583931c4e4d483f6233879c133c71ed5393f9d",
        spec(K::Release, C::Count, None, "redsync release"),
    ),
    (
        "009e6775acf362b837433e2ab6f2b772e391079e",
        spec(K::Extend, C::OkErr, Some(2), "redsync v1 extend"),
    ),
    (
        "0f0f23b9048b36752b5be114f357ba083449f908",
        spec(K::Release, C::Count, None, "node-redlock 4.2 release"),
    ),
    (
        "149c5a8bf18676fd99e9e6e24923bd64d9b62f94",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock acquire",
        ),
    ),
    (
        "175897a4e379e99e79a54937be09226f76cdcfe5",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "17a49af0c4b1a9034503fa84f3570f5ca76c4cbf",
        spec(K::Extend, C::OneZero, Some(2), "rslock extend"),
    ),
    (
        "194f3902b2dd08557818d09fc2e7682d91480e53",
        spec(K::Release, C::Count, None, "ShedLock / redis.io release"),
    ),
    (
        "1cac51482acf5858da00f6d685d68f886cd6b6b2",
        spec(K::Extend, C::OneZero, Some(2), "redis-py reacquire"),
    ),
    (
        "1d48b4c6fea2cdadc46b3346de5c2eaf121c7bb3",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.1 extend"),
    ),
    (
        "20b5c3728736e2367b496c16390f9df56916a76f",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "307044d49c8f033fbb885e9e0f1b7fe9e0e60675",
        spec(K::Extend, C::OneZero, Some(2), "pottery extend"),
    ),
    (
        "356d97191f2b63031781ccc0e8e82f02e1995a90",
        spec(K::Release, C::OneNil, None, "Spring SPIN_LOCK release"),
    ),
    (
        "4a484ac024e9b025224cd9f8e1d59dbf3c15d00d",
        spec(K::Extend, C::OneZero, Some(2), "redis-py extend"),
    ),
    (
        "4d7192f70618a620282e427698f9cde890151e58",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "4e92fdc63815b3a0a2dd1c1df3694de73607c88d",
        spec(K::Release, C::Count, None, "redlock-py unlock"),
    ),
    (
        "517e7ed95f00c0c4a209c6a7afcc6ab797d30b85",
        spec(K::Release, C::Count, None, "node-redlock 4.0 release"),
    ),
    (
        "53692746b44cae854b8dfa32b177218bbe40baee",
        spec(K::Extend, C::OneZero, Some(2), "redsync extend"),
    ),
    (
        "544c68b7ffd46e5d7ccc58a27204557efba43310",
        spec(K::Release, C::Count, None, "redlock-rs unlock"),
    ),
    (
        "5688a2541c9edd77746bcd2385e65ff3639a664f",
        spec(
            K::Acquire,
            C::OneZero,
            Some(2),
            "redis-py 2.10 LuaLock acquire",
        ),
    ),
    (
        "5a22d7e8431313862816d4416b5e46dd70fc340d",
        spec(K::Extend, C::OkNil, Some(2), "bsm/redislock refresh"),
    ),
    (
        "605e338249a7a1d40df83b04f7658354f883b41b",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock forceUnlock",
        ),
    ),
    (
        "647c65a442733a1aa440f99908d249d13b4d6c4a",
        spec(K::Release, C::Count, None, "redis.io release"),
    ),
    (
        "6484da7d58920897fdc22b7f9afd1a3d47524ea8",
        spec(K::Query, C::PttlOrMinus3, None, "bsm/redislock TTL"),
    ),
    (
        "66e1084c2d842a7e8c271925aae90219fac4e129",
        spec(K::Query, C::PttlOrNil, None, "bsm/redislock TTL"),
    ),
    (
        "67256370c2d1c87e2250898075542b1a7fa5b917",
        spec(K::Extend, C::OneZero, Some(2), "ShedLock extend"),
    ),
    (
        "67aebbcba76d9674162e8906de1f669866f48e07",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "6866459238a13a701d42f4971f12d9f3a50e2442",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson RLock release",
        ),
    ),
    (
        "6a3d31570dc6f4b0bd32bcdc8e75667747c6f635",
        spec(
            K::Unsupported(REDISSON),
            C::OneZero,
            None,
            "Redisson watchdog renewal",
        ),
    ),
    (
        "6d2bc6d16248df19e144841297222544e3c7800a",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "78d2ca48a6dc9ef6892059792a3a0c5237733d64",
        spec(K::Query, C::ValuePttl, None, "redlock-rb TTL"),
    ),
    (
        "7a71e9443a2a41539fb115a5a27d5a748a871aed",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "80a1b5f2cfccec3b7119ba7721d2127682b691a7",
        spec(K::Acquire, C::OkNil, Some(3), "bsm/redislock obtain"),
    ),
    (
        "8426c8df41c64d8177dce3ecbbe9146ef3759cd2",
        spec(
            K::Acquire,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry acquire",
        ),
    ),
    (
        "862f31bf38e9b63ce28d6e9e5143551bb34ef981",
        spec(K::Acquire, C::OkNil, Some(2), "node-redlock 2-3 acquire"),
    ),
    (
        "879e0f7b8d83c3266d4e996627438c05dbda0b89",
        spec(
            K::Extend,
            C::OneNil,
            Some(2),
            "Spring RedisLockRegistry renew",
        ),
    ),
    (
        "8e4905cee18e7c3188d10f2b8b170e403baed34f",
        spec(K::Release, C::Count, None, "redlock-rb unlock"),
    ),
    (
        "9470c810040e272ee6c579d8d4331aaf6332a7b1",
        spec(K::Release, C::OkNil, None, "bsm/redislock release"),
    ),
    (
        "963db4d9f0ccfdb859098be0b29f8b41dc02ed97",
        spec(K::Release, C::Count, None, "redlock-rb unlock"),
    ),
    (
        "96da70f7716f27d278a5218544df37fd8b0a5e4c",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 5 acquire"),
    ),
    (
        "a2c2e4c111924caec00216d4881ed37a644435ce",
        ScriptSpec {
            ttl_in_seconds: true,
            ..spec(K::Extend, C::OneZero, Some(2), "node-redlock 0.2 extend")
        },
    ),
    (
        "a4aada0b36710970eedaaaeec4a6b7d8c78c4f80",
        spec(K::Release, C::Count, None, "pottery release"),
    ),
    (
        "a4e8783852e6b949f9ef3a97212805108459a890",
        spec(K::Extend, C::OneZero, Some(2), "redis-py extend"),
    ),
    (
        "a7aba3bc5d6e99b3003da8b9d80a63b9f4092ecf",
        spec(
            K::Extend,
            C::OneZero,
            Some(2),
            "bsm/redislock refresh, node-redlock extend",
        ),
    ),
    (
        "a90bf4be8a6e440e3cc24540eb2f9ff1e16fbcc3",
        spec(K::AcquireOrExtend, C::OkNil, Some(2), "redlock-rb lock"),
    ),
    (
        "acaf90b4697bb48bb5f603e9e613a54df7536c70",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.0 extend"),
    ),
    (
        "aed6f382e410db8ba7926d4e5e9aab410bf2a78a",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 5 extend"),
    ),
    (
        "b2dedc0ab01c17f9f20e3e6ddb62dcb6afbed0bd",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release fallback",
        ),
    ),
    (
        "b6b55c439e02c6f52ffb8be7ec8c0d0ac816ea79",
        spec(
            K::Extend,
            C::OneZero,
            Some(2),
            "redsync extend-or-reacquire",
        ),
    ),
    (
        "b70c2384248f88e6b75b9f89241a180f856ad852",
        spec(K::Release, C::Count, None, "redis.io release (one line)"),
    ),
    (
        "ba015a80261b616e7a62d35df0b8e3edbe6c9414",
        spec(K::Extend, C::OneZero, Some(2), "pottery extend"),
    ),
    (
        "bd75051e9049411d4a96c0df196ac2667d38f481",
        spec(K::Release, C::Count, None, "redis.io release (SET page)"),
    ),
    (
        "c1ae6c899d164de076f40ffe82eba8fb8e27af6c",
        spec(
            K::Unsupported(PUBSUB_LOCK),
            C::OneNil,
            None,
            "Spring PUB_SUB_LOCK release",
        ),
    ),
    (
        "c3f8721cbb97f72bc19e972846bd7aaf91901658",
        spec(K::Release, C::Count, None, "redis-py release"),
    ),
    (
        "cd1ae9bb543136ebc0a80a277cd59a7cec83b296",
        spec(K::Query, C::ValuePttl, None, "redlock-rb TTL"),
    ),
    (
        "ce46f80993d5dac20dd066eb301a4e37994bdbed",
        spec(K::Extend, C::KeysZero, Some(2), "node-redlock 4.2 extend"),
    ),
    (
        "ceb2b2062e40c51a2b3963fd078bc71f11bdc65c",
        spec(K::AcquireOrExtend, C::OkNil, Some(2), "redlock-rb lock"),
    ),
    (
        "cf0e94b2e9ffc7e04395cf88f7583fc309985910",
        spec(
            K::Release,
            C::Count,
            None,
            "bsm/redislock, node-redlock release",
        ),
    ),
    (
        "d01fb69e6ecc8bad3ca9bacba9f4f9e96862313f",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 4.0 acquire"),
    ),
    (
        "d141b64a0a43e66a8576edaea6123638c0d74b31",
        spec(K::Release, C::Count, None, "pottery release"),
    ),
    (
        "d75bb8b5bd13532ddedd17762e772346e39b321e",
        spec(K::Extend, C::OneZero, Some(2), "redsync extend"),
    ),
    (
        "daf86bbf8740dd3ca86733367a016364b2110627",
        spec(K::Release, C::Count, None, "rslock unlock"),
    ),
    (
        "e4612211c9f8f51c257e26e056b0a654b3187242",
        spec(K::Release, C::Count, None, "node-redlock 5 release"),
    ),
    (
        "e5a322e2634ef59a516e8ea150cb085afafee684",
        spec(K::Acquire, C::KeysZero, Some(2), "node-redlock 4.2 acquire"),
    ),
    (
        "e950836ed1e694540c503ef9972b8de518044d3b",
        spec(K::Release, C::RedsyncRelease, None, "redsync release"),
    ),
    (
        "eb0c00d98f6f33b4262419a509002884540f30be",
        spec(K::Acquire, C::OkNil, Some(3), "bsm/redislock obtain"),
    ),
    (
        "edd478c3e9deb21a48d55681748153e3711d50b2",
        spec(K::Release, C::Count, None, "redlock-rs unlock"),
    ),
    (
        "f0f9038aa2b6d6c3436c72d147573ea2a58f0ef2",
        spec(K::Release, C::OneNil, None, "Spring SPIN_LOCK release"),
    ),
    (
        "f458acd98fe495b8e4ff97c0f53f745f2c4aa252",
        spec(K::Query, C::PttlOrZero, None, "pottery locked"),
    ),
    (
        "f5f7bd3a3aa4a63c507c1155c5ea1219b350d992",
        spec(K::Query, C::PttlOrZero, None, "pottery locked"),
    ),
    (
        "fc03c85cef965af38f17fef05d68cc66c7d85c96",
        spec(K::Release, C::Count, None, "PyPI redlock release"),
    ),
];

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
    match c.kind {
        ScriptKind::Acquire => spec(
            Kind::Acquire,
            Convention::Generic,
            ttl_arg,
            "configured acquire",
        ),
        ScriptKind::Extend => spec(
            Kind::Extend,
            Convention::Generic,
            ttl_arg,
            "configured extend",
        ),
        ScriptKind::Query => spec(
            Kind::Query,
            Convention::PttlOrZero,
            None,
            "configured query",
        ),
        ScriptKind::Release => spec(Kind::Release, Convention::Count, None, "configured release"),
    }
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
        }]);
        let s = reg.spec(sha.as_bytes()).unwrap();
        assert_eq!((s.kind, s.ttl_arg), (Kind::Extend, Some(3)));
        assert!(!reg.learn("ffffffffffffffffffffffffffffffffffffffff", b"return 1"));
    }
}
