//! Finding a command's spec by its name (and subcommand) in the generated
//! table: an open-addressing index over `COMMANDS`, built once; and in the
//! proxy's own commands (`own.rs`), for ACL rules.

use super::own::OWN;
use super::spec::CommandSpec;
use super::table::COMMANDS;
use crate::protocol::ArgList;

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

/// [`lookup`], and the proxy's own commands (`LOCK.ACQUIRE`, `PROXY
/// MASTERS`...), which classification finds by name instead.
pub fn lookup_any<A: ArgList + ?Sized>(args: &A) -> Option<&'static CommandSpec> {
    lookup(args).or_else(|| {
        let spec = find(OWN, args.get(0)?, false)?;
        match args.get(1) {
            Some(sub) if !spec.subcommands.is_empty() => {
                find(spec.subcommands, sub, true).or(Some(spec))
            }
            _ => Some(spec),
        }
    })
}

/// A command or subcommand by its full name as ACL rules write it (`get`,
/// `config|get`, any case), the proxy's own included; `None` for an unknown
/// one (and for `container|unknown`).
pub fn by_full_name(name: &str) -> Option<&'static CommandSpec> {
    let (top, sub) = match name.split_once('|') {
        Some((top, sub)) => (top, Some(sub)),
        None => (name, None),
    };
    let spec = find_top(top.as_bytes()).or_else(|| find(OWN, top.as_bytes(), false))?;
    match sub {
        None => Some(spec),
        Some(sub) => find(spec.subcommands, sub.as_bytes(), true),
    }
}

/// Every top-level command, Redis's and then the proxy's own.
pub fn every() -> impl Iterator<Item = &'static CommandSpec> {
    COMMANDS.iter().chain(OWN)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
