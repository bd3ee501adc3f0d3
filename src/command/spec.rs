//! Command specs (arity, flags, key specs) and Redis's key-finding algorithm:
//! the types the generated table (`table.rs`) is written in. Finding a
//! command in the table by name is `lookup.rs`.

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

/// What ACL permission a key spec needs (Redis's key-spec flags, as
/// `ACLSelectorCheckKey` reads them), and whether it names keys at all.
pub mod access {
    /// The command reads the key's value (`ACCESS`): needs read permission.
    pub const READ: u8 = 1 << 0;
    /// The command inserts, deletes or updates (`INSERT`/`DELETE`/`UPDATE`):
    /// needs write permission.
    pub const WRITE: u8 = 1 << 1;
    /// Not a key (a shard channel, `NOT_KEY`): ACL key rules skip it.
    pub const NOT_KEY: u8 = 1 << 2;
    /// The flags depend on the arguments (`VARIABLE_FLAGS`: `SET ... GET`,
    /// `BITFIELD ... GET`); the ACL check reads them as Redis's getkeys does.
    pub const VARIABLE: u8 = 1 << 3;
}

/// ACL categories: [`NAMES`](category::NAMES)`[i]` is bit `i` of
/// [`CommandSpec::acl`], in the order `ACL CAT` lists them.
pub mod category {
    /// The categories' names, in `ACL CAT` order.
    pub const NAMES: [&str; 21] = [
        "keyspace",
        "read",
        "write",
        "set",
        "sortedset",
        "list",
        "hash",
        "string",
        "bitmap",
        "hyperloglog",
        "geo",
        "stream",
        "pubsub",
        "admin",
        "fast",
        "slow",
        "blocking",
        "dangerous",
        "connection",
        "transaction",
        "scripting",
    ];

    /// A category's bit, by name (any case).
    pub fn bit(name: &[u8]) -> Option<u32> {
        NAMES
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|i| 1 << i)
    }

    /// `@write`.
    pub const WRITE: u32 = 1 << 2;
    /// `@admin`.
    pub const ADMIN: u32 = 1 << 13;
    /// `@fast`.
    pub const FAST: u32 = 1 << 14;
    /// `@slow`.
    pub const SLOW: u32 = 1 << 15;
    /// `@dangerous`.
    pub const DANGEROUS: u32 = 1 << 17;
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
    /// Bits from [`access`].
    pub access: u8,
}

/// What the proxy knows about one command.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name; subcommands are `container|sub`.
    pub name: &'static str,
    /// A number of its own among every command and subcommand (below
    /// [`COUNT`](super::table::COUNT)): its bit in an ACL command bitmap.
    pub id: u16,
    /// Redis arity: positive = exact argument count, negative = at least -arity.
    pub arity: i16,
    /// Bits from [`flags`].
    pub flags: u32,
    /// Its ACL categories: bit `i` is the `i`th of `ACL CAT`'s list.
    pub acl: u32,
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
    pub(super) fn short_name(&self) -> &'static str {
        self.name.rsplit('|').next().unwrap_or(self.name)
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
    for ks in spec.key_specs {
        for_each_key_of(ks, args, &mut f);
    }
}

/// Calls `f` with the index of every key argument one key spec finds.
pub(super) fn for_each_key_of<A: ArgList + ?Sized>(
    ks: &KeySpec,
    args: &A,
    mut f: impl FnMut(usize),
) {
    let argc = args.len() as i64;
    {
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
                    None => return,
                }
            }
            BeginSearch::Unknown => return,
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
                    return;
                };
                let Some(numkeys) = parse_i64(n).filter(|n| *n > 0) else {
                    return;
                };
                let first = first + first_key as i64;
                (first, first + numkeys - 1, key_step as i64)
            }
            FindKeys::Unknown => return,
        };
        if step <= 0 || first < 1 {
            return;
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
    use super::super::lookup::lookup;
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
    fn tolerates_malformed_arguments() {
        assert_eq!(keys(&["EVAL", "s", "5", "k1"]), ["k1"]);
        assert_eq!(keys(&["EVAL", "s", "x", "k1"]), Vec::<String>::new());
        assert_eq!(keys(&["EVAL"]), Vec::<String>::new());
        assert_eq!(keys(&["GET"]), Vec::<String>::new());
        assert!(lookup(&["NOSUCHCOMMAND"][..]).is_none());
    }
}
