//! Where a forwarded command goes in a cluster backend, decided from its
//! arguments alone (pure): the node of its keys' slot, split per slot, every
//! master, any one master, or refused.
//!
//! The keyless commands' table (documented in the book's "Redis Cluster
//! backend" section) follows what a single Redis would answer where a merge
//! can give it: counts add up (`DBSIZE`), lists concatenate (`KEYS`), writes
//! to every node succeed everywhere or report the first error (`FLUSHALL`,
//! `SCRIPT LOAD`), `SCAN` walks the masters one after the other with a cursor
//! that names the node. What concerns one connection (`WAIT`, `CLIENT KILL`,
//! `READONLY` ...) or the cluster's administration is refused.

use super::gather::Merge;
use crate::backend::cluster::key_slot;
use crate::command::{CommandSpec, KeyArg, for_each_key};
use crate::errors;
use crate::protocol::{ArgList, Reply};

/// Where one command goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// The master of this slot.
    Slot(u16),
    /// One master, any (keyless commands that read node-local facts, or that
    /// the proxy does not know: a node's `MOVED` corrects a wrong guess).
    Any,
    /// One sub-command per slot, replies merged.
    Split(Split),
    /// Every master, replies merged.
    All(Merge),
    /// `SCAN`, one master at a time.
    Scan,
    /// Not sent: this error instead.
    Refuse(Reply),
}

/// A multi-key command split by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Split {
    /// Per part: its slot and the arguments (indices, after the command name)
    /// it carries.
    pub(crate) parts: Vec<(u16, Vec<usize>)>,
    /// How the parts' replies merge.
    pub(crate) merge: Merge,
}

/// The commands split per slot when their keys span slots, as a cluster proxy
/// does: `MGET` and `MSET` by key, the counting ones by adding up.
fn split<A: ArgList + ?Sized>(name: &[u8], args: &A, keys: &[(usize, u16)]) -> Option<Split> {
    let per_key = match name {
        b"MGET" | b"DEL" | b"UNLINK" | b"EXISTS" | b"TOUCH" => 1,
        b"MSET" => 2,
        _ => return None,
    };
    // Every argument after the name is a key (or a key and its value).
    if keys.len() * per_key != args.len() - 1 {
        return None;
    }
    let mut parts: Vec<(u16, Vec<usize>)> = Vec::new();
    for &(i, slot) in keys {
        let at = match parts.iter().position(|p| p.0 == slot) {
            Some(at) => at,
            None => {
                parts.push((slot, Vec::new()));
                parts.len() - 1
            }
        };
        parts[at].1.extend(i..i + per_key);
    }
    let merge = match name {
        b"MGET" => Merge::Mget(
            parts
                .iter()
                .map(|(_, a)| a.iter().map(|i| i - 1).collect())
                .collect(),
        ),
        b"MSET" => Merge::AllOk,
        _ => Merge::Sum,
    };
    Some(Split { parts, merge })
}

/// Decides where `args` (a forwarded command, name upper-cased in `name`,
/// `spec` its entry in the command table) goes.
pub(crate) fn plan<A: ArgList + ?Sized>(name: &[u8], spec: Option<&CommandSpec>, args: &A) -> Plan {
    let Some(spec) = spec else {
        return Plan::Any;
    };
    // One pass, no allocation, for the usual case: every key in one slot.
    let (mut first, mut one_slot) = (None, true);
    for_each_key(spec, args, |k| {
        if let KeyArg::Key(i) = k {
            let slot = key_slot(args.arg(i));
            one_slot &= *first.get_or_insert(slot) == slot;
        }
    });
    match (first, one_slot) {
        (Some(slot), true) => Plan::Slot(slot),
        (Some(_), false) => {
            let mut keys: Vec<(usize, u16)> = Vec::new();
            for_each_key(spec, args, |k| {
                if let KeyArg::Key(i) = k {
                    keys.push((i, key_slot(args.arg(i))));
                }
            });
            match split(name, args, &keys) {
                Some(s) => Plan::Split(s),
                None => Plan::Refuse(errors::crossslot()),
            }
        }
        (None, _) => keyless(name, args),
    }
}

/// A command or subcommand name upper-cased into `buf`, without allocating
/// (longer names, which no command has, come out empty and match nothing).
pub(crate) fn upper<'a>(name: &[u8], buf: &'a mut [u8; 24]) -> &'a [u8] {
    let Some(out) = buf.get_mut(..name.len()) else {
        return b"";
    };
    out.copy_from_slice(name);
    out.make_ascii_uppercase();
    out
}

fn keyless<A: ArgList + ?Sized>(name: &[u8], args: &A) -> Plan {
    let mut buf = [0u8; 24];
    let sub = upper(args.get(1).unwrap_or_default(), &mut buf);
    match (name, sub) {
        // The node of the channel's slot: where a subscriber through the proxy
        // listens, so the count it returns includes them.
        (b"PUBLISH", _) if args.len() == 3 => Plan::Slot(key_slot(args.arg(1))),
        (b"DBSIZE", _) => Plan::All(Merge::Sum),
        (b"KEYS", _) => Plan::All(Merge::Concat),
        (b"RANDOMKEY", _) => Plan::All(Merge::AnyNonNil),
        (b"SCAN", _) if args.len() >= 2 => Plan::Scan,
        (b"FLUSHALL" | b"FLUSHDB", _) => Plan::All(Merge::AllOk),
        (b"SCRIPT", b"LOAD" | b"FLUSH") => Plan::All(Merge::AllOk),
        (b"SCRIPT", b"EXISTS") => Plan::All(Merge::Every),
        (b"SCRIPT" | b"FUNCTION", b"KILL") => Plan::All(Merge::AnyOk),
        (b"FUNCTION", b"LOAD" | b"DELETE" | b"FLUSH" | b"RESTORE") => Plan::All(Merge::AllOk),
        (b"CONFIG", b"SET" | b"RESETSTAT") => Plan::All(Merge::AllOk),
        (b"CLUSTER", b"INFO" | b"KEYSLOT" | b"SHARDS" | b"SLOTS" | b"NODES" | b"MYID") => Plan::Any,
        (
            b"WAIT" | b"WAITAOF" | b"CLIENT" | b"READONLY" | b"READWRITE" | b"ASKING" | b"CLUSTER"
            | b"SYNC" | b"PSYNC" | b"REPLCONF" | b"SHUTDOWN" | b"FAILOVER" | b"REPLICAOF"
            | b"SLAVEOF" | b"DEBUG" | b"SWAPDB" | b"MONITOR",
            _,
        ) => Plan::Refuse(errors::not_through_cluster(args.arg(0))),
        _ => Plan::Any,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::lookup;

    fn p(args: &[&str]) -> Plan {
        plan(args[0].to_ascii_uppercase().as_bytes(), lookup(args), args)
    }

    #[test]
    fn one_slot_goes_to_its_node() {
        assert_eq!(p(&["GET", "foo"]), Plan::Slot(12182));
        assert_eq!(
            p(&["MSET", "{t}a", "1", "{t}b", "2"]),
            Plan::Slot(key_slot(b"t"))
        );
        assert_eq!(p(&["EVAL", "return 1", "1", "foo"]), Plan::Slot(12182));
        assert_eq!(p(&["EVAL", "return 1", "0"]), Plan::Any);
        assert_eq!(p(&["NOSUCH.MODULECMD", "x"]), Plan::Any);
    }

    #[test]
    fn multi_key_commands_split_by_slot_or_are_refused() {
        let Plan::Split(s) = p(&["MGET", "foo", "bar", "{foo}x"]) else {
            panic!("MGET splits")
        };
        assert_eq!(s.parts, vec![(12182, vec![1, 3]), (5061, vec![2])]);
        assert_eq!(s.merge, Merge::Mget(vec![vec![0, 2], vec![1]]));
        let Plan::Split(s) = p(&["MSET", "foo", "1", "bar", "2"]) else {
            panic!("MSET splits")
        };
        assert_eq!(s.parts, vec![(12182, vec![1, 2]), (5061, vec![3, 4])]);
        assert_eq!(s.merge, Merge::AllOk);
        assert!(matches!(
            p(&["DEL", "foo", "bar"]),
            Plan::Split(Split {
                merge: Merge::Sum,
                ..
            })
        ));
        for cross in [
            &["MSETNX", "foo", "1", "bar", "2"][..],
            &["RENAME", "foo", "bar"],
            &["SUNION", "foo", "bar"],
        ] {
            assert_eq!(p(cross), Plan::Refuse(errors::crossslot()), "{cross:?}");
        }
    }

    #[test]
    fn keyless_commands_follow_the_table() {
        assert_eq!(p(&["DBSIZE"]), Plan::All(Merge::Sum));
        assert_eq!(p(&["keys", "*"]), Plan::All(Merge::Concat));
        assert_eq!(p(&["SCAN", "0"]), Plan::Scan);
        assert_eq!(p(&["script", "load", "return 1"]), Plan::All(Merge::AllOk));
        assert_eq!(p(&["INFO"]), Plan::Any);
        assert_eq!(p(&["PUBLISH", "foo", "m"]), Plan::Slot(12182));
        assert_eq!(p(&["CLUSTER", "KEYSLOT", "x"]), Plan::Any);
        assert!(matches!(p(&["WAIT", "1", "0"]), Plan::Refuse(_)));
        assert!(matches!(p(&["CLUSTER", "FAILOVER"]), Plan::Refuse(_)));
    }
}
