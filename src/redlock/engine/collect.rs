//! Sending one request to every master and gathering the answers until they
//! decide the operation or its deadline passes; and saying why, when they do not.

use std::fmt::Write as _;
use std::future::Future as _;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

use super::Engine;
use crate::errors;
use crate::protocol::Reply;
use crate::redlock::master::{Preload, Replies, Request, Role};
use crate::redlock::vote::{Answer, NoReply};

/// The answers of one round, when they were decided.
pub(super) struct Round {
    /// One per master, in master order.
    pub(super) answers: Vec<Answer>,
    /// When the request went out: validity counts from here.
    pub(super) start: Instant,
    /// From the start to the decision (or the deadline).
    pub(super) elapsed: Duration,
    /// The deadline passed before the answers decided: masters that had not
    /// answered timed out (otherwise they were simply not waited for).
    pub(super) timed_out: bool,
}

/// Logs a warning at most every [`WARN_EVERY`], counting the ones it holds back.
#[derive(Debug, Default)]
pub(super) struct WarnLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

/// Warnings about masters that could not vote are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Engine {
    /// Sends `cmd` (an `EVALSHA` of `script`, if given) to every master and
    /// gathers answers until `decided` says they decide the operation, every
    /// master answered, or `timeout` passed. Masters that still had not
    /// answered count as timed out. `lock`: what the request does to a lock,
    /// for the releases masters may be owed.
    pub(super) async fn collect(
        &self,
        cmd: impl Into<super::Cmd>,
        script: Option<Arc<Preload>>,
        timeout: Duration,
        lock: Role,
        decided: impl Fn(&[Answer]) -> bool,
    ) -> Round {
        let n = self.voters.len();
        let start = Instant::now();
        let deadline = start + timeout;
        let inbox = Arc::new(Replies::with_capacity(n));
        let cmd = cmd.into();
        for m in &self.voters {
            m.send(Request {
                cmd: cmd.for_voter(m),
                script: script.clone(),
                deadline,
                reply_to: Arc::clone(&inbox),
                lock: lock.clone(),
                route: Default::default(),
            });
        }
        let mut answers: Vec<Answer> = vec![Err(NoReply::Pending); n];
        let mut waiting = n;
        let mut timed_out = false;
        // One timer for the whole round, armed only once an answer has to be
        // waited for: a timeout per answer armed and disarmed the runtime's
        // timer wheel for each (about 500 instructions an acquisition).
        let sleep = tokio::time::sleep_until(deadline);
        tokio::pin!(sleep);
        while waiting > 0 && !decided(&answers) {
            let pop = inbox.pop();
            tokio::pin!(pop);
            let next = std::future::poll_fn(|cx| {
                if let Poll::Ready(v) = pop.as_mut().poll(cx) {
                    return Poll::Ready(Some(v));
                }
                sleep.as_mut().poll(cx).map(|()| None)
            })
            .await;
            let Some((i, answer)) = next else {
                timed_out = true;
                break;
            };
            // (A master quarantined when it answered says so itself.)
            if let Some(slot) = answers.get_mut(i) {
                if *slot == Err(NoReply::Pending) {
                    *slot = answer;
                    waiting -= 1;
                }
            }
        }
        let elapsed = start.elapsed();
        for (m, a) in self.voters.iter().zip(answers.iter_mut()) {
            let counter = match a {
                Err(NoReply::Pending) if timed_out => Some(&m.stats().timeouts),
                Err(NoReply::Lost) | Ok(BytesFrame::Error(_)) => Some(&m.stats().errors),
                _ => None,
            };
            if let Some(c) = counter {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            if *a == Err(NoReply::Pending) {
                *a = Err(NoReply::Timeout);
            }
        }
        Round {
            answers,
            start,
            elapsed,
            timed_out,
        }
    }

    /// Counts each master's vote on an acquisition or extension (a master
    /// that was not waited for, the answers having decided, casts none).
    pub(super) fn count_votes(&self, round: &Round, yes: impl Fn(&BytesFrame) -> bool) {
        use std::sync::atomic::Ordering::Relaxed;
        for (m, a) in self.voters.iter().zip(&round.answers) {
            let counter = match a {
                Err(NoReply::Pending | NoReply::Timeout) if !round.timed_out => continue,
                Ok(BytesFrame::Error(_)) | Err(NoReply::Pending | NoReply::Timeout) => {
                    &m.stats().votes_unknown
                }
                Err(NoReply::Down | NoReply::Backlog | NoReply::Lost) => &m.stats().votes_unknown,
                Err(NoReply::Quarantined) => &m.stats().votes_no,
                Ok(f) if yes(f) => &m.stats().votes_yes,
                Ok(_) => &m.stats().votes_no,
            };
            counter.fetch_add(1, Relaxed);
        }
    }

    /// What each master whose answer does not count did, for messages.
    pub(super) fn causes(&self, answers: &[Answer], timeout: Duration) -> String {
        let mut out = String::new();
        for (m, a) in self.voters.iter().zip(answers) {
            let why = match a {
                Ok(BytesFrame::Error(e)) => format!("answered \"{e}\""),
                Ok(_) => continue,
                Err(NoReply::Pending | NoReply::Timeout) => {
                    format!("no answer within {} ms", timeout.as_millis())
                }
                Err(NoReply::Down) => "down".to_string(),
                Err(NoReply::Backlog) => "too many requests queued".to_string(),
                Err(NoReply::Lost) => "connection lost before its answer".to_string(),
                Err(NoReply::Quarantined) => format!(
                    "restarted, quarantined for {} s more",
                    m.quarantine_left().as_secs()
                ),
            };
            if !out.is_empty() {
                out.push_str("; ");
            }
            let _ = write!(out, "{}: {why}", m.addr());
        }
        out
    }

    /// The error for an operation the answers did not decide.
    pub(super) fn undecided(&self, what: &str, answers: &[Answer], timeout: Duration) -> Reply {
        super::count(&self.stats.undecided);
        let causes = self.causes(answers, timeout);
        tracing::debug!(operation = what, masters = %causes, "lock operation undecided");
        errors::no_quorum(what, self.quorum(), self.voters.len(), &causes)
    }

    /// An acquisition was refused because too few masters could vote (not
    /// because others hold the lock): says which, and why, at most every
    /// [`WARN_EVERY`].
    pub(super) fn warn_unavailable(&self, answers: &[Answer], timeout: Duration) {
        let Ok(mut w) = self.warned.lock() else {
            return;
        };
        let now = Instant::now();
        if w.last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            w.suppressed += 1;
            return;
        }
        let suppressed = std::mem::take(&mut w.suppressed);
        w.last = Some(now);
        drop(w);
        tracing::warn!(
            masters = %self.causes(answers, timeout),
            suppressed,
            "acquisition refused: too few masters could vote"
        );
    }
}
