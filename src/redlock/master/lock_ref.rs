//! A lock as the masters' tasks know it: its keys, its tokens, and how it is
//! taken off a master (the commands of an owed release).

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::owed::{self, Debt};
use crate::protocol::encode_command;
use crate::redlock::op::{Takeback, Tokens};

/// Takes a holder off a read/write set (Symfony Lock's): its token, and the
/// `__write__` marker with it (a writer holds the set alone, so with the
/// token there the marker is the token's). Answers 1 when the token was there.
pub(crate) const READ_WRITE_TAKEBACK: &str = "if redis.call('zscore', KEYS[1], ARGV[1]) then redis.call('zrem', KEYS[1], ARGV[1], '__write__') return 1 end return 0";

/// A lock by its keys and token (or a token per key: a batch), shared by the
/// requests of one operation.
#[derive(Debug)]
pub(crate) struct LockRef {
    keys: Vec<Bytes>,
    /// One token for every key, or one per key.
    tokens: Tokens,
    /// How it is taken off a master.
    takeback: Takeback,
    /// When its TTL has certainly passed (`None`: no expiry, or unknown).
    expires: Option<Instant>,
    /// The compare-and-delete of each key, encoded when first owed.
    releases: OnceLock<Vec<Bytes>>,
}

impl LockRef {
    /// The lock on `keys` held with `token`.
    #[cfg(test)]
    pub(crate) fn new(keys: Vec<Bytes>, token: Bytes, expires: Option<Instant>) -> Arc<LockRef> {
        Self::held(
            keys,
            Tokens::One(token),
            Takeback::CompareAndDelete,
            expires,
        )
    }

    /// The locks on `keys`, each held with its token in `tokens` (or all
    /// with the one token there), taken off a master by `takeback`.
    pub(crate) fn held(
        keys: Vec<Bytes>,
        tokens: Tokens,
        takeback: Takeback,
        expires: Option<Instant>,
    ) -> Arc<LockRef> {
        Arc::new(LockRef {
            keys,
            tokens,
            takeback,
            expires,
            releases: OnceLock::new(),
        })
    }

    /// The token of key `i`.
    fn token(&self, i: usize) -> Bytes {
        self.tokens.of(i).cloned().unwrap_or_default()
    }

    /// Its (key, token) pairs.
    pub(super) fn ids(&self) -> impl Iterator<Item = owed::Id> + '_ {
        (self.keys.iter().enumerate()).map(|(i, k)| (k.clone(), self.token(i)))
    }

    /// The releases of it, one per key: `EVALSHA` of the script `cad` for a
    /// mutex, `ZREM` of a semaphore's seats, [`READ_WRITE_TAKEBACK`] for a
    /// read/write set.
    pub(crate) fn debts(&self, cad: &[u8]) -> Vec<Debt> {
        let cmds = self.releases.get_or_init(|| {
            self.ids()
                .map(|(k, token)| {
                    let mut out = BytesMut::new();
                    match &self.takeback {
                        Takeback::CompareAndDelete => {
                            let args = [&b"EVALSHA"[..], cad, b"1", &k, &token];
                            encode_command(&mut out, args.into_iter());
                        }
                        Takeback::Seats(members) => {
                            let mut args: Vec<&[u8]> = vec![b"ZREM", &k];
                            args.extend(members.iter().map(|m| &m[..]));
                            encode_command(&mut out, args.into_iter());
                        }
                        Takeback::ReadWrite => {
                            let text = READ_WRITE_TAKEBACK.as_bytes();
                            let args = [&b"EVAL"[..], text, b"1", &k, &token];
                            encode_command(&mut out, args.into_iter());
                        }
                    }
                    out.freeze()
                })
                .collect()
        });
        self.ids()
            .zip(cmds)
            .map(|((key, token), cmd)| Debt {
                key,
                token,
                expires: self.expires,
                cmd: cmd.clone(),
            })
            .collect()
    }
}
