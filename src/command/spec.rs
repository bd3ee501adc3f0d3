//! Command specs (arity, flags, key specs) and Redis's key-finding algorithm.
//!
//! The table itself is generated from redis-server's `COMMAND` output
//! (`table.rs`); this module only knows how to read it.

use super::table::COMMANDS;
use crate::protocol::{ArgList, parse_i64};

/// Command flag bits, a subset of Redis's command flags.
pub mod flags {
    /// The command may modify the keyspace.
    pub const WRITE: u32 = 1 << 0;
    /// The command only reads.
    pub const READONLY: u32 = 1 << 1;
    /// The command may block the client.
    pub const BLOCKING: u32 = 1 << 2;
    /// A pub/sub command.
    pub const PUBSUB: u32 = 1 << 3;
    /// Not allowed inside MULTI.
    pub const NO_MULTI: u32 = 1 << 4;
    /// An administrative command.
    pub const ADMIN: u32 = 1 << 5;
    /// Not allowed from scripts.
    pub const NOSCRIPT: u32 = 1 << 6;
    /// Keys can only be found by parsing the arguments.
    pub const MOVABLEKEYS: u32 = 1 << 7;
    /// Allowed before authentication.
    pub const NO_AUTH: u32 = 1 << 8;
    /// Allowed while the server loads its dataset.
    pub const LOADING: u32 = 1 << 9;
    /// Allowed on a stale replica.
    pub const STALE: u32 = 1 << 10;
}

/// Where the search for a key spec's first key starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeginSearch {
    /// At a fixed argument index.
    Index(i16),
    /// After a keyword, searched from `start_from` (negative: from the end, backwards).
    Keyword {
        /// The keyword, uppercase.
        keyword: &'static str,
        /// The index the search starts at.
        start_from: i16,
    },
    /// Keys cannot be located from the spec.
    Unknown,
}

/// How the keys continue after the first one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindKeys {
    /// A range of keys.
    Range {
        /// Index of the last key relative to the first (negative: from the end).
        last_key: i16,
        /// Distance between keys.
        key_step: i16,
        /// With `last_key == -1`, only 1/limit of the remaining args are keys.
        limit: i16,
    },
    /// The number of keys is given by an argument.
    KeyNum {
        /// Index of the key count, relative to the begin-search index.
        keynum_idx: i16,
        /// Index of the first key, relative to the begin-search index.
        first_key: i16,
        /// Distance between keys.
        key_step: i16,
    },
    /// Keys cannot be located from the spec.
    Unknown,
}

/// One Redis 7 key specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// Where the first key is.
    pub begin: BeginSearch,
    /// Where the others are.
    pub find: FindKeys,
    /// The spec may miss keys (Redis's `INCOMPLETE` flag, or an `unknown`
    /// search): the command's keys are found by [`super::getkeys`] instead.
    pub incomplete: bool,
}

/// What the proxy knows about one command.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name; subcommands are `container|sub`.
    pub name: &'static str,
    /// Redis arity: positive = exact argument count, negative = at least -arity.
    pub arity: i16,
    /// Bits from [`flags`].
    pub flags: u32,
    /// The command's key specs.
    pub key_specs: &'static [KeySpec],
    /// Subcommands, sorted by name, for container commands.
    pub subcommands: &'static [CommandSpec],
}

impl CommandSpec {
    /// Whether the command has the given flag bit.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    /// Whether the key specs find every key (no spec is incomplete).
    pub fn keys_complete(&self) -> bool {
        self.key_specs.iter().all(|ks| !ks.incomplete)
    }

    /// The subcommand's name, without the `container|` prefix.
    fn short_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
    }
}

fn find<'a>(table: &'a [CommandSpec], name: &[u8], short: bool) -> Option<&'a CommandSpec> {
    table
        .binary_search_by(|spec| {
            let n = if short { spec.short_name() } else { spec.name };
            cmp_ignore_ascii_case(n.as_bytes(), name)
        })
        .ok()
        .map(|i| &table[i])
}

fn cmp_ignore_ascii_case(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let n = a.len().min(b.len());
    for i in 0..n {
        let (x, y) = (a[i].to_ascii_lowercase(), b[i].to_ascii_lowercase());
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

/// Longest command name (all are shorter).
const MAX_NAME: usize = 32;

/// Slots of the name index: a power of two, over twice the number of
/// top-level commands, so probe runs stay short.
const SLOTS: usize = 1024;

/// A name's slot in the index: FNV-1a over its lower-cased bytes, top bits
/// (the multiplications mix into the high bits; the low ones collide more).
fn name_hash(lower: impl Iterator<Item = u8>) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lower {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    (h >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Top-level commands by lowercase name, in an open-addressing table (linear
/// probing). The lookup runs once per request; next to a `HashMap` (whose
/// hasher also runs over the key's length) it saves about 20 instructions of
/// some 150 per lookup (callgrind): small, and no more code than the map.
struct Index {
    /// Position in `COMMANDS` plus one; 0 is an empty slot.
    slots: Box<[u16; SLOTS]>,
}

fn index() -> &'static Index {
    static INDEX: std::sync::OnceLock<Index> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| {
        let mut slots = Box::new([0u16; SLOTS]);
        for (i, spec) in COMMANDS.iter().enumerate() {
            let mut at = name_hash(spec.name.bytes()) % SLOTS;
            while slots[at] != 0 {
                at = (at + 1) % SLOTS;
            }
            slots[at] = i as u16 + 1;
        }
        Index { slots }
    })
}

fn find_top(name: &[u8]) -> Option<&'static CommandSpec> {
    if name.len() > MAX_NAME {
        return None;
    }
    let mut buf = [0u8; MAX_NAME];
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_lowercase();
    }
    let lower = &buf[..name.len()];
    let slots = &index().slots;
    let mut at = name_hash(lower.iter().copied()) % SLOTS;
    loop {
        let spec = COMMANDS.get(usize::from(slots[at]).checked_sub(1)?)?;
        if spec.name.as_bytes() == lower {
            return Some(spec);
        }
        at = (at + 1) % SLOTS;
    }
}

/// Looks up a command, and its subcommand when it is a container (`OBJECT ENCODING`).
pub fn lookup<A: ArgList + ?Sized>(args: &A) -> Option<&'static CommandSpec> {
    let spec = find_top(args.get(0)?)?;
    if spec.subcommands.is_empty() {
        return Some(spec);
    }
    match args.get(1) {
        Some(sub) => find(spec.subcommands, sub, true).or(Some(spec)),
        None => Some(spec),
    }
}

/// Calls `f` with the index of every key argument of `args`, found with the
/// command's key specs the way Redis's `getKeysUsingKeySpecs` does (for
/// commands whose specs are incomplete, see [`super::getkeys`]). Indexes out
/// of range are clamped away rather than reported: the backend will reject such
/// a command anyway, and the caller only needs the keys that are present.
pub(super) fn for_each_spec_key<A: ArgList + ?Sized>(
    spec: &CommandSpec,
    args: &A,
    mut f: impl FnMut(usize),
) {
    let argc = args.len() as i64;
    for ks in spec.key_specs {
        let first = match ks.begin {
            BeginSearch::Index(i) => i as i64,
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => {
                let start = start_from as i64;
                let (from, to, step) = if start > 0 {
                    (start, argc - 1, 1)
                } else {
                    (argc + start, 1, -1)
                };
                let mut found = None;
                let mut i = from;
                while i >= 1 && i < argc {
                    if args
                        .arg(i as usize)
                        .eq_ignore_ascii_case(keyword.as_bytes())
                    {
                        found = Some(i + 1);
                        break;
                    }
                    if i == to {
                        break;
                    }
                    i += step;
                }
                match found {
                    Some(first) => first,
                    None => continue,
                }
            }
            BeginSearch::Unknown => continue,
        };
        let (first, last, step) = match ks.find {
            FindKeys::Range {
                last_key,
                key_step,
                limit,
            } => {
                let last = if last_key >= 0 {
                    first + last_key as i64
                } else if limit == 0 {
                    argc + last_key as i64
                } else {
                    first + ((argc - first) / limit as i64 + last_key as i64)
                };
                (first, last, key_step as i64)
            }
            FindKeys::KeyNum {
                keynum_idx,
                first_key,
                key_step,
            } => {
                let idx = first + keynum_idx as i64;
                let Some(n) = usize::try_from(idx).ok().and_then(|i| args.get(i)) else {
                    continue;
                };
                let Some(numkeys) = parse_i64(n).filter(|n| *n > 0) else {
                    continue;
                };
                let first = first + first_key as i64;
                (first, first + numkeys - 1, key_step as i64)
            }
            FindKeys::Unknown => continue,
        };
        if step <= 0 || first < 1 {
            continue;
        }
        let mut i = first;
        while i <= last && i < argc {
            f(i as usize);
            i += step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(args: &[&str]) -> Vec<String> {
        let spec = lookup(args).expect("known command");
        let mut out = Vec::new();
        for_each_spec_key(spec, args, |i| out.push(args[i].to_string()));
        out
    }

    #[test]
    fn finds_keys_like_redis() {
        assert_eq!(keys(&["GET", "a"]), ["a"]);
        assert_eq!(keys(&["set", "a", "v", "NX"]), ["a"]);
        assert_eq!(keys(&["MSET", "a", "1", "b", "2"]), ["a", "b"]);
        assert_eq!(keys(&["DEL", "a", "b", "c"]), ["a", "b", "c"]);
        assert_eq!(keys(&["EVAL", "s", "2", "k1", "k2", "arg"]), ["k1", "k2"]);
        assert_eq!(keys(&["evalsha", "s", "0", "arg"]), Vec::<String>::new());
        assert_eq!(keys(&["BLPOP", "a", "b", "0"]), ["a", "b"]);
        assert_eq!(
            keys(&["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]),
            ["s1", "s2"]
        );
        assert_eq!(keys(&["RENAME", "a", "b"]), ["a", "b"]);
        assert_eq!(keys(&["OBJECT", "ENCODING", "k"]), ["k"]);
        assert_eq!(keys(&["ZUNIONSTORE", "d", "2", "a", "b"]), ["d", "a", "b"]);
        assert_eq!(
            keys(&["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "dst"]),
            ["g", "dst"]
        );
        // The empty key slot of the KEYS form is a key spec of its own, as in Redis.
        assert_eq!(
            keys(&["MIGRATE", "h", "1", "", "0", "5", "KEYS", "a", "b"]),
            ["", "a", "b"]
        );
    }

    #[test]
    fn every_command_is_found_by_its_name_in_any_case() {
        assert!(COMMANDS.len() * 2 < SLOTS, "the index needs more slots");
        for spec in COMMANDS {
            let upper = spec.name.to_ascii_uppercase();
            assert!(std::ptr::eq(find_top(upper.as_bytes()).unwrap(), spec));
            assert!(std::ptr::eq(find_top(spec.name.as_bytes()).unwrap(), spec));
        }
        // Probe runs stay short: the lookup's cost is one or two compares.
        let slots = &index().slots;
        let probes = |spec: &CommandSpec| {
            let mut at = name_hash(spec.name.bytes()) % SLOTS;
            let mut n = 1;
            while !std::ptr::eq(&COMMANDS[usize::from(slots[at]) - 1], spec) {
                at = (at + 1) % SLOTS;
                n += 1;
            }
            n
        };
        let total: usize = COMMANDS.iter().map(probes).sum();
        assert!(
            total < COMMANDS.len() * 3 / 2,
            "{total} probes for {}",
            COMMANDS.len()
        );
        assert!(COMMANDS.iter().map(probes).max() <= Some(6));
        assert!(find_top(b"").is_none());
        assert!(find_top(b"sett").is_none());
        assert!(find_top(&[b'x'; 40]).is_none());
    }

    #[test]
    fn tolerates_malformed_arguments() {
        assert_eq!(keys(&["EVAL", "s", "5", "k1"]), ["k1"]);
        assert_eq!(keys(&["EVAL", "s", "x", "k1"]), Vec::<String>::new());
        assert_eq!(keys(&["EVAL"]), Vec::<String>::new());
        assert_eq!(keys(&["GET"]), Vec::<String>::new());
        assert!(lookup(&["NOSUCHCOMMAND"][..]).is_none());
    }
}
