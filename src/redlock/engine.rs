//! The RedLock engine: runs each lock operation on every master at once, with a
//! per-master deadline, and turns the votes into one reply.
//!
//! Choices, where the algorithm leaves room:
//! - An acquisition is decided as soon as the votes allow (a quorum of yes, or
//!   too many no/unknown to reach one); elapsed time is measured to that moment
//!   with the monotonic clock. Requests a lagging master has not sent by then are
//!   dropped rather than sent late.
//! - A refused acquisition is released on every master, including those that
//!   did not answer, with a compare-and-delete on the token; for a master that is
//!   down the release waits for its reconnection (until the TTL has passed).
//! - Scripts are loaded on each master ahead of their EVALSHA, in the same
//!   pipeline, so a master that answers late still runs them; a release is
//!   decided once a quorum released, and is queued again for a master whose
//!   connection failed, to run when it is back.
//! - Scripts run as the client wrote them (EVALSHA, EVAL when a master lacks
//!   the script) and the per-master replies are voted on by the script's
//!   convention (`vote.rs`).
//! - Extensions that fail never release anything. `DEL` of a lock key is a force
//!   release with no retry on masters that missed it: a delayed blind delete
//!   could remove a later owner's lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

use super::master::{Master, Preload, Replies};
use super::op::{LockOp, ScriptAction, ScriptOp};
use super::quorum::{self, Decision, Params};
use super::scripts::{Convention, sha1_hex};
use super::vote::{self, Answer};
use crate::config::RedlockConfig;
use crate::protocol::{Reply, encode_command};

/// Compare-and-delete over every key (cleanup of refused acquisitions).
const CAD_SCRIPT: &str = "local n = 0\nfor _, k in ipairs(KEYS) do\n  if redis.call('get', k) == ARGV[1] then n = n + redis.call('del', k) end\nend\nreturn n\n";
/// Value and PTTL of one key, atomically.
const QUERY_SCRIPT: &str = "return {redis.call('get', KEYS[1]), redis.call('pttl', KEYS[1])}\n";
/// DEL of each key, with each key's count.
const DEL_SCRIPT: &str =
    "local r = {}\nfor i, k in ipairs(KEYS) do r[i] = redis.call('del', k) end\nreturn r\n";

/// An internal script: its text, SHA1 and preload.
#[derive(Debug)]
struct Internal {
    text: Bytes,
    sha: Bytes,
    preload: Arc<Preload>,
}

impl Internal {
    fn new(text: &'static str) -> Self {
        let sha = Bytes::from(sha1_hex(text.as_bytes()).into_bytes());
        Internal {
            text: Bytes::from_static(text.as_bytes()),
            preload: Preload::new(sha.clone(), text.as_bytes()),
            sha,
        }
    }
}

/// How an EVALSHA reaches a master that may lack the script: loaded ahead in the
/// pipeline, and retried as EVAL if the master answers NOSCRIPT all the same
/// (someone ran SCRIPT FLUSH).
#[derive(Debug, Clone)]
struct ScriptCall {
    preload: Arc<Preload>,
    fallback: Bytes,
}

/// Counters of lock operations.
#[derive(Debug, Default)]
pub struct LockStats {
    /// Acquisitions granted.
    pub granted: AtomicU64,
    /// Acquisitions refused for lack of a quorum.
    pub refused: AtomicU64,
    /// Acquisitions refused because too little validity was left.
    pub expired: AtomicU64,
    /// Releases (scripts and DEL).
    pub releases: AtomicU64,
    /// Extensions that succeeded.
    pub extended: AtomicU64,
    /// Extensions that failed.
    pub extend_failed: AtomicU64,
    /// Reads of lock keys.
    pub queries: AtomicU64,
}

/// A lock the proxy granted: enough to release it if its client vanishes
/// before hearing of it.
#[derive(Debug, Clone)]
pub struct Grant {
    keys: Vec<Bytes>,
    token: Bytes,
    ttl: Option<Duration>,
}

/// The result of one operation.
#[derive(Debug)]
pub struct Outcome {
    /// What the client is told.
    pub reply: Reply,
    /// Set when a lock was granted.
    pub grant: Option<Grant>,
}

impl From<Reply> for Outcome {
    fn from(reply: Reply) -> Self {
        Outcome { reply, grant: None }
    }
}

/// Engine settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// The algorithm's parameters.
    pub params: Params,
    /// Extra acquisition attempts.
    pub retry_count: u32,
    /// Delay between attempts (plus up to 50% jitter).
    pub retry_delay: Duration,
}

impl From<&RedlockConfig> for EngineConfig {
    fn from(r: &RedlockConfig) -> Self {
        EngineConfig {
            params: Params {
                node_timeout: r.node_timeout,
                drift_factor: r.drift_factor,
                drift_floor: r.drift_floor,
                min_validity: r.min_validity,
            },
            retry_count: r.retry_count,
            retry_delay: r.retry_delay,
        }
    }
}

/// Runs lock operations on the masters.
#[derive(Debug)]
pub struct Engine {
    masters: Vec<Arc<Master>>,
    cfg: EngineConfig,
    cad: Internal,
    query: Internal,
    del: Internal,
    /// Counters.
    pub stats: LockStats,
}

/// Replies as they come in.
struct Tally {
    answers: Vec<Answer>,
    finished: usize,
    /// Masters that failed the request: down, backlogged, or the connection
    /// broke (it may or may not have run).
    failed: Vec<usize>,
}

impl Engine {
    /// An engine over `masters`.
    pub fn new(masters: Vec<Arc<Master>>, cfg: EngineConfig) -> Self {
        Engine {
            masters,
            cfg,
            cad: Internal::new(CAD_SCRIPT),
            query: Internal::new(QUERY_SCRIPT),
            del: Internal::new(DEL_SCRIPT),
            stats: LockStats::default(),
        }
    }

    /// The masters.
    pub fn masters(&self) -> &[Arc<Master>] {
        &self.masters
    }

    fn quorum(&self) -> usize {
        quorum::quorum(self.masters.len())
    }

    /// Runs one operation to completion.
    pub async fn run(&self, op: LockOp) -> Outcome {
        match op {
            LockOp::Acquire { key, token, ttl } => {
                let cmd = set_nx(&key, &token, ttl);
                self.acquire(cmd, None, vec![key], token, ttl, None).await
            }
            LockOp::Get { key } => {
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                let timeout = self.cfg.params.node_timeout;
                let (t, _) = self
                    .collect(command(&[b"GET", &key]), None, timeout, |t| {
                        self.value_decided(t, vote::bulk)
                    })
                    .await;
                let values: Vec<Option<Bytes>> = t
                    .answers
                    .iter()
                    .map(|a| a.as_ref().and_then(vote::bulk))
                    .collect();
                match vote::value_quorum(&values, self.quorum()) {
                    Some((v, _)) => Reply::Bulk(v).into(),
                    None => Reply::Nil.into(),
                }
            }
            LockOp::Exists { keys } => {
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                let mut args: Vec<&[u8]> = vec![b"MGET"];
                args.extend(keys.iter().map(|k| &k[..]));
                let (t, _) = self
                    .collect(command(&args), None, self.cfg.params.node_timeout, |t| {
                        t.finished == t.answers.len()
                    })
                    .await;
                let n =
                    vote::keys_with_quorum(&t.answers, keys.len(), self.quorum(), |f, j| match f {
                        BytesFrame::Array(a) => a.get(j).and_then(vote::bulk),
                        _ => None,
                    });
                Reply::Int(n).into()
            }
            LockOp::Ttl { key, millis } => {
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                let (cmd, fallback) = self.internal(&self.query, &[key], &[]);
                let (t, _) = self
                    .collect(cmd, fallback, self.cfg.params.node_timeout, |t| {
                        self.value_decided(t, |f| match f {
                            BytesFrame::Array(a) => a.first().and_then(vote::bulk),
                            _ => None,
                        })
                    })
                    .await;
                vote::ttl_reply(&t.answers, self.quorum(), millis).into()
            }
            LockOp::Delete { keys } => {
                self.stats.releases.fetch_add(1, Ordering::Relaxed);
                let (cmd, fallback) = self.internal(&self.del, &keys, &[]);
                let (t, _) = self
                    .collect(cmd, fallback, self.cfg.params.node_timeout, |t| {
                        t.finished == t.answers.len()
                    })
                    .await;
                let n =
                    vote::keys_with_quorum(&t.answers, keys.len(), self.quorum(), |f, j| match f {
                        BytesFrame::Array(a)
                            if matches!(a.get(j), Some(BytesFrame::Integer(1))) =>
                        {
                            Some(Bytes::from_static(b"1"))
                        }
                        _ => None,
                    });
                Reply::Int(n).into()
            }
            LockOp::Script(op) => self.script(op).await,
        }
    }

    /// Whether a read is decided: some value has a quorum, or every master answered.
    fn value_decided(&self, t: &Tally, value: impl Fn(&BytesFrame) -> Option<Bytes>) -> bool {
        if t.finished == t.answers.len() {
            return true;
        }
        let values: Vec<Option<Bytes>> = t
            .answers
            .iter()
            .map(|a| a.as_ref().and_then(&value))
            .collect();
        vote::value_quorum(&values, self.quorum()).is_some()
    }

    async fn script(&self, op: ScriptOp) -> Outcome {
        let ScriptOp {
            call,
            convention: conv,
            action,
        } = op;
        let mut args: Vec<&[u8]> = Vec::with_capacity(3 + call.keys.len() + call.argv.len());
        let numkeys = call.keys.len().to_string();
        args.extend([&b"EVALSHA"[..], &call.sha, numkeys.as_bytes()]);
        args.extend(call.keys.iter().map(|k| &k[..]));
        args.extend(call.argv.iter().map(|a| &a[..]));
        let cmd = command(&args);
        args[0] = b"EVAL";
        args[1] = &call.text;
        let fallback = Some(ScriptCall {
            preload: Preload::new(call.sha.clone(), &call.text),
            fallback: command(&args),
        });
        let keys = call.keys;
        let nkeys = keys.len();
        let q = self.quorum();
        match action {
            ScriptAction::Acquire { token, ttl } => {
                self.acquire(cmd, fallback, keys, token, ttl, Some(conv))
                    .await
            }
            ScriptAction::Extend { ttl } => {
                let timeout = quorum::node_timeout(ttl, &self.cfg.params);
                let (t, elapsed) = self
                    .collect(cmd, fallback, timeout, |t| {
                        self.yes_no_decided(t, |f| vote::success(conv, f, nkeys))
                    })
                    .await;
                let yes = vote::count_success(conv, &t.answers, nkeys);
                let granted = match ttl {
                    Some(ttl) => matches!(
                        quorum::decide(
                            yes,
                            self.masters.len(),
                            Some(ttl),
                            elapsed,
                            &self.cfg.params
                        ),
                        Decision::Granted(_)
                    ),
                    None => yes >= q,
                };
                if granted {
                    self.stats.extended.fetch_add(1, Ordering::Relaxed);
                    vote::success_reply(conv, &t.answers, nkeys).into()
                } else {
                    self.stats.extend_failed.fetch_add(1, Ordering::Relaxed);
                    vote::failure_reply(conv, &t.answers, q).into()
                }
            }
            ScriptAction::Release { token } => {
                self.stats.releases.fetch_add(1, Ordering::Relaxed);
                // Decided once a quorum released every key (the reply can only be
                // that); otherwise every master's count matters.
                let (t, _) = self
                    .collect(cmd, fallback, self.cfg.params.node_timeout, |t| {
                        vote::count_success(conv, &t.answers, nkeys) >= q
                    })
                    .await;
                // A master the release may have missed gets it when it is back
                // (compare-and-delete on a unique token is safe at any time).
                if let Some(token) = &token {
                    self.release_on(&t.failed, &keys, token, None);
                }
                vote::release_reply(conv, &t.answers, q, nkeys).into()
            }
            ScriptAction::Query => {
                self.stats.queries.fetch_add(1, Ordering::Relaxed);
                let (t, _) = self
                    .collect(cmd, fallback, self.cfg.params.node_timeout, |t| {
                        t.finished == t.answers.len()
                    })
                    .await;
                vote::query_reply(conv, &t.answers, q).into()
            }
        }
    }

    /// A yes/no vote is decided when a quorum said yes or too many said no.
    fn yes_no_decided(&self, t: &Tally, yes: impl Fn(&BytesFrame) -> bool) -> bool {
        let n = self.masters.len();
        let q = self.quorum();
        let y = t.answers.iter().flatten().filter(|f| yes(f)).count();
        y >= q || t.finished - y > n - q
    }

    /// An acquisition: vote, check validity, release everywhere if refused; retried
    /// `retry_count` times, each attempt measured afresh. `conv`: the script's
    /// reply convention, `None` for `SET NX` (OK / nil).
    async fn acquire(
        &self,
        cmd: Bytes,
        fallback: Option<ScriptCall>,
        keys: Vec<Bytes>,
        token: Bytes,
        ttl: Option<Duration>,
        conv: Option<Convention>,
    ) -> Outcome {
        let q = self.quorum();
        let success = |f: &BytesFrame, n: usize| match conv {
            Some(c) => vote::success(c, f, n),
            None => is_ok(f),
        };
        let fail = |answers: &[Answer]| match conv {
            Some(c) => vote::failure_reply(c, answers, q),
            None => Reply::Nil,
        };
        if ttl == Some(Duration::ZERO) {
            self.stats.expired.fetch_add(1, Ordering::Relaxed);
            return fail(&[]).into();
        }
        let nkeys = keys.len();
        let n = self.masters.len();
        let timeout = quorum::node_timeout(ttl, &self.cfg.params);
        let mut last = Vec::new();
        for attempt in 0..=self.cfg.retry_count {
            let (t, elapsed) = self
                .collect(cmd.clone(), fallback.clone(), timeout, |t| {
                    self.yes_no_decided(t, |f| success(f, nkeys))
                })
                .await;
            let yes = t
                .answers
                .iter()
                .flatten()
                .filter(|f| success(f, nkeys))
                .count();
            match quorum::decide(yes, n, ttl, elapsed, &self.cfg.params) {
                Decision::Granted(_) => {
                    self.stats.granted.fetch_add(1, Ordering::Relaxed);
                    let reply = match conv {
                        Some(c) => vote::success_reply(c, &t.answers, nkeys),
                        None => Reply::OK,
                    };
                    return Outcome {
                        reply,
                        grant: Some(Grant { keys, token, ttl }),
                    };
                }
                Decision::NoQuorum => self.stats.refused.fetch_add(1, Ordering::Relaxed),
                Decision::Expired => self.stats.expired.fetch_add(1, Ordering::Relaxed),
            };
            self.release_everywhere(&keys, &token, ttl);
            last = t.answers;
            if attempt < self.cfg.retry_count {
                let base = self.cfg.retry_delay;
                let jitter = base.mul_f64(fastrand::f64() * 0.5);
                tokio::time::sleep(base + jitter).await;
            }
        }
        fail(&last).into()
    }

    /// Releases a granted lock whose client is gone.
    pub fn release_grant(&self, grant: &Grant) {
        self.release_everywhere(&grant.keys, &grant.token, grant.ttl);
    }

    /// Compare-and-delete of `keys` with `token` on every master, fire and forget;
    /// kept for a master that is down until the TTL has passed.
    fn release_everywhere(&self, keys: &[Bytes], token: &Bytes, ttl: Option<Duration>) {
        let all: Vec<usize> = (0..self.masters.len()).collect();
        self.release_on(&all, keys, token, ttl);
    }

    /// Compare-and-delete on the given masters (see `release_everywhere`).
    fn release_on(&self, masters: &[usize], keys: &[Bytes], token: &Bytes, ttl: Option<Duration>) {
        if masters.is_empty() {
            return;
        }
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVAL", &self.cad.text, numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| &k[..]));
        args.push(token);
        let cmd = command(&args);
        let expires = ttl.map(|t| Instant::now() + t);
        for &i in masters {
            self.masters[i].send_cleanup(cmd.clone(), expires);
        }
    }

    /// `EVALSHA` of an internal script, and how it reaches the masters.
    fn internal(
        &self,
        script: &Internal,
        keys: &[Bytes],
        argv: &[&[u8]],
    ) -> (Bytes, Option<ScriptCall>) {
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", &script.sha, numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| &k[..]));
        args.extend(argv);
        let cmd = command(&args);
        args[0] = b"EVAL";
        args[1] = &script.text;
        let call = ScriptCall {
            preload: Arc::clone(&script.preload),
            fallback: command(&args),
        };
        (cmd, Some(call))
    }

    /// Sends `cmd` to every master and gathers replies until `done` says the
    /// outcome is decided, every master finished, or `timeout` passed. For a
    /// script, a `NOSCRIPT` reply is retried once as EVAL. Returns the replies and
    /// the time elapsed until the decision.
    async fn collect(
        &self,
        cmd: Bytes,
        script: Option<ScriptCall>,
        timeout: Duration,
        done: impl Fn(&Tally) -> bool,
    ) -> (Tally, Duration) {
        let n = self.masters.len();
        let start = Instant::now();
        let deadline = start + timeout;
        let tx = Arc::new(Replies::with_capacity(n));
        let preload = script.as_ref().map(|s| &s.preload);
        for m in &self.masters {
            m.send_with(cmd.clone(), preload.cloned(), deadline, &tx);
        }
        let mut t = Tally {
            answers: vec![None; n],
            finished: 0,
            failed: Vec::new(),
        };
        // Bit i: master i finished / was retried with EVAL (at most 64 masters).
        let (mut done_flags, mut retried) = (0u64, 0u64);
        while t.finished < n {
            let Ok((i, reply)) = tokio::time::timeout_at(deadline, tx.pop()).await else {
                break;
            };
            if done_flags & (1 << i) != 0 {
                continue;
            }
            match reply {
                Ok(BytesFrame::Error(e))
                    if e.starts_with("NOSCRIPT") && retried & (1 << i) == 0 && script.is_some() =>
                {
                    retried |= 1 << i;
                    if let Some(s) = &script {
                        self.masters[i].send(s.fallback.clone(), deadline, &tx);
                    }
                    continue;
                }
                Ok(frame) => t.answers[i] = Some(frame),
                Err(_) => t.failed.push(i),
            }
            done_flags |= 1 << i;
            t.finished += 1;
            if done(&t) {
                break;
            }
        }
        (t, start.elapsed())
    }
}

fn is_ok(f: &BytesFrame) -> bool {
    matches!(f, BytesFrame::SimpleString(s) if &s[..] == b"OK")
}

fn command(args: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    encode_command(&mut out, args.iter().copied());
    out.freeze()
}

fn set_nx(key: &[u8], token: &[u8], ttl: Option<Duration>) -> Bytes {
    match ttl {
        Some(ttl) => {
            let ms = ttl.as_millis().to_string();
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
