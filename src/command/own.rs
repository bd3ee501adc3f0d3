//! The proxy's own commands (`LOCK.*`, `RWLOCK.*`, `SEMAPHORE.*`, `PROXY`),
//! described the way the generated table describes Redis's: ACL rules name
//! them (`+lock.acquire`, `-proxy|config`), `+@write` covers the lock
//! commands, `ACL CAT write` lists them, and their key is checked against a
//! user's key patterns like any command's.

use super::spec::{BeginSearch, CommandSpec, FindKeys, KeySpec, access, category as cat};
use super::table::COUNT;

/// The key at argument 1, written: every lock command takes, renews or
/// releases something (fencing counts as a write too).
const KEY1_WRITE: &[KeySpec] = &[KeySpec {
    begin: BeginSearch::Index(1),
    find: FindKeys::Range {
        last_key: 0,
        key_step: 1,
        limit: 0,
    },
    incomplete: false,
    access: access::WRITE,
}];

const fn lock(name: &'static str, id: u16, arity: i16) -> CommandSpec {
    CommandSpec {
        name,
        id: COUNT + id,
        arity,
        flags: super::spec::flags::WRITE,
        acl: cat::WRITE | cat::SLOW,
        key_specs: KEY1_WRITE,
        subcommands: &[],
    }
}

const fn proxy_sub(name: &'static str, id: u16, acl: u32) -> CommandSpec {
    CommandSpec {
        name,
        id: COUNT + id,
        arity: 2,
        flags: 0,
        acl,
        key_specs: &[],
        subcommands: &[],
    }
}

/// The proxy's own commands, sorted by name (lowercase), with ids after the
/// table's.
pub(super) static OWN: &[CommandSpec] = &[
    lock("lock.acquire", 0, 4),
    lock("lock.fence", 1, 3),
    CommandSpec {
        name: "proxy",
        id: COUNT + 2,
        arity: -2,
        flags: 0,
        acl: cat::SLOW,
        key_specs: &[],
        subcommands: &[
            // The effective configuration (passwords redacted), as `CONFIG GET`.
            proxy_sub("proxy|config", 3, cat::ADMIN | cat::SLOW | cat::DANGEROUS),
            proxy_sub("proxy|help", 4, cat::SLOW),
            proxy_sub("proxy|masters", 5, cat::ADMIN | cat::SLOW),
        ],
    },
    lock("rwlock.read", 6, 4),
    lock("rwlock.refresh", 7, 4),
    lock("rwlock.release", 8, 3),
    lock("rwlock.write", 9, 4),
    lock("semaphore.acquire", 10, 5),
    lock("semaphore.refresh", 11, 5),
    lock("semaphore.release", 12, 3),
];

/// Every id, the table's and the proxy's commands', is below this.
pub const ID_LIMIT: u16 = COUNT + 13;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_with_ids_of_their_own() {
        assert!(OWN.windows(2).all(|w| w[0].name < w[1].name));
        let mut ids: Vec<u16> = OWN
            .iter()
            .flat_map(|s| std::iter::once(s).chain(s.subcommands))
            .map(|s| s.id)
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, (COUNT..ID_LIMIT).collect::<Vec<_>>());
    }
}
