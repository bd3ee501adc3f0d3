//! Acquisitions: `SET key token NX [PX ms]` and acquire scripts. Votes are
//! gathered for at most the node timeout; a grant needs a quorum and validity
//! left; a refusal is released on every master.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::{Engine, Grant, Lease, Outcome, command, count};
use crate::protocol::Reply;
use crate::redlock::master::{LockRef, Preload, Role};
use crate::redlock::op::{LockOp, ScriptAction, ScriptOp, Takeback, Tokens};
use crate::redlock::quorum::{self, Decision};
use crate::redlock::scripts::Convention;
use crate::redlock::vote::{self, Votes};

/// One acquisition, ready to send.
struct Acquisition {
    cmd: Bytes,
    script: Option<Arc<Preload>>,
    keys: Vec<Bytes>,
    /// One token for every key, or one per key (a batch).
    tokens: Tokens,
    /// How a holder is taken off a master (a refusal, a revoked grant).
    takeback: Takeback,
    /// A semaphore's limit, which sets the votes needed.
    limit: Option<u64>,
    ttl: Option<Duration>,
    /// The script's reply convention; `None` for `SET NX` (OK / nil).
    conv: Option<Convention>,
}

impl Acquisition {
    fn success(&self, f: &BytesFrame) -> bool {
        match self.conv {
            Some(c) => vote::success(c, f, self.keys.len()),
            None => vote::is_ok(f),
        }
    }

    fn failure(&self, answers: &[vote::Answer], q: usize) -> Reply {
        match self.conv {
            Some(c) => vote::failure_reply(c, answers, q),
            None => Reply::Nil,
        }
    }
}

impl Engine {
    /// `SET key token NX [PX ttl]`; with `at_ms`, an absolute expiry whose TTL
    /// counts from now.
    pub(super) async fn acquire_set(
        &self,
        key: Bytes,
        token: Bytes,
        ttl: Option<Duration>,
        at_ms: Option<i64>,
        setnx: bool,
    ) -> Outcome {
        let ttl = match at_ms {
            Some(at) => Some(Duration::from_millis(
                at.saturating_sub(now_ms()).max(0) as u64
            )),
            None => ttl,
        }
        .map(|t| t.min(LONGEST_TTL_SENT));
        if ttl == Some(Duration::ZERO) {
            // Redis sets the key and it expires at once: OK when nothing held it,
            // nil when something did. Nothing is taken.
            count(&self.stats.expired);
            return self.expired_at_once(key).await;
        }
        let a = Acquisition {
            cmd: set_nx(&key, &token, ttl),
            script: None,
            keys: vec![key.clone()],
            tokens: Tokens::One(token.clone()),
            takeback: Takeback::CompareAndDelete,
            limit: None,
            ttl,
            conv: None,
        };
        let again = LockOp::Acquire {
            key,
            token,
            ttl,
            at_ms,
            setnx,
        };
        self.acquire(a, again).await
    }

    /// An acquire script.
    pub(super) async fn acquire_script(&self, op: Box<ScriptOp>) -> Outcome {
        let ScriptAction::Acquire { tokens, ttl } = &op.action else {
            return self.script(op).await;
        };
        let (cmd, preload) = self.script_call(&op.call);
        let a = Acquisition {
            cmd,
            script: Some(preload),
            keys: op.call.keys.clone(),
            tokens: tokens.clone(),
            takeback: op.takeback.clone(),
            limit: op.limit,
            ttl: *ttl,
            conv: Some(op.convention),
        };
        self.acquire(a, LockOp::Script(op)).await
    }

    /// Votes, checks validity, releases everywhere if refused; retried
    /// `retry_count` times, each attempt measured afresh.
    async fn acquire(&self, a: Acquisition, again: LockOp) -> Outcome {
        let q = self.quorum_for(a.limit);
        if a.ttl == Some(Duration::ZERO) {
            count(&self.stats.expired);
            return a.failure(&[], q).into();
        }
        let params = &self.cfg.params;
        let timeout = quorum::node_timeout(a.ttl, params);
        let mut last = Vec::new();
        let takes = Role::Acquires(LockRef::held(
            a.keys.clone(),
            a.tokens.clone(),
            a.takeback.clone(),
            None,
        ));
        for attempt in 0..=self.cfg.retry_count {
            let round = self
                .collect(
                    a.cmd.clone(),
                    a.script.clone(),
                    timeout,
                    takes.clone(),
                    |answers| Votes::count_distrusting(answers, |f| a.success(f)).decided(q),
                )
                .await;
            let votes = Votes::count_distrusting(&round.answers, |f| a.success(f));
            self.count_votes(&round, |f| a.success(f));
            match quorum::decide(votes.yes, q, a.ttl, round.elapsed, params) {
                Decision::Granted(_) => {
                    count(&self.stats.granted);
                    if let Some(ttl) = a.ttl {
                        self.granted_ttl(ttl);
                    }
                    let reply = match a.conv {
                        Some(c) => vote::success_reply(c, &round.answers, a.keys.len()),
                        None => Reply::OK,
                    };
                    // ttl − drift from the start: the validity the decision
                    // measured, wherever the reply is written from.
                    let valid_until = a
                        .ttl
                        .map(|t| round.start + t.saturating_sub(quorum::drift(t, params)));
                    let instead = a.failure(&[], q);
                    let grant = Grant {
                        keys: a.keys,
                        tokens: a.tokens,
                        takeback: a.takeback,
                        ttl: a.ttl,
                    };
                    let lease = Lease {
                        valid_until,
                        grant: Some(grant),
                        instead,
                        again: Some(again),
                    };
                    return Outcome {
                        reply,
                        lease: Some(Box::new(lease)),
                    };
                }
                Decision::NoQuorum => {
                    count(&self.stats.refused);
                    if !votes.defeated(q) {
                        // Not others holding it: masters that could not vote.
                        self.warn_unavailable(&round.answers, timeout);
                    }
                }
                Decision::Expired => count(&self.stats.expired),
            }
            let expires = a.ttl.map(|t| round.start + t);
            self.release_everywhere(&a.keys, &a.tokens, &a.takeback, expires);
            last = round.answers;
            if attempt < self.cfg.retry_count {
                let base = self.cfg.retry_delay;
                let jitter = base.mul_f64(fastrand::f64() * 0.5);
                tokio::time::sleep(base + jitter).await;
            }
        }
        a.failure(&last, q).into()
    }
}

/// The current Unix time in milliseconds.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The longest TTL written to a master, about 73 million years. A TTL near
/// Redis's limit (`PX` up to `i64::MAX` minus the server's clock) is valid by
/// the proxy's clock but may overflow by a master's, a millisecond later,
/// which would turn a grant Redis makes into a refusal. Past this the
/// difference cannot be observed.
const LONGEST_TTL_SENT: Duration = Duration::from_millis(i64::MAX as u64 / 4);

fn set_nx(key: &[u8], token: &[u8], ttl: Option<Duration>) -> Bytes {
    match ttl {
        Some(ttl) => {
            let mut ms = itoa::Buffer::new();
            let ms = ms.format(ttl.as_millis());
            command(&[b"SET", key, token, b"NX", b"PX", ms.as_bytes()])
        }
        None => command(&[b"SET", key, token, b"NX"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_command_shapes() {
        assert_eq!(
            &set_nx(b"lock:a", b"t", Some(Duration::from_millis(1500)))[..],
            b"*6\r\n$3\r\nSET\r\n$6\r\nlock:a\r\n$1\r\nt\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n1500\r\n"
        );
        assert_eq!(
            &set_nx(b"k", b"t", None)[..],
            b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nt\r\n$2\r\nNX\r\n"
        );
    }

    #[test]
    fn conventions_cover_acquire_replies() {
        assert!(vote::success(
            Convention::KeysZero,
            &BytesFrame::Integer(2),
            2
        ));
        assert!(!vote::success(
            Convention::KeysZero,
            &BytesFrame::Integer(1),
            2
        ));
    }
}
#[cfg(test)]
mod sizes {
    use super::*;

    /// What every level of the engine's futures copies: an operation goes
    /// down through `run` → `dispatch` → ..., its outcome comes back up, and
    /// each level's future holds both. Boxing the lease took 857
    /// instructions off an acquisition and 962 off a release (callgrind);
    /// this keeps them small.
    #[test]
    fn operations_and_outcomes_stay_small() {
        assert!(
            std::mem::size_of::<Outcome>() <= 48,
            "{}",
            std::mem::size_of::<Outcome>()
        );
        assert!(
            std::mem::size_of::<LockOp>() <= 104,
            "{}",
            std::mem::size_of::<LockOp>()
        );
    }
}
