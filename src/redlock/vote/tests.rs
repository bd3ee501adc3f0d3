use proptest::prelude::*;

use super::*;

fn i(n: i64) -> Answer {
    Ok(BytesFrame::Integer(n))
}
fn ok() -> Answer {
    Ok(BytesFrame::SimpleString(Bytes::from_static(b"OK")))
}
fn err(text: &'static str) -> Answer {
    Ok(BytesFrame::Error(text.into()))
}
fn b(s: &'static str) -> BytesFrame {
    BytesFrame::BulkString(Bytes::from_static(s.as_bytes()))
}
fn bulk_or_nil(v: Option<&'static str>) -> Answer {
    Ok(v.map(b).unwrap_or(BytesFrame::Null))
}
fn pair(v: Option<&'static str>, p: i64) -> Answer {
    Ok(BytesFrame::Array(vec![
        v.map(b).unwrap_or(BytesFrame::Null),
        BytesFrame::Integer(p),
    ]))
}
const T: Answer = Err(NoReply::Timeout);

#[test]
fn release_counts_need_a_quorum() {
    let c = Convention::Count;
    assert_eq!(release(c, &[i(1), i(1), i(0)], 2, 1), Some(Reply::Int(1)));
    assert_eq!(release(c, &[i(1), i(0), i(0)], 2, 1), Some(Reply::Int(0)));
    assert_eq!(release(c, &[i(2), i(2), i(1)], 2, 2), Some(Reply::Int(2)));
    assert_eq!(
        release(Convention::OkNil, &[ok(), ok(), T], 2, 1),
        Some(Reply::OK)
    );
    assert_eq!(
        release(Convention::RedsyncRelease, &[i(-1), i(-1), i(1)], 2, 1),
        Some(Reply::Int(-1))
    );
    assert_eq!(
        release(Convention::RedsyncRelease, &[i(0), i(-1), i(1)], 2, 1),
        Some(Reply::Int(0))
    );
}

#[test]
fn a_release_the_missing_masters_could_tip_is_undecided() {
    let c = Convention::Count;
    // One released, one did not hold it, one timed out: it could have been held
    // by a quorum (and released) or not.
    assert_eq!(release(c, &[i(1), i(0), T], 2, 1), None);
    // One held it, two are missing: undecided, not "0".
    assert_eq!(release(c, &[i(1), T, Err(NoReply::Down)], 2, 1), None);
    // An error reply is no vote either.
    assert_eq!(release(c, &[i(1), err("READONLY x"), T], 2, 1), None);
    assert_eq!(release(Convention::OkNil, &[ok(), T, T], 2, 1), None);
    // Two that did not hold it decide "0" whatever the third says.
    assert_eq!(release(c, &[i(0), i(0), T], 2, 1), Some(Reply::Int(0)));
    assert_eq!(
        release(
            Convention::OkNil,
            &[Ok(BytesFrame::Null), Ok(BytesFrame::Null), T],
            2,
            1
        ),
        Some(Reply::Nil)
    );
    // redsync: -1 needs a quorum of -1s.
    assert_eq!(
        release(Convention::RedsyncRelease, &[i(-1), i(0), T], 2, 1),
        None
    );
}

#[test]
fn reads_answer_from_a_quorum_or_not_at_all() {
    assert_eq!(
        get(&[bulk_or_nil(Some("t")), bulk_or_nil(Some("t")), T], 2),
        Some(Reply::Bulk(Bytes::from_static(b"t")))
    );
    assert_eq!(
        get(&[bulk_or_nil(None), bulk_or_nil(None), T], 2),
        Some(Reply::Nil)
    );
    // The holder that would make a quorum is the one that did not answer.
    assert_eq!(
        get(&[bulk_or_nil(Some("t")), bulk_or_nil(None), T], 2),
        None
    );
    assert_eq!(get(&[T, T, bulk_or_nil(None)], 2), None);
    // Two different tokens and a missing master: undecided.
    assert_eq!(
        get(&[bulk_or_nil(Some("a")), bulk_or_nil(Some("b")), T], 2),
        None
    );
    assert_eq!(
        get(
            &[
                bulk_or_nil(Some("a")),
                bulk_or_nil(Some("b")),
                bulk_or_nil(None)
            ],
            2
        ),
        Some(Reply::Nil)
    );
}

#[test]
fn queries_answer_from_a_quorum() {
    // pottery locked(): owned on two masters.
    assert_eq!(
        query(Convention::PttlOrZero, &[i(900), i(950), i(0)], 2),
        Some(Reply::Int(900))
    );
    assert_eq!(
        query(Convention::PttlOrZero, &[i(900), i(0), i(0)], 2),
        Some(Reply::Int(0))
    );
    assert_eq!(query(Convention::PttlOrZero, &[i(900), i(0), T], 2), None);
    assert_eq!(
        query(Convention::PttlOrMinus3, &[i(-3), i(-3), i(5)], 2),
        Some(Reply::Int(-3))
    );
    assert_eq!(
        query(Convention::PttlOrMinus3, &[i(-1), i(-1), i(5)], 2),
        Some(Reply::Int(-1))
    );
    // aioredlock's TTL: its -ERROR is a "no"; other errors do not count.
    let c = Convention::TtlOrError;
    assert_eq!(
        query(c, &[i(9), i(10), err("ERROR")], 2),
        Some(Reply::Int(9))
    );
    let not_owned = Some(Reply::Error("ERROR".into()));
    assert_eq!(query(c, &[i(9), err("ERROR"), err("ERROR")], 2), not_owned);
    assert_eq!(query(c, &[i(9), err("ERROR"), T], 2), None);
    assert_eq!(query(c, &[i(9), err("ERROR"), err("OOM no")], 2), None);
    assert_eq!(query(c, &[err("ERROR"), err("ERROR"), T], 2), not_owned);
    // redlock-universal's inspect: nil is a key that does not exist.
    let c = Convention::ValuePttlOrNil;
    let nil = || Ok(BytesFrame::Null);
    assert_eq!(
        query(c, &[pair(Some("x"), 900), pair(Some("x"), 800), nil()], 2),
        Some(Reply::Array(vec![Reply::Bulk("x".into()), Reply::Int(800)]))
    );
    assert_eq!(
        query(c, &[pair(Some("x"), 900), nil(), nil()], 2),
        Some(Reply::Nil)
    );
    assert_eq!(query(c, &[pair(Some("x"), 900), nil(), T], 2), None);
    // redlock-rb: the value held by a quorum, with the conservative TTL.
    let a = [
        pair(Some("x"), 100),
        pair(Some("y"), 500),
        pair(Some("x"), 300),
    ];
    assert_eq!(
        query(Convention::ValuePttl, &a, 2),
        Some(Reply::Array(vec![
            Reply::Bulk(Bytes::from_static(b"x")),
            Reply::Int(100)
        ]))
    );
    let a = [pair(Some("x"), 100), pair(Some("y"), 500), pair(None, -2)];
    assert_eq!(
        query(Convention::ValuePttl, &a, 2),
        Some(Reply::Array(vec![Reply::Nil, Reply::Int(-2)]))
    );
}

#[test]
fn ttl_rounds_like_redis() {
    let a = [pair(Some("x"), 1499), pair(Some("x"), 1600), T];
    assert_eq!(ttl(&a, 2, true), Some(Reply::Int(1499)));
    assert_eq!(ttl(&a, 2, false), Some(Reply::Int(1)));
    let a = [
        pair(Some("x"), -1),
        pair(Some("x"), -1),
        pair(Some("x"), 10),
    ];
    assert_eq!(ttl(&a, 2, false), Some(Reply::Int(-1)));
    assert_eq!(
        ttl(&[pair(None, -2), pair(None, -2), T], 2, true),
        Some(Reply::Int(-2))
    );
    assert_eq!(
        ttl(&[T, T, T], 2, true),
        None,
        "-2 only when the masters said so"
    );
}

#[test]
fn multi_key_reads_decide_every_key() {
    let mget = |a: Option<&'static str>, b2: Option<&'static str>| -> Answer {
        Ok(BytesFrame::Array(vec![
            a.map(b).unwrap_or(BytesFrame::Null),
            b2.map(b).unwrap_or(BytesFrame::Null),
        ]))
    };
    let per_key = |f: &BytesFrame, j: usize| match f {
        BytesFrame::Array(a) => a.get(j).and_then(bulk),
        _ => None,
    };
    let a = [mget(Some("t"), None), mget(Some("t"), None), T];
    assert_eq!(keys_held(&a, 2, 2, per_key), Some(Reply::Int(1)));
    let a = [mget(Some("t"), Some("u")), mget(Some("t"), None), T];
    assert_eq!(
        keys_held(&a, 2, 2, per_key),
        None,
        "the second key hangs on the missing master"
    );
}

#[test]
fn a_minority_value_is_not_a_lock() {
    let v = |s: &'static str| Some(Some(Bytes::from_static(s.as_bytes())));
    assert_eq!(
        holding(&[v("a"), v("b"), Some(None)], 2),
        Some(Holding::NotHeld)
    );
    assert_eq!(
        holding(&[v("a"), v("b"), v("b")], 2),
        Some(Holding::Held(Bytes::from_static(b"b"), vec![1, 2]))
    );
}

/// Fills every answer that does not count with each of `fills`, in every combination.
fn completions(answers: &[Answer], fills: &[Answer]) -> Vec<Vec<Answer>> {
    let mut out = vec![Vec::new()];
    for a in answers {
        let options: Vec<Answer> = if known(a).is_some() {
            vec![a.clone()]
        } else {
            fills.to_vec()
        };
        out = out
            .into_iter()
            .flat_map(|prefix| {
                options.iter().map(move |o| {
                    let mut p = prefix.clone();
                    p.push(o.clone());
                    p
                })
            })
            .collect();
    }
    out
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(i(0)),
        Just(i(1)),
        Just(T),
        Just(Err(NoReply::Lost)),
        Just(err("BUSY x")),
    ]
}

fn value_answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(bulk_or_nil(None)),
        Just(bulk_or_nil(Some("a"))),
        Just(bulk_or_nil(Some("b"))),
        Just(T),
    ]
}

proptest! {
    /// A decided release is what every completion of the missing answers gives.
    #[test]
    fn decided_releases_hold_whatever_the_missing_masters_say(
        answers in prop::collection::vec(answer(), 1..6),
    ) {
        let q = answers.len() / 2 + 1;
        for conv in [Convention::Count, Convention::OneZero] {
            let fills = [i(0), i(1)];
            let all: Vec<Option<Reply>> = completions(&answers, &fills)
                .iter()
                .map(|c| release(conv, c, q, 1))
                .collect();
            match release(conv, &answers, q, 1) {
                Some(r) => prop_assert!(all.iter().all(|x| x.as_ref() == Some(&r)), "{conv:?} {answers:?}"),
                // Undecided only when the completions really disagree.
                None => prop_assert!(all.windows(2).any(|w| w[0] != w[1]), "{conv:?} {answers:?}"),
            }
        }
    }

    /// Likewise for reads of a lock key.
    #[test]
    fn decided_reads_hold_whatever_the_missing_masters_say(
        answers in prop::collection::vec(value_answer(), 1..6),
    ) {
        let q = answers.len() / 2 + 1;
        let fills = [bulk_or_nil(None), bulk_or_nil(Some("a")), bulk_or_nil(Some("b")), bulk_or_nil(Some("c"))];
        let all: Vec<Option<Reply>> = completions(&answers, &fills).iter().map(|c| get(c, q)).collect();
        if let Some(r) = get(&answers, q) {
            prop_assert!(all.iter().all(|x| x.as_ref() == Some(&r)), "{answers:?}");
        }
    }
}

mod fences {
    use super::super::*;

    fn read(held: bool, max: i64, mine: i64) -> Answer {
        Ok(BytesFrame::Array(vec![
            BytesFrame::Integer(held as i64),
            BytesFrame::Integer(max),
            BytesFrame::Integer(mine),
        ]))
    }

    #[test]
    fn the_read_phase_needs_a_quorum_of_holders() {
        let lost = Err(NoReply::Timeout);
        assert_eq!(
            fence_read(
                &[read(true, 4, 0), read(true, 7, 0), lost.clone()],
                2,
                false
            ),
            Some(FenceRead::Held {
                max: 7,
                issued: None
            })
        );
        // A non-holder's counter counts toward the maximum too.
        assert_eq!(
            fence_read(
                &[read(true, 4, 0), read(true, 5, 0), read(false, 9, 0)],
                2,
                false
            ),
            Some(FenceRead::Held {
                max: 9,
                issued: None
            })
        );
        assert_eq!(
            fence_read(&[read(true, 4, 0), lost.clone(), lost.clone()], 2, false),
            None
        );
        assert_eq!(
            fence_read(
                &[read(false, 4, 0), read(false, 4, 0), lost.clone()],
                2,
                false
            ),
            Some(FenceRead::NotHeld)
        );
        let quarantined = Err(NoReply::Quarantined);
        assert_eq!(
            fence_read(&[read(true, 4, 0), quarantined, lost], 2, false),
            None
        );
    }

    #[test]
    fn a_fence_is_remembered_only_by_a_quorum() {
        assert_eq!(
            fence_read(
                &[read(true, 8, 8), read(true, 8, 8), read(true, 7, 0)],
                2,
                false
            ),
            Some(FenceRead::Held {
                max: 8,
                issued: Some(8)
            })
        );
        assert_eq!(
            fence_read(
                &[read(true, 8, 8), read(true, 7, 0), read(true, 7, 0)],
                2,
                false
            ),
            Some(FenceRead::Held {
                max: 8,
                issued: None
            })
        );
    }
}

#[test]
fn a_declared_script_refusal_is_the_declared_failure_never_a_master_reply() {
    use crate::config::{ScriptFailure as F, ScriptSuccess as S};
    // Masters refused with nil and with an error: a library reading anything
    // but an error as success must not get the nil.
    let answers: Vec<Answer> = vec![
        Ok(BytesFrame::Null),
        Ok(BytesFrame::Error("ERROR".into())),
        Ok(BytesFrame::Null),
    ];
    let failure = |f| failure_reply(Convention::Declared(S::Any, f), &answers, 2);
    assert!(matches!(failure(F::Error), Reply::Error(e) if e.starts_with("LOCKFAILED ")));
    assert_eq!(failure(F::Nil), Reply::Nil);
    assert_eq!(failure(F::Zero), Reply::Int(0));
    // `any`: nil is a success, an error never is.
    assert!(success(
        Convention::Declared(S::Any, F::Error),
        &BytesFrame::Null,
        1
    ));
    assert!(!success(
        Convention::Declared(S::Any, F::Error),
        &BytesFrame::Error("ERROR".into()),
        1
    ));
    assert!(!success(
        Convention::Declared(S::One, F::Zero),
        &BytesFrame::Integer(2),
        1
    ));
    assert!(success(
        Convention::Declared(S::Positive, F::Zero),
        &BytesFrame::Integer(2),
        1
    ));
}

fn arr(items: &[i64]) -> Answer {
    Ok(BytesFrame::Array(
        items.iter().map(|&n| BytesFrame::Integer(n)).collect(),
    ))
}

#[test]
fn code_arrays_vote_on_their_first_element() {
    // redlock-universal's atomic extend: [1, pttl before] from a quorum.
    let c = Convention::CodePttl;
    assert!(success(c, &arr(&[1, 500]).unwrap(), 1));
    assert!(!success(c, &arr(&[0, 500]).unwrap(), 1));
    let answers = [arr(&[1, 500]), arr(&[1, 400]), arr(&[-1, -2])];
    assert_eq!(
        success_reply(c, &answers, 1),
        Reply::Array(vec![Reply::Int(1), Reply::Int(400)])
    );
    // "Too late" needs a quorum saying so; otherwise not held.
    let late = [arr(&[0, 30]), arr(&[0, 20]), arr(&[-1, -2])];
    assert_eq!(
        failure_reply(c, &late, 2),
        Reply::Array(vec![Reply::Int(0), Reply::Int(20)])
    );
    let mixed = [arr(&[0, 30]), arr(&[-1, 900]), arr(&[-1, -2])];
    assert_eq!(
        failure_reply(c, &mixed, 2),
        Reply::Array(vec![Reply::Int(-1), Reply::Int(-2)])
    );
    // Batch acquire: [1, n] when a quorum took every key; a refusal names
    // the key most refusing masters named.
    let c = Convention::BatchCode;
    assert_eq!(
        success_reply(c, &[arr(&[1, 3])], 3),
        Reply::Array(vec![Reply::Int(1), Reply::Int(3)])
    );
    let named = |i: i64, k: &'static str| -> Answer {
        Ok(BytesFrame::Array(vec![
            BytesFrame::Integer(0),
            BytesFrame::Integer(i),
            b(k),
        ]))
    };
    let refused = [named(2, "lock:b"), named(1, "lock:a"), named(2, "lock:b")];
    assert_eq!(
        failure_reply(c, &refused, 2),
        Reply::Array(vec![
            Reply::Int(0),
            Reply::Int(2),
            Reply::Bulk("lock:b".into())
        ])
    );
    assert_eq!(
        failure_reply(c, &[named(3, "lock:c"), named(1, "lock:a"), T], 2),
        Reply::Array(vec![
            Reply::Int(0),
            Reply::Int(1),
            Reply::Bulk("lock:a".into())
        ])
    );
}
