//! Lock-key commands against the proxy and against a real redis-server, side by
//! side: wherever Redis answers with an error (syntax, arity, types, ranges),
//! the proxy answers the same error; wherever Redis answers a lock operation,
//! the proxy answers the same; a form that is no lock operation (no NX, XX,
//! GET, KEEPTTL) is the only place it may differ, with its own refusal.

use crate::common::*;

/// `K` stands for the key: `lock:dN` on the proxy, `dN` on Redis (fresh each time).
const CORPUS: &[&[&str]] = &[
    &["SET", "K", "t"],
    &["SET", "K"],
    &["SET"],
    &["SET", "K", "t", "NX"],
    &["SET", "K", "t", "nx", "px", "100"],
    &["set", "K", "t", "Px", "100", "nX"],
    &["SET", "K", "t", "NX", "PX", "10", "PX", "20000"],
    &["SET", "K", "t", "NX", "EX", "1", "EX", "30"],
    &["SET", "K", "t", "NX", "EX", "1", "PX", "1"],
    &["SET", "K", "t", "NX", "PX", "1", "EX", "1"],
    &["SET", "K", "t", "NX", "PXAT", "1", "EXAT", "1"],
    &["SET", "K", "t", "NX", "PX", "abc", "XX"],
    &["SET", "K", "t", "NX", "PX", "abc"],
    &["SET", "K", "t", "NX", "EX", "1.5"],
    &["SET", "K", "t", "NX", "PX", "+5"],
    &["SET", "K", "t", "NX", "PX", " 5"],
    &["SET", "K", "t", "NX", "PX", "05"],
    &["SET", "K", "t", "NX", "PX", "9223372036854775807"],
    &["SET", "K", "t", "NX", "PX", "9223372036854775808"],
    &["SET", "K", "t", "NX", "EX", "9223372036854775"],
    &["SET", "K", "t", "NX", "EX", "9223372036854776"],
    &["SET", "K", "t", "NX", "PX", "0"],
    &["SET", "K", "t", "NX", "EX", "-5"],
    &["SET", "K", "t", "NX", "PX"],
    &["SET", "K", "t", "NX", "PX", "100", "EX"],
    &["SET", "K", "t", "NX", "XX"],
    &["SET", "K", "t", "XX", "NX"],
    &["SET", "K", "t", "NX", "NX", "PX", "100"],
    &["SET", "K", "t", "NX", "KEEPTTL", "PX", "5"],
    &["SET", "K", "t", "NX", "PX", "5", "KEEPTTL"],
    &["SET", "K", "t", "NX", "KEEPTTL"],
    &["SET", "K", "t", "NX", "GET"],
    &["SET", "K", "t", "XX"],
    &["SET", "K", "t", "NX", "FOO"],
    &["SET", "K", "t", "NX", "PXAT", "1"],
    &["SET", "K", "t", "NX", "EXAT", "1"],
    &["SET", "K", "t", "NX", "EXAT", "99999999999"],
    &["SET", "K", "t", "NX", "PXAT", "9223372036854775807"],
    &["SET", "K", "t", "PX", "100"],
    &["SETNX", "K", "t"],
    &["SETNX", "K"],
    &["SETNX", "K", "t", "x"],
    &["setnx", "K", "t"],
    &["GET", "K"],
    &["GET", "K", "x"],
    &["PTTL", "K"],
    &["PTTL", "K", "x"],
    &["TTL", "K"],
    &["TTL", "K", "x"],
    &["EXISTS", "K"],
    &["EXISTS", "K", "K"],
    &["DEL", "K"],
    &["UNLINK", "K", "K"],
    &["EVAL", "RELEASE", "1", "K", "t"],
    &["EVAL", "RELEASE", "x", "K", "t"],
    &["EVAL", "RELEASE", "2", "K"],
    &["EVALSHA", "RELEASE_SHA", "1", "K", "t"],
];

fn refusal(reply: &str) -> bool {
    reply.starts_with("-ERR lock keys accept only lock operations")
        || reply.contains("is not allowed on lock keys")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_key_commands_answer_as_redis_does() {
    let h = Harness::start(3).await;
    let mut proxy = h.client().await;
    let mut redis = RawClient::connect(([127, 0, 0, 1], h.backend.port).into()).await;
    // Both know the release script's text, so EVALSHA means the same on both.
    redis.cmd(&["SCRIPT", "LOAD", RELEASE]).await;
    proxy.cmd(&["SCRIPT", "LOAD", RELEASE]).await;
    let mut mismatches = Vec::new();
    for (n, case) in CORPUS.iter().enumerate() {
        let args = |key: &str| -> Vec<String> {
            case.iter()
                .map(|a| match *a {
                    "K" => key.to_string(),
                    "RELEASE" => RELEASE.to_string(),
                    "RELEASE_SHA" => RELEASE_SHA.to_string(),
                    other => other.to_string(),
                })
                .collect()
        };
        let on_proxy = args(&format!("lock:d{n}"));
        let on_redis = args(&format!("d{n}"));
        let p = proxy
            .cmd_str(&on_proxy.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        let r = redis
            .cmd_str(&on_redis.iter().map(String::as_str).collect::<Vec<_>>())
            .await;
        let same = p == r || (!r.starts_with('-') && refusal(&p));
        if !same {
            mismatches.push(format!("{case:?}: redis {r:?}, proxy {p:?}"));
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// `SETNX` on a lock key is the acquisition `SET key token NX` is, with its
/// own replies, and `PEXPIRE`/`EXPIRE` an extension: a sequence on one key
/// answers as on Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setnx_on_a_lock_key_answers_as_redis_does() {
    let h = Harness::start(3).await;
    let mut proxy = h.client().await;
    let mut redis = RawClient::connect(([127, 0, 0, 1], h.backend.port).into()).await;
    let steps: &[&[&str]] = &[
        &["SETNX", "K", "a"],
        &["SETNX", "K", "b"],
        &["SET", "K", "b", "NX", "PX", "5000"],
        &["GET", "K"],
        &["TTL", "K"],
        &["EVAL", RELEASE, "1", "K", "b"],
        &["EVAL", RELEASE, "1", "K", "a"],
        &["SETNX", "K", "b"],
        &["DEL", "K"],
        &["EXISTS", "K"],
        // An expiry is an extension with no owner check, as on Redis.
        &["PEXPIRE", "K", "20000"],
        &["SET", "K", "c", "NX", "PX", "5000"],
        &["PEXPIRE", "K", "20000"],
        &["PEXPIRE", "K", "30000", "NX"],
        &["PEXPIRE", "K", "30000", "GT"],
        &["EXPIRE", "K", "40"],
        &["TTL", "K"],
        &["EXPIRE", "K", "ten"],
        &["PEXPIRE", "K"],
    ];
    for step in steps {
        let on = |key: &'static str| -> Vec<&str> {
            step.iter()
                .map(|a| if *a == "K" { key } else { *a })
                .collect()
        };
        let p = proxy.cmd_str(&on("lock:setnx")).await;
        let r = redis.cmd_str(&on("setnx")).await;
        assert_eq!(p, r, "{step:?}");
    }
}

/// An expiry at Redis's very limit is granted as Redis grants it, whatever the
/// masters' clocks read when it arrives (by then `PX` of the same instant may
/// overflow on a master).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiry_at_the_limit_is_granted_like_on_redis() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    for i in 0..50 {
        let key = format!("lock:far{i}");
        assert_eq!(
            c.cmd_str(&["SET", &key, "t", "NX", "PXAT", "9223372036854775807"])
                .await,
            "+OK\r\n",
            "{key}"
        );
    }
}
