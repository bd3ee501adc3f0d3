//! Every key of every command: the key specs where they are complete, and for
//! the commands whose specs may miss keys (`SORT`, `SORT_RO`, `MIGRATE`), the
//! arguments read the way the command itself reads them.
//!
//! Redis finds those commands' keys with hand-written "getkeys procs". Where
//! a proc and its command disagree (`SORT l STORE by STORE k` stores into `k`,
//! which `sortGetKeys` misses), this module follows the command: what matters
//! is what the backend would touch.

use super::spec::{
    BeginSearch, CommandSpec, FindKeys, KeySpec, access, for_each_key_of, for_each_spec_key,
};
use crate::protocol::ArgList;

/// One argument that names a key, or may form keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyArg {
    /// The argument at this index is a key.
    Key(usize),
    /// The argument at `arg` is a `SORT ... BY/GET` pattern: it forms the keys
    /// `arg[..star] + element + arg[star + 1..end]` for elements of the sorted
    /// key (what follows `end` is a `->field` of a hash).
    Pattern {
        /// The argument's index.
        arg: usize,
        /// Where its first `*` is.
        star: usize,
        /// Where the key part ends.
        end: usize,
    },
}

/// The commands (table names) whose keys are found by parsing here, because
/// some of their key specs are incomplete. `tests/it/command_table.rs` checks
/// that this is exactly the table's list.
pub const PARSED: &[&str] = &["migrate", "sort", "sort_ro"];

/// Calls `f` with every key argument of `args`, and every pattern that forms
/// keys.
pub fn for_each_key<A: ArgList + ?Sized>(spec: &CommandSpec, args: &A, mut f: impl FnMut(KeyArg)) {
    if spec.keys_complete() {
        return for_each_spec_key(spec, args, |i| f(KeyArg::Key(i)));
    }
    match spec.name {
        "sort" => sort(args, false, f),
        "sort_ro" => sort(args, true, f),
        "migrate" => migrate(args, f),
        // A table from a newer Redis with another incomplete command: its
        // complete specs still count (the table test names it for a parser).
        _ => for_each_spec_key(spec, args, |i| f(KeyArg::Key(i))),
    }
}

/// Calls `f` with every key argument of `args` and the permission it needs
/// ([`access`] bits: read, write), as Redis's ACL check finds them: each key
/// spec's own flags; `SET` and `BITFIELD` read their arguments for them
/// (`VARIABLE_FLAGS`, as `setGetKeys`/`bitfieldGetKeys` do); shard channels
/// are no keys.
pub fn for_each_key_access<A: ArgList + ?Sized>(
    spec: &CommandSpec,
    args: &A,
    mut f: impl FnMut(usize, u8),
) {
    let rw = access::READ | access::WRITE;
    // Most commands name one key at a fixed place (`GET k`, `SET k v`,
    // `HSET k f v`): found without the general walk.
    if let [
        KeySpec {
            begin: BeginSearch::Index(at),
            find: FindKeys::Range { last_key: 0, .. },
            incomplete: false,
            access: flags,
        },
    ] = spec.key_specs
    {
        let at = usize::try_from(*at).unwrap_or(0);
        if flags & access::NOT_KEY == 0 && at >= 1 && at < args.len() {
            let need = if flags & access::VARIABLE == 0 {
                flags & rw
            } else {
                variable_access(spec.name, args)
            };
            f(at, need);
        }
        return;
    }
    if !spec.keys_complete() {
        // `SORT` reads its key and writes its `STORE` destination (as
        // `sortGetKeys` flags them); `MIGRATE` reads and deletes each.
        let sort = matches!(spec.name, "sort" | "sort_ro");
        let need = spec.key_specs.iter().fold(0, |a, ks| a | ks.access) & rw;
        return for_each_key(spec, args, |k| {
            if let KeyArg::Key(i) = k {
                f(
                    i,
                    match (sort, i) {
                        (true, 1) => access::READ,
                        (true, _) => access::WRITE,
                        (false, _) => need,
                    },
                );
            }
        });
    }
    for ks in spec.key_specs {
        if ks.access & access::NOT_KEY != 0 {
            continue;
        }
        let need = if ks.access & access::VARIABLE == 0 {
            ks.access & rw
        } else {
            variable_access(spec.name, args)
        };
        for_each_key_of(ks, args, |i| f(i, need));
    }
}

/// `SET key value ... GET` reads and writes, without `GET` it only writes;
/// `BITFIELD` with only `GET`s (and `OVERFLOW`s) reads, otherwise it reads and
/// writes (a syntax error counts as a write, as in Redis).
fn variable_access<A: ArgList + ?Sized>(name: &str, args: &A) -> u8 {
    let rw = access::READ | access::WRITE;
    match name {
        "set" => {
            if (3..args.len()).any(|i| is(args.arg(i), "get")) {
                rw
            } else {
                access::WRITE
            }
        }
        "bitfield" => {
            let mut i = 2;
            while i < args.len() {
                let left = args.len() - i - 1;
                let a = args.arg(i);
                if is(a, "get") && left >= 2 {
                    i += 3;
                } else if is(a, "overflow") && left >= 1 {
                    i += 2;
                } else {
                    return rw;
                }
            }
            access::READ
        }
        _ => rw,
    }
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC]
/// [ALPHA] [STORE destination]`, read as `sortCommandGeneric` reads it: the
/// last `STORE` wins. After a syntax error the command does nothing, so
/// nothing after it matters.
fn sort<A: ArgList + ?Sized>(args: &A, readonly: bool, mut f: impl FnMut(KeyArg)) {
    let n = args.len();
    if n < 2 {
        return;
    }
    f(KeyArg::Key(1));
    let mut store = None;
    let mut j = 2;
    while j < n {
        let left = n - j - 1;
        let a = args.arg(j);
        if is(a, "ASC") || is(a, "DESC") || is(a, "ALPHA") {
        } else if is(a, "LIMIT") && left >= 2 {
            j += 2;
        } else if !readonly && is(a, "STORE") && left >= 1 {
            store = Some(j + 1);
            j += 1;
        } else if (is(a, "BY") || is(a, "GET")) && left >= 1 {
            if let Some(p) = pattern(j + 1, args.arg(j + 1)) {
                f(p);
            }
            j += 1;
        } else {
            break;
        }
        j += 1;
    }
    if let Some(s) = store {
        f(KeyArg::Key(s));
    }
}

/// The keys a `BY`/`GET` pattern forms, as `lookupKeyByPattern` forms them:
/// none for `#` (the element itself) or a pattern without `*`.
fn pattern(arg: usize, p: &[u8]) -> Option<KeyArg> {
    if p == b"#" {
        return None;
    }
    let star = p.iter().position(|&c| c == b'*')?;
    let end = p[star + 1..]
        .windows(2)
        .position(|w| w == b"->")
        .map(|i| star + 1 + i)
        .filter(|&i| i + 2 < p.len())
        .unwrap_or(p.len());
    Some(KeyArg::Pattern { arg, star, end })
}

/// `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw | AUTH2 user
/// pw] [KEYS key ...]`, read as `migrateCommand` reads it.
fn migrate<A: ArgList + ?Sized>(args: &A, mut f: impl FnMut(KeyArg)) {
    let n = args.len();
    if n < 4 {
        return;
    }
    f(KeyArg::Key(3));
    let mut j = 6;
    while j < n {
        let more = n - 1 - j;
        let a = args.arg(j);
        if is(a, "COPY") || is(a, "REPLACE") {
        } else if is(a, "AUTH") && more >= 1 {
            j += 1;
        } else if is(a, "AUTH2") && more >= 2 {
            j += 2;
        } else if is(a, "KEYS") {
            (j + 1..n).for_each(|k| f(KeyArg::Key(k)));
            return;
        } else {
            return;
        }
        j += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn keys(args: &[&str]) -> (Vec<String>, Vec<String>) {
        let spec = lookup(args).expect("known command");
        let (mut keys, mut patterns) = (Vec::new(), Vec::new());
        for_each_key(spec, args, |k| match k {
            KeyArg::Key(i) => keys.push(args[i].to_string()),
            KeyArg::Pattern { arg, star, end } => {
                let p = args[arg];
                patterns.push(format!("{}|{}", &p[..star], &p[star + 1..end]));
            }
        });
        (keys, patterns)
    }

    #[test]
    fn sort_keys_and_patterns() {
        assert_eq!(keys(&["SORT", "l"]).0, ["l"]);
        assert_eq!(keys(&["SORT", "l", "STORE", "d"]).0, ["l", "d"]);
        assert_eq!(
            keys(&["sort", "l", "LIMIT", "0", "STORE", "ALPHA", "store", "d"]).0,
            ["l", "d"]
        );
        // The last STORE wins, and an option's argument is never an option.
        assert_eq!(
            keys(&["SORT", "l", "STORE", "by", "STORE", "k"]).0,
            ["l", "k"]
        );
        assert_eq!(keys(&["SORT", "l", "BY", "STORE", "GET", "x"]).0, ["l"]);
        // SORT_RO has no STORE.
        assert_eq!(keys(&["SORT_RO", "l", "STORE", "d"]).0, ["l"]);
        let (_, patterns) = keys(&[
            "SORT", "l", "BY", "w_*", "GET", "#", "GET", "h_*->f", "GET", "nostar", "GET",
            "a*b*->", "GET", "*->x->y",
        ]);
        assert_eq!(patterns, ["w_|", "h_|", "a|b*->", "|"]);
    }

    #[test]
    fn migrate_keys() {
        assert_eq!(keys(&["MIGRATE", "h", "1", "k", "0", "5"]).0, ["k"]);
        assert_eq!(
            keys(&["MIGRATE", "h", "1", "", "0", "5", "COPY", "KEYS", "a", "b"]).0,
            ["", "a", "b"]
        );
        // A password that reads KEYS is a password; the key spec would miss `a`.
        assert_eq!(
            keys(&[
                "MIGRATE", "h", "1", "", "0", "5", "AUTH2", "u", "KEYS", "KEYS", "a", "KEYS", "b"
            ])
            .0,
            ["", "a", "KEYS", "b"]
        );
    }
}
