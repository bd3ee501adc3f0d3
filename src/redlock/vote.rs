//! Vote aggregation: from the replies of the masters (some missing) to the one
//! reply a single Redis would give. Pure functions over decoded frames.

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::quorum::quorum_value;
use super::scripts::Convention;
use crate::protocol::Reply;

/// One master's reply, if it answered in time.
pub type Answer = Option<BytesFrame>;

fn int(f: &BytesFrame) -> Option<i64> {
    match f {
        BytesFrame::Integer(i) => Some(*i),
        _ => None,
    }
}

fn is_ok(f: &BytesFrame) -> bool {
    matches!(f, BytesFrame::SimpleString(s) if &s[..] == b"OK")
}

/// Whether a master's reply to a script means success (`nkeys`: the script's key count).
pub fn success(conv: Convention, f: &BytesFrame, nkeys: usize) -> bool {
    match conv {
        Convention::Count | Convention::KeysZero => int(f) == Some(nkeys as i64),
        Convention::OneZero | Convention::OneNil | Convention::RedsyncRelease => int(f) == Some(1),
        Convention::OkNil | Convention::OkErr => is_ok(f),
        Convention::Generic => is_ok(f) || int(f).is_some_and(|i| i >= 1),
        Convention::PttlOrZero
        | Convention::PttlOrMinus3
        | Convention::PttlOrNil
        | Convention::ValuePttl => false,
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
        Convention::Generic => answers
            .iter()
            .flatten()
            .find(|f| success(conv, f, nkeys))
            .map(to_reply)
            .unwrap_or(Reply::OK),
        Convention::Count | Convention::KeysZero => Reply::Int(nkeys as i64),
        Convention::OkNil | Convention::OkErr => Reply::OK,
        _ => Reply::Int(1),
    }
}

/// The reply for a refused acquisition, failed extension or failed release.
pub fn failure_reply(conv: Convention, answers: &[Answer], q: usize) -> Reply {
    match conv {
        Convention::Generic => answers
            .iter()
            .flatten()
            .find(|f| !success(conv, f, 0) && !matches!(f, BytesFrame::Error(_)))
            .map(to_reply)
            .unwrap_or(Reply::Nil),
        Convention::OkNil | Convention::OneNil | Convention::PttlOrNil => Reply::Nil,
        Convention::OkErr => Reply::bulk_static("ERR"),
        Convention::RedsyncRelease => {
            // -1: the key is gone on a quorum (the lock had expired).
            let missing = answers
                .iter()
                .flatten()
                .filter(|f| int(f) == Some(-1))
                .count();
            Reply::Int(if missing >= q { -1 } else { 0 })
        }
        Convention::PttlOrMinus3 => Reply::Int(-3),
        Convention::ValuePttl => Reply::Array(vec![Reply::Nil, Reply::Int(-2)]),
        _ => Reply::Int(0),
    }
}

/// Counts the masters whose reply means success.
pub fn count_success(conv: Convention, answers: &[Answer], nkeys: usize) -> usize {
    answers
        .iter()
        .flatten()
        .filter(|f| success(conv, f, nkeys))
        .count()
}

/// The reply to a release: for DEL-count scripts the count a quorum reached,
/// otherwise success iff a quorum succeeded.
pub fn release_reply(conv: Convention, answers: &[Answer], q: usize, nkeys: usize) -> Reply {
    if conv == Convention::Count {
        let mut counts: Vec<i64> = answers.iter().flatten().filter_map(int).collect();
        return Reply::Int(quorum_value(&mut counts, q).unwrap_or(0).max(0));
    }
    if count_success(conv, answers, nkeys) >= q {
        success_reply(conv, answers, nkeys)
    } else {
        failure_reply(conv, answers, q)
    }
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

/// The reply to a query script.
pub fn query_reply(conv: Convention, answers: &[Answer], q: usize) -> Reply {
    match conv {
        Convention::ValuePttl => {
            let pairs: Vec<(Option<Bytes>, i64)> = answers
                .iter()
                .flatten()
                .filter_map(|f| match f {
                    BytesFrame::Array(a) if a.len() == 2 => {
                        let v = match &a[0] {
                            BytesFrame::BulkString(b) => Some(b.clone()),
                            _ => None,
                        };
                        Some((v, int(&a[1])?))
                    }
                    _ => None,
                })
                .collect();
            let values: Vec<Option<Bytes>> = pairs.iter().map(|p| p.0.clone()).collect();
            match value_quorum(&values, q) {
                Some((v, holders)) => {
                    let pttls = holders.iter().map(|&i| pairs[i].1).collect();
                    let pttl = quorum_pttl(pttls, q).unwrap_or(-2);
                    Reply::Array(vec![Reply::Bulk(v), Reply::Int(pttl)])
                }
                None => failure_reply(conv, answers, q),
            }
        }
        _ => {
            let owned = |p: i64| match conv {
                Convention::PttlOrZero => p > 0,
                Convention::PttlOrMinus3 => p >= 0 || p == -1,
                _ => true,
            };
            let pttls: Vec<i64> = answers
                .iter()
                .flatten()
                .filter_map(int)
                .filter(|&p| owned(p))
                .collect();
            match quorum_pttl(pttls, q) {
                Some(p) => Reply::Int(p),
                None if conv == Convention::PttlOrZero => Reply::Int(0),
                None => failure_reply(conv, answers, q),
            }
        }
    }
}

/// The value held by at least `q` masters, and which answers hold it.
pub fn value_quorum(values: &[Option<Bytes>], q: usize) -> Option<(Bytes, Vec<usize>)> {
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        let holders: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, w)| w.as_ref() == Some(v))
            .map(|(j, _)| j)
            .collect();
        if holders.len() >= q && holders[0] == i {
            return Some((v.clone(), holders));
        }
    }
    None
}

/// A bulk-or-nil reply's value.
pub fn bulk(f: &BytesFrame) -> Option<Bytes> {
    match f {
        BytesFrame::BulkString(b) => Some(b.clone()),
        _ => None,
    }
}

/// `TTL`/`PTTL` of a lock from `[value, pttl]` answers: the conservative PTTL of
/// the value a quorum holds; -2 when no value has a quorum.
pub fn ttl_reply(answers: &[Answer], q: usize, millis: bool) -> Reply {
    let pttl = match query_reply(Convention::ValuePttl, answers, q) {
        Reply::Array(a) => match a.get(1) {
            Some(Reply::Int(p)) => *p,
            _ => -2,
        },
        _ => -2,
    };
    if millis || pttl < 0 {
        Reply::Int(pttl)
    } else {
        // Redis rounds: (ms + 500) / 1000.
        Reply::Int((pttl + 500) / 1000)
    }
}

/// For multi-key reads (`MGET`) and per-key deletes: how many of `nkeys` keys
/// have a quorum. `per_key(answer, j)` extracts key `j`'s vote from one answer.
pub fn keys_with_quorum(
    answers: &[Answer],
    nkeys: usize,
    q: usize,
    per_key: impl Fn(&BytesFrame, usize) -> Option<Bytes>,
) -> i64 {
    (0..nkeys)
        .filter(|&j| {
            let values: Vec<Option<Bytes>> = answers
                .iter()
                .map(|a| a.as_ref().and_then(|f| per_key(f, j)))
                .collect();
            value_quorum(&values, q).is_some()
        })
        .count() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn i(n: i64) -> Answer {
        Some(BytesFrame::Integer(n))
    }
    fn ok() -> Answer {
        Some(BytesFrame::SimpleString(Bytes::from_static(b"OK")))
    }
    fn b(s: &'static str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::from_static(s.as_bytes()))
    }
    fn pair(v: Option<&'static str>, p: i64) -> Answer {
        Some(BytesFrame::Array(vec![
            v.map(b).unwrap_or(BytesFrame::Null),
            BytesFrame::Integer(p),
        ]))
    }

    #[test]
    fn release_counts_need_a_quorum() {
        assert_eq!(
            release_reply(Convention::Count, &[i(1), i(1), i(0)], 2, 1),
            Reply::Int(1)
        );
        assert_eq!(
            release_reply(Convention::Count, &[i(1), i(0), None], 2, 1),
            Reply::Int(0)
        );
        assert_eq!(
            release_reply(Convention::Count, &[i(2), i(2), i(1)], 2, 2),
            Reply::Int(2)
        );
        assert_eq!(
            release_reply(Convention::OkNil, &[ok(), ok(), None], 2, 1),
            Reply::OK
        );
        assert_eq!(
            release_reply(Convention::OkNil, &[ok(), None, None], 2, 1),
            Reply::Nil
        );
        assert_eq!(
            release_reply(Convention::RedsyncRelease, &[i(-1), i(-1), i(1)], 2, 1),
            Reply::Int(-1)
        );
        assert_eq!(
            release_reply(Convention::RedsyncRelease, &[i(0), i(-1), i(1)], 2, 1),
            Reply::Int(0)
        );
    }

    #[test]
    fn queries_answer_from_a_quorum() {
        // pottery locked(): owned on two masters.
        assert_eq!(
            query_reply(Convention::PttlOrZero, &[i(900), i(950), i(0)], 2),
            Reply::Int(900)
        );
        assert_eq!(
            query_reply(Convention::PttlOrZero, &[i(900), i(0), None], 2),
            Reply::Int(0)
        );
        assert_eq!(
            query_reply(Convention::PttlOrMinus3, &[i(-3), i(-3), i(5)], 2),
            Reply::Int(-3)
        );
        assert_eq!(
            query_reply(Convention::PttlOrMinus3, &[i(-1), i(-1), i(5)], 2),
            Reply::Int(-1)
        );
        // redlock-rb: the value held by a quorum, with the conservative TTL.
        let a = [
            pair(Some("x"), 100),
            pair(Some("y"), 500),
            pair(Some("x"), 300),
        ];
        assert_eq!(
            query_reply(Convention::ValuePttl, &a, 2),
            Reply::Array(vec![Reply::Bulk(Bytes::from_static(b"x")), Reply::Int(100)])
        );
        let a = [pair(Some("x"), 100), pair(Some("y"), 500), pair(None, -2)];
        assert_eq!(
            query_reply(Convention::ValuePttl, &a, 2),
            Reply::Array(vec![Reply::Nil, Reply::Int(-2)])
        );
    }

    #[test]
    fn ttl_rounds_like_redis() {
        let a = [pair(Some("x"), 1499), pair(Some("x"), 1600), None];
        assert_eq!(ttl_reply(&a, 2, true), Reply::Int(1499));
        assert_eq!(ttl_reply(&a, 2, false), Reply::Int(1));
        let a = [
            pair(Some("x"), -1),
            pair(Some("x"), -1),
            pair(Some("x"), 10),
        ];
        assert_eq!(ttl_reply(&a, 2, false), Reply::Int(-1));
        assert_eq!(ttl_reply(&[None, None, None], 2, true), Reply::Int(-2));
    }

    #[test]
    fn a_minority_value_is_not_a_lock() {
        let v = |s: &'static str| Some(Bytes::from_static(s.as_bytes()));
        assert!(value_quorum(&[v("a"), v("b"), None], 2).is_none());
        assert_eq!(
            value_quorum(&[v("a"), v("b"), v("b")], 2).map(|x| x.1),
            Some(vec![1, 2])
        );
    }
}
