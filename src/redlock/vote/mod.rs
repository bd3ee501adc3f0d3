//! Vote aggregation: from the masters' answers (some missing) to the one reply
//! a single Redis would give. Pure functions over decoded frames.
//!
//! The rule that keeps replies truthful: a reply is *decided* only when every
//! possible answer of the masters that did not answer (timed out, down, lost,
//! or answered with an error) would give the same reply. Each aggregation
//! returns `None` when it is not decided; the engine then waits for more
//! answers, or, at its deadline, answers with an error that says so — never
//! with a 0, nil or -2 the masters did not say.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::quorum::quorum_value;
use super::scripts::Convention;
use crate::config::{ScriptFailure, ScriptSuccess};
use crate::protocol::Reply;

/// What a declared script whose failure is an error answers when a quorum did
/// not succeed (`failure = "error"`, the default for acquisitions and extensions).
pub const DECLARED_FAILED: &str =
    "LOCKFAILED the lock masters did not agree to this script (a quorum did not succeed)";

#[cfg(test)]
mod tests;

/// Why a master gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoReply {
    /// Not yet: the operation is still collecting.
    Pending,
    /// No answer before the operation's deadline.
    Timeout,
    /// The master is down: the request was not sent.
    Down,
    /// Too many requests are queued for this master: not sent.
    Backlog,
    /// Sent, but the connection failed before the reply: the outcome is unknown.
    Lost,
    /// The master restarted recently and may have forgotten locks: whatever it
    /// answered is not trusted (the restart guard). Unknown for releases and
    /// reads; "no" for acquisitions and extensions ([`Votes::count_distrusting`]).
    Quarantined,
}

/// One master's answer: its reply (an error reply included), or why there is none.
pub type Answer = Result<BytesFrame, NoReply>;

/// The reply, when it counts as a vote: not an error reply, not missing.
fn known(a: &Answer) -> Option<&BytesFrame> {
    match a {
        Ok(BytesFrame::Error(_)) | Err(_) => None,
        Ok(f) => Some(f),
    }
}

/// Masters whose answer does not count (missing, or an error reply).
pub fn unknown(answers: &[Answer]) -> usize {
    answers.iter().filter(|a| known(a).is_none()).count()
}

fn int(f: &BytesFrame) -> Option<i64> {
    match f {
        BytesFrame::Integer(i) => Some(*i),
        _ => None,
    }
}

/// The first element of an array reply, when it is an integer.
fn code(f: &BytesFrame) -> Option<i64> {
    match f {
        BytesFrame::Array(a) => a.first().and_then(int),
        _ => None,
    }
}

/// The second element of an array reply, when it is an integer.
fn second(f: &BytesFrame) -> Option<i64> {
    match f {
        BytesFrame::Array(a) => a.get(1).and_then(int),
        _ => None,
    }
}

/// Whether a reply is the integer 1.
pub fn is_one(f: &BytesFrame) -> bool {
    int(f) == Some(1)
}

/// Whether a reply is the status `OK`.
pub fn is_ok(f: &BytesFrame) -> bool {
    matches!(f, BytesFrame::SimpleString(s) if &s[..] == b"OK")
}

/// A bulk-or-nil reply's value.
pub fn bulk(f: &BytesFrame) -> Option<Bytes> {
    match f {
        BytesFrame::BulkString(b) => Some(b.clone()),
        _ => None,
    }
}

/// Whether a master's reply to a script means success (`nkeys`: the script's key count).
pub fn success(conv: Convention, f: &BytesFrame, nkeys: usize) -> bool {
    match conv {
        Convention::Count | Convention::KeysZero => int(f) == Some(nkeys as i64),
        Convention::OneZero
        | Convention::OneNil
        | Convention::RedsyncRelease
        | Convention::Silent => int(f) == Some(1),
        Convention::OkNil | Convention::OkErr => is_ok(f),
        Convention::ZeroOne => int(f) == Some(0),
        Convention::CodePttl | Convention::BatchCode => code(f) == Some(1),
        Convention::Declared(s, _) => match s {
            ScriptSuccess::OkOrPositive => is_ok(f) || int(f).is_some_and(|i| i >= 1),
            ScriptSuccess::Ok => is_ok(f),
            ScriptSuccess::One => int(f) == Some(1),
            ScriptSuccess::Positive => int(f).is_some_and(|i| i >= 1),
            ScriptSuccess::Any => !matches!(f, BytesFrame::Error(_)),
        },
        Convention::PttlOrZero
        | Convention::PttlOrMinus3
        | Convention::PttlOrNil
        | Convention::TtlOrError
        | Convention::ValuePttlOrNil
        | Convention::ValuePttl => false,
    }
}

/// A yes/no vote: masters that said yes, masters that definitely said no, and
/// masters whose answer does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Votes {
    /// Said yes.
    pub yes: usize,
    /// Said no (a reply that is not success and not an error).
    pub no: usize,
    /// No answer, or an error reply.
    pub unknown: usize,
}

impl Votes {
    /// Counts the answers, with `yes` telling a yes from a no.
    pub fn count(answers: &[Answer], yes: impl Fn(&BytesFrame) -> bool) -> Votes {
        let mut v = Votes::default();
        for a in answers {
            match known(a) {
                Some(f) if yes(f) => v.yes += 1,
                Some(_) => v.no += 1,
                None => v.unknown += 1,
            }
        }
        v
    }

    /// As [`count`](Self::count), with quarantined masters counted as "no":
    /// how acquisitions and extensions count, so a master that may have
    /// forgotten a lock can never help grant it.
    pub fn count_distrusting(answers: &[Answer], yes: impl Fn(&BytesFrame) -> bool) -> Votes {
        let mut v = Votes::count(answers, yes);
        let distrusted = answers
            .iter()
            .filter(|a| **a == Err(NoReply::Quarantined))
            .count();
        v.unknown -= distrusted;
        v.no += distrusted;
        v
    }

    /// A quorum said yes.
    pub fn carried(&self, q: usize) -> bool {
        self.yes >= q
    }

    /// No quorum can say yes, whatever the unknown masters would answer.
    pub fn defeated(&self, q: usize) -> bool {
        self.yes + self.unknown < q
    }

    /// Carried or defeated: the unknown masters cannot change the outcome.
    pub fn decided(&self, q: usize) -> bool {
        self.carried(q) || self.defeated(q)
    }
}

/// A master's reply as a client reply.
pub fn to_reply(f: &BytesFrame) -> Reply {
    match f {
        BytesFrame::SimpleString(s) => match &s[..] {
            b"OK" => Reply::OK,
            other => Reply::Status(String::from_utf8_lossy(other).into_owned()),
        },
        BytesFrame::Error(e) => Reply::Error(e.to_string()),
        BytesFrame::Integer(i) => Reply::Int(*i),
        BytesFrame::BulkString(b) => Reply::Bulk(b.clone()),
        BytesFrame::Array(a) => Reply::Array(a.iter().map(to_reply).collect()),
        BytesFrame::Null => Reply::Nil,
    }
}

/// The reply for a granted acquisition or a successful extension.
pub fn success_reply(conv: Convention, answers: &[Answer], nkeys: usize) -> Reply {
    match conv {
        Convention::Declared(..) => answers
            .iter()
            .filter_map(known)
            .find(|f| success(conv, f, nkeys))
            .map(to_reply)
            .unwrap_or(Reply::OK),
        Convention::Count | Convention::KeysZero => Reply::Int(nkeys as i64),
        Convention::OkNil | Convention::OkErr => Reply::OK,
        Convention::ZeroOne => Reply::Int(0),
        Convention::Silent => Reply::Nil,
        Convention::BatchCode => Reply::Array(vec![Reply::Int(1), Reply::Int(nkeys as i64)]),
        Convention::CodePttl => {
            // The PTTL left before the extension, as the successful masters
            // that make a quorum saw it at least.
            let pttls: Vec<i64> = answers
                .iter()
                .filter_map(known)
                .filter(|f| code(f) == Some(1))
                .filter_map(second)
                .collect();
            let least = pttls.iter().copied().min().unwrap_or(0);
            Reply::Array(vec![Reply::Int(1), Reply::Int(least)])
        }
        _ => Reply::Int(1),
    }
}

/// The reply for a refused acquisition, failed extension or failed release.
pub fn failure_reply(conv: Convention, answers: &[Answer], q: usize) -> Reply {
    match conv {
        // Never a master's own reply: a library that reads anything but an
        // error as success would take a refusal for a grant.
        Convention::Declared(_, ScriptFailure::Error) => Reply::Error(DECLARED_FAILED.into()),
        Convention::Declared(_, ScriptFailure::Nil) => Reply::Nil,
        Convention::Declared(_, ScriptFailure::Zero) => Reply::Int(0),
        Convention::OkNil | Convention::OneNil | Convention::PttlOrNil | Convention::Silent => {
            Reply::Nil
        }
        Convention::OkErr => Reply::bulk_static("ERR"),
        Convention::ZeroOne => {
            // 2 (no expiry) only when a quorum said so; otherwise not owned.
            let no_expiry = answers
                .iter()
                .filter_map(known)
                .filter(|f| int(f) == Some(2))
                .count();
            Reply::Int(if no_expiry >= q { 2 } else { 1 })
        }
        Convention::RedsyncRelease => {
            let missing = answers
                .iter()
                .filter_map(known)
                .filter(|f| int(f) == Some(-1))
                .count();
            Reply::Int(if missing >= q { -1 } else { 0 })
        }
        Convention::PttlOrMinus3 => Reply::Int(-3),
        Convention::ValuePttlOrNil => Reply::Nil,
        Convention::CodePttl => {
            // "Held, too late" needs a quorum saying so; otherwise the caller
            // does not hold it, as far as a quorum can tell.
            let late: Vec<i64> = answers
                .iter()
                .filter_map(known)
                .filter(|f| code(f) == Some(0))
                .filter_map(second)
                .collect();
            match quorum_pttl(late, q) {
                Some(p) => Reply::Array(vec![Reply::Int(0), Reply::Int(p)]),
                None => Reply::Array(vec![Reply::Int(-1), Reply::Int(-2)]),
            }
        }
        Convention::BatchCode => {
            // The key most refusing masters named (the first of them on a tie).
            let named: Vec<&BytesFrame> = answers
                .iter()
                .filter_map(known)
                .filter(|f| code(f) == Some(0) && second(f).is_some())
                .collect();
            let most = named
                .iter()
                .max_by_key(|f| {
                    let i = second(f);
                    let n = named.iter().filter(|g| second(g) == i).count();
                    (n, std::cmp::Reverse(i))
                })
                .map(|f| to_reply(f));
            most.unwrap_or_else(|| Reply::Array(vec![Reply::Int(0), Reply::Int(1)]))
        }
        Convention::TtlOrError => Reply::Error(TTL_NOT_OWNED.into()),
        Convention::ValuePttl => Reply::Array(vec![Reply::Nil, Reply::Int(-2)]),
        _ => Reply::Int(0),
    }
}

/// The reply to a release, if the answers decide it. For DEL-count scripts it
/// is the count a quorum reached (the same whatever the unknown masters would
/// say); otherwise success iff a quorum succeeded.
pub fn release(conv: Convention, answers: &[Answer], q: usize, nkeys: usize) -> Option<Reply> {
    if conv == Convention::Count {
        let counts: Vec<i64> = answers.iter().filter_map(known).filter_map(int).collect();
        // Replies that are not counts do not count either.
        let unknown = answers.len() - counts.len();
        let bound = |fill: i64| {
            let mut all = counts.clone();
            all.extend(std::iter::repeat_n(fill, unknown));
            quorum_value(&mut all, q).unwrap_or(0).max(0)
        };
        let (low, high) = (bound(0), bound(nkeys as i64));
        return (low == high).then_some(Reply::Int(low));
    }
    let votes = Votes::count(answers, |f| success(conv, f, nkeys));
    if votes.carried(q) {
        return Some(success_reply(conv, answers, nkeys));
    }
    if !votes.defeated(q) {
        return None;
    }
    if conv == Convention::RedsyncRelease {
        // -1 (the key was gone) needs a quorum of -1s; 0 needs that no quorum can be.
        let missing = answers
            .iter()
            .filter_map(known)
            .filter(|f| int(f) == Some(-1))
            .count();
        if missing < q && missing + votes.unknown >= q {
            return None;
        }
    }
    Some(failure_reply(conv, answers, q))
}

/// The verdict on one value across the masters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// A quorum holds this value; the indexes of the masters that do.
    Held(Bytes, Vec<usize>),
    /// No quorum can hold any value, whatever the unknown masters hold.
    NotHeld,
}

/// Decides which value a quorum holds. `values[i]`: `None` when master `i`'s
/// answer does not count, `Some(None)` when it holds nothing, `Some(Some(v))`
/// when it holds `v`. `None` when undecided.
pub fn holding(values: &[Option<Option<Bytes>>], q: usize) -> Option<Holding> {
    let unknown = values.iter().filter(|v| v.is_none()).count();
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        let Some(Some(v)) = v else { continue };
        let holders: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, w)| matches!(w, Some(Some(w)) if w == v))
            .map(|(j, _)| j)
            .collect();
        if holders.len() >= q && holders[0] == i {
            return Some(Holding::Held(v.clone(), holders));
        }
        best = best.max(holders.len());
    }
    // Unknown masters could all hold the likeliest value, or one nobody showed.
    (best + unknown < q && unknown < q).then_some(Holding::NotHeld)
}

/// `GET` of a lock key: the token a quorum holds, or nil when none can.
pub fn get(answers: &[Answer], q: usize) -> Option<Reply> {
    let values: Vec<Option<Option<Bytes>>> = answers.iter().map(|a| known(a).map(bulk)).collect();
    Some(match holding(&values, q)? {
        Holding::Held(v, _) => Reply::Bulk(v),
        Holding::NotHeld => Reply::Nil,
    })
}

/// PTTL ordering: -1 (no expiry) outlasts every positive TTL.
fn pttl_key(p: i64) -> i64 {
    if p == -1 { i64::MAX } else { p }
}

fn pttl_unkey(p: i64) -> i64 {
    if p == i64::MAX { -1 } else { p }
}

/// The conservative PTTL among the holders: the longest that a quorum reaches.
fn quorum_pttl(mut pttls: Vec<i64>, q: usize) -> Option<i64> {
    for p in pttls.iter_mut() {
        *p = pttl_key(*p);
    }
    quorum_value(&mut pttls, q).map(pttl_unkey)
}

/// `[value or nil, pttl]` from one master (the engine's query script,
/// redlock-rb's TTL); nil alone is a key that does not exist
/// (redlock-universal's inspect).
fn value_pttl(f: &BytesFrame) -> Option<(Option<Bytes>, i64)> {
    match f {
        BytesFrame::Array(a) if a.len() == 2 => Some((bulk(&a[0]), int(&a[1])?)),
        BytesFrame::Null => Some((None, -2)),
        _ => None,
    }
}

/// The value a quorum holds and its conservative PTTL, from `[value, pttl]`
/// answers; `Some(None)` when no quorum can hold one.
fn held_pttl(answers: &[Answer], q: usize) -> Option<Option<(Bytes, i64)>> {
    let pairs: Vec<Option<(Option<Bytes>, i64)>> = answers
        .iter()
        .map(|a| known(a).and_then(value_pttl))
        .collect();
    let values: Vec<Option<Option<Bytes>>> = pairs
        .iter()
        .map(|p| p.as_ref().map(|(v, _)| v.clone()))
        .collect();
    Some(match holding(&values, q)? {
        Holding::Held(v, holders) => {
            let pttls = holders
                .iter()
                .filter_map(|&i| pairs[i].as_ref().map(|p| p.1))
                .collect();
            Some((v, quorum_pttl(pttls, q).unwrap_or(-2)))
        }
        Holding::NotHeld => None,
    })
}

/// The value a quorum holds and its conservative PTTL, from `[value, pttl]`
/// answers: `Some(None)` when no quorum can hold one, `None` when undecided.
pub fn held_with_pttl(answers: &[Answer], q: usize) -> Option<Option<(Bytes, i64)>> {
    held_pttl(answers, q)
}

/// `TTL`/`PTTL` of a lock: the conservative PTTL of the value a quorum holds,
/// -2 when no quorum can hold one.
pub fn ttl(answers: &[Answer], q: usize, millis: bool) -> Option<Reply> {
    let pttl = match held_pttl(answers, q)? {
        Some((_, p)) => p,
        None => -2,
    };
    Some(if millis || pttl < 0 {
        Reply::Int(pttl)
    } else {
        // Redis rounds: (ms + 500) / 1000.
        Reply::Int((pttl + 500) / 1000)
    })
}

/// What aioredlock's TTL script answers for a lock the caller does not hold.
const TTL_NOT_OWNED: &str = "ERROR";

/// A script's own "no" that comes as an error reply, as a vote: for
/// [`Convention::TtlOrError`], `-ERROR` is a master saying the caller does not
/// hold the lock (any other error still does not count).
fn own_error_as_no(conv: Convention, answers: &[Answer]) -> Option<Vec<Answer>> {
    let theirs = |a: &Answer| matches!(a, Ok(BytesFrame::Error(e)) if &e[..] == TTL_NOT_OWNED);
    (conv == Convention::TtlOrError && answers.iter().any(theirs)).then(|| {
        answers
            .iter()
            .map(|a| {
                if theirs(a) {
                    Ok(BytesFrame::Null)
                } else {
                    a.clone()
                }
            })
            .collect()
    })
}

/// The reply to a read script.
pub fn query(conv: Convention, answers: &[Answer], q: usize) -> Option<Reply> {
    if let Some(answers) = own_error_as_no(conv, answers) {
        return query(conv, &answers, q);
    }
    if matches!(conv, Convention::ValuePttl | Convention::ValuePttlOrNil) {
        return Some(match held_pttl(answers, q)? {
            Some((v, p)) => Reply::Array(vec![Reply::Bulk(v), Reply::Int(p)]),
            None => failure_reply(conv, answers, q),
        });
    }
    // Whether a master's reply says the caller owns the lock, and its PTTL then.
    let owned = |f: &BytesFrame| -> Option<i64> {
        let p = int(f)?;
        match conv {
            Convention::PttlOrZero => (p > 0).then_some(p),
            Convention::PttlOrMinus3 => (p >= 0 || p == -1).then_some(p),
            _ => Some(p),
        }
    };
    let votes = Votes::count(answers, |f| owned(f).is_some());
    if votes.carried(q) {
        let pttls = answers.iter().filter_map(known).filter_map(owned).collect();
        return quorum_pttl(pttls, q).map(Reply::Int);
    }
    votes.defeated(q).then(|| match conv {
        Convention::PttlOrZero => Reply::Int(0),
        _ => failure_reply(conv, answers, q),
    })
}

/// For multi-key reads (`MGET`) and per-key deletes: how many of `nkeys` keys a
/// quorum holds, if decided for every key. `per_key(answer, j)` is key `j`'s
/// value in one answer (`None`: not held there).
pub fn keys_held(
    answers: &[Answer],
    nkeys: usize,
    q: usize,
    per_key: impl Fn(&BytesFrame, usize) -> Option<Bytes>,
) -> Option<Reply> {
    let mut held = 0;
    for j in 0..nkeys {
        let values: Vec<Option<Option<Bytes>>> = answers
            .iter()
            .map(|a| {
                known(a).and_then(|f| match f {
                    BytesFrame::Array(items) if items.len() == nkeys => Some(per_key(f, j)),
                    _ => None,
                })
            })
            .collect();
        if let Holding::Held(..) = holding(&values, q)? {
            held += 1;
        }
    }
    Some(Reply::Int(held))
}

/// What the first phase of issuing a fencing token found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceRead {
    /// No quorum holds the lock with the caller's token.
    NotHeld,
    /// A quorum holds it with that token.
    Held {
        /// The largest counter among the masters that answered (a quorum at least).
        max: i64,
        /// The fence a quorum of holders remembers issuing for this token.
        issued: Option<i64>,
    },
}

/// `[held 0|1, counter, fence issued for this token or 0]` from one master.
fn fence_answer(f: &BytesFrame) -> Option<(bool, i64, i64)> {
    match f {
        BytesFrame::Array(a) if a.len() == 3 => Some((int(&a[0])? == 1, int(&a[1])?, int(&a[2])?)),
        _ => None,
    }
}

/// The verdict of the read phase, if decided: held needs a quorum of holders
/// (whose counters then cover a quorum, as the majority scheme requires), not
/// held needs that no quorum can hold it. A fence some holders remember is
/// waited for while the missing answers could make a quorum remember it,
/// unless `last` (the deadline passed: a new fence is issued instead).
pub fn fence_read(answers: &[Answer], q: usize, last: bool) -> Option<FenceRead> {
    let read: Vec<Option<(bool, i64, i64)>> = answers
        .iter()
        .map(|a| known(a).and_then(fence_answer))
        .collect();
    let unknown = read.iter().filter(|r| r.is_none()).count();
    let holders: Vec<(i64, i64)> = read
        .iter()
        .flatten()
        .filter(|r| r.0)
        .map(|r| (r.1, r.2))
        .collect();
    if holders.len() >= q {
        let max = read.iter().flatten().map(|r| r.1).max().unwrap_or(0);
        let mut issued: Vec<i64> = holders.iter().map(|h| h.1).filter(|&f| f > 0).collect();
        issued.sort_unstable();
        let (fence, by) = issued
            .chunk_by(|a, b| a == b)
            .map(|same| (same[0], same.len()))
            .max_by_key(|&(_, n)| n)
            .unwrap_or((0, 0));
        if by >= q {
            return Some(FenceRead::Held {
                max,
                issued: Some(fence),
            });
        }
        if by > 0 && by + unknown >= q && !last {
            return None;
        }
        return Some(FenceRead::Held { max, issued: None });
    }
    (holders.len() + unknown < q).then_some(FenceRead::NotHeld)
}
