//! Releases, extensions and reads: not safety-bound, so they wait up to
//! `op_timeout` for answers that decide them, and say so with an error when
//! the answers do not.

use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

use super::{Engine, Lease, Outcome, command, count};
use crate::protocol::Reply;
use crate::redlock::master::{LockRef, Role};
use crate::redlock::op::{ScriptAction, ScriptOp, Takeback, Tokens};
use crate::redlock::quorum::{self, Decision};
use crate::redlock::scripts::Convention;
use crate::redlock::vote::{self, Answer, Votes};

impl Engine {
    /// A script that releases, extends or reads.
    pub(super) async fn script(&self, op: Box<ScriptOp>) -> Outcome {
        let op = *op;
        let (cmd, preload) = self.script_call(&op.call);
        let conv = op.convention;
        let keys = &op.call.keys;
        let nkeys = keys.len();
        let q = self.quorum();
        let timeout = self.cfg.op_timeout;
        match op.action {
            // Run by the acquisition path; kept here so every action has an answer.
            ScriptAction::Acquire { .. } => Box::pin(self.acquire_script(Box::new(op))).await,
            ScriptAction::Release { token } => {
                count(&self.stats.releases);
                // A master the release does not reach, or where it fails, is owed a
                // compare-and-delete (safe at any time: the token is unique).
                let expires = self.cfg.max_ttl.map(|t| Instant::now() + t);
                let lock = match token {
                    Some(t) => Role::Releases(LockRef::held(
                        keys.clone(),
                        Tokens::One(t),
                        op.takeback,
                        expires,
                    )),
                    None => Role::None,
                };
                let verdict = |a: &[Answer]| vote::release(conv, a, q, nkeys);
                let round = self
                    .collect(cmd, Some(preload), timeout, lock, |a| verdict(a).is_some())
                    .await;
                match verdict(&round.answers) {
                    Some(reply) => reply.into(),
                    None => self.undecided("release", &round.answers, timeout).into(),
                }
            }
            ScriptAction::Extend { ttl, adds, token } => {
                let keys = op.call.keys.clone();
                let q = self.quorum_for(op.limit);
                self.extend(
                    cmd,
                    Some(preload),
                    (conv, nkeys, q),
                    ttl,
                    adds.then_some((keys, token)),
                )
                .await
            }
            ScriptAction::Query => {
                count(&self.stats.queries);
                let verdict = |a: &[Answer]| vote::query(conv, a, q);
                self.read("read", cmd, Some(preload), verdict).await
            }
        }
    }

    /// `ZREM key member...` on a semaphore: its seats released on every
    /// master; the reply is the count a quorum removed. A master the release
    /// does not reach is owed it (safe at any time: the seats are the holder's).
    pub(super) async fn remove_seats(&self, key: Bytes, members: Vec<Bytes>) -> Outcome {
        count(&self.stats.releases);
        let q = self.quorum();
        let timeout = self.cfg.op_timeout;
        let mut args: Vec<&[u8]> = vec![b"ZREM", &key];
        args.extend(members.iter().map(|m| &m[..]));
        let cmd = command(&args);
        let expires = self.cfg.max_ttl.map(|t| Instant::now() + t);
        let nmembers = members.len();
        let token = members.first().cloned().unwrap_or_default();
        let lock = Role::Releases(LockRef::held(
            vec![key],
            Tokens::One(token),
            Takeback::Seats(members),
            expires,
        ));
        let verdict = |a: &[Answer]| vote::release(Convention::Count, a, q, nmembers);
        let round = self
            .collect(cmd, None, timeout, lock, |a| verdict(a).is_some())
            .await;
        match verdict(&round.answers) {
            Some(reply) => reply.into(),
            None => self.undecided("release", &round.answers, timeout).into(),
        }
    }

    /// `PEXPIRE`/`EXPIRE`/`PEXPIREAT`/`EXPIREAT` on a lock key (`args`, the
    /// whole command): an extension with no owner check, as on Redis. 1 when
    /// a quorum set the expiry (judged on validity like any extension), 0
    /// when a quorum did not (no such key, or an NX/XX/GT/LT condition).
    pub(super) async fn expire(&self, args: Vec<Bytes>, ttl: Duration) -> Outcome {
        let args: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
        let q = self.quorum();
        let conv = Convention::OneZero;
        self.extend(command(&args), None, (conv, 1, q), Some(ttl), None)
            .await
    }

    /// An extension needing `q` votes, its replies read by `conv` over `nkeys`
    /// keys. `adds`: the TTL argument is added to the TTL left (the lock's
    /// keys and the owner's token): the TTL left is read from a quorum first,
    /// so `max_ttl` and validity apply to the TTL that results.
    async fn extend(
        &self,
        cmd: Bytes,
        preload: Option<std::sync::Arc<crate::redlock::master::Preload>>,
        (conv, nkeys, q): (crate::redlock::scripts::Convention, usize, usize),
        ttl: Option<Duration>,
        adds: Option<(Vec<Bytes>, Option<Bytes>)>,
    ) -> Outcome {
        let timeout = self.cfg.op_timeout;
        let read_at = Instant::now();
        let ttl = match (adds, ttl) {
            (Some((keys, token)), Some(added)) => {
                match self.ttl_left(&keys, token.as_ref()).await {
                    Ok(Some(left)) => {
                        let total = left + added;
                        if let Some(max) = self.cfg.max_ttl {
                            if total > max {
                                count(&self.stats.extend_failed);
                                return crate::errors::err(format_args!(
                                    "extension to a TTL of {} ms exceeds max_ttl of {} ms",
                                    total.as_millis(),
                                    max.as_millis()
                                ))
                                .into();
                            }
                        }
                        // What was left has been running down since it was read.
                        Some(total.saturating_sub(read_at.elapsed()))
                    }
                    // Not held by the caller: the script answers that itself.
                    Ok(None) => Some(added),
                    Err(undecided) => return undecided.into(),
                }
            }
            (_, ttl) => ttl,
        };
        let success = |f: &BytesFrame| vote::success(conv, f, nkeys);
        let round = self
            .collect(cmd, preload, timeout, Role::Extends, |a| {
                Votes::count_distrusting(a, success).decided(q)
            })
            .await;
        let votes = Votes::count_distrusting(&round.answers, success);
        self.count_votes(&round, success);
        let failure = || vote::failure_reply(conv, &round.answers, q);
        if votes.defeated(q) {
            count(&self.stats.extend_failed);
            return failure().into();
        }
        if !votes.carried(q) {
            return self.undecided("extension", &round.answers, timeout).into();
        }
        let params = &self.cfg.params;
        let Some(ttl) = ttl else {
            count(&self.stats.extended);
            return vote::success_reply(conv, &round.answers, nkeys).into();
        };
        match quorum::decide(votes.yes, q, Some(ttl), round.elapsed, params) {
            Decision::Granted(_) => {
                count(&self.stats.extended);
                self.granted_ttl(ttl);
                let lease = Lease {
                    valid_until: Some(round.start + ttl.saturating_sub(quorum::drift(ttl, params))),
                    grant: None,
                    instead: failure(),
                    again: None,
                };
                Outcome {
                    reply: vote::success_reply(conv, &round.answers, nkeys),
                    lease: Some(Box::new(lease)),
                }
            }
            // Extended everywhere, but too late to leave validity.
            Decision::NoQuorum | Decision::Expired => {
                count(&self.stats.extend_failed);
                failure().into()
            }
        }
    }

    /// The TTL a quorum still holds the first of `keys` with `token` for
    /// (conservatively); `Ok(None)` when no quorum holds it so, or it has no
    /// expiry; `Err` with the reply when the answers do not decide.
    async fn ttl_left(
        &self,
        keys: &[Bytes],
        token: Option<&Bytes>,
    ) -> Result<Option<Duration>, Reply> {
        let (Some(key), Some(token)) = (keys.first(), token) else {
            return Ok(None);
        };
        let q = self.quorum();
        let timeout = self.cfg.op_timeout;
        let cmd = self.query.call(std::slice::from_ref(key), &[]);
        let script = Some(std::sync::Arc::clone(&self.query.preload));
        let verdict = |a: &[Answer]| vote::held_with_pttl(a, q);
        let round = self
            .collect(cmd, script, timeout, Role::None, |a| verdict(a).is_some())
            .await;
        match verdict(&round.answers) {
            Some(Some((held, pttl))) if held == *token && pttl > 0 => {
                Ok(Some(Duration::from_millis(pttl as u64)))
            }
            Some(_) => Ok(None),
            None => Err(self.undecided("extension", &round.answers, timeout)),
        }
    }

    /// Sends a read and answers from its verdict, or says it is undecided.
    async fn read(
        &self,
        what: &str,
        cmd: Bytes,
        script: Option<std::sync::Arc<crate::redlock::master::Preload>>,
        verdict: impl Fn(&[Answer]) -> Option<Reply>,
    ) -> Outcome {
        let timeout = self.cfg.op_timeout;
        let round = self
            .collect(cmd, script, timeout, Role::None, |a| verdict(a).is_some())
            .await;
        match verdict(&round.answers) {
            Some(reply) => reply.into(),
            None => self.undecided(what, &round.answers, timeout).into(),
        }
    }

    /// `GET key`: the token a quorum holds.
    pub(super) async fn get(&self, key: Bytes) -> Outcome {
        count(&self.stats.queries);
        let q = self.quorum();
        self.read("GET", command(&[b"GET", &key]), None, |a| vote::get(a, q))
            .await
    }

    /// `SET key token NX PXAT <past>`: what Redis answers, OK when no quorum
    /// holds the key and nil when one does; nothing is taken.
    pub(super) async fn expired_at_once(&self, key: Bytes) -> Outcome {
        let q = self.quorum();
        self.read("acquisition", command(&[b"GET", &key]), None, |a| {
            vote::get(a, q).map(|r| match r {
                Reply::Nil => Reply::OK,
                _ => Reply::Nil,
            })
        })
        .await
    }

    /// `EXISTS key...`: keys a quorum holds.
    pub(super) async fn exists(&self, keys: Vec<Bytes>) -> Outcome {
        count(&self.stats.queries);
        let q = self.quorum();
        let mut args: Vec<&[u8]> = vec![b"MGET"];
        args.extend(keys.iter().map(|k| &k[..]));
        let per_key = |f: &BytesFrame, j: usize| match f {
            BytesFrame::Array(a) => a.get(j).and_then(vote::bulk),
            _ => None,
        };
        self.read("EXISTS", command(&args), None, |a| {
            vote::keys_held(a, keys.len(), q, per_key)
        })
        .await
    }

    /// `PTTL`/`TTL key`: the conservative TTL of the value a quorum holds.
    pub(super) async fn ttl(&self, key: Bytes, millis: bool) -> Outcome {
        count(&self.stats.queries);
        let q = self.quorum();
        let cmd = self.query.call(std::slice::from_ref(&key), &[]);
        let script = Some(std::sync::Arc::clone(&self.query.preload));
        let what = if millis { "PTTL" } else { "TTL" };
        self.read(what, cmd, script, |a| vote::ttl(a, q, millis))
            .await
    }

    /// `DEL`/`UNLINK key...`: a force release; the reply counts the keys a
    /// quorum had.
    pub(super) async fn delete(&self, keys: Vec<Bytes>) -> Outcome {
        count(&self.stats.releases);
        let q = self.quorum();
        let cmd = self.del.call(&keys, &[]);
        let script = Some(std::sync::Arc::clone(&self.del.preload));
        let per_key = |f: &BytesFrame, j: usize| match f {
            BytesFrame::Array(a) if matches!(a.get(j), Some(BytesFrame::Integer(1))) => {
                Some(Bytes::from_static(b"1"))
            }
            _ => None,
        };
        self.read("DEL", cmd, script, |a| {
            vote::keys_held(a, keys.len(), q, per_key)
        })
        .await
    }
}
