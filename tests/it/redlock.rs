//! The RedLock engine against 3 and 5 real masters, inspected directly.

use std::time::{Duration, Instant};

use crate::common::*;

async fn lifecycle(n: usize) {
    let h = Harness::start(n).await;
    let mut c = h.client().await;
    let mut other = h.client().await;

    // Acquire: the token is on every master, with its TTL (decided at a quorum,
    // so the last master may take a moment).
    assert_eq!(
        c.cmd_str(&["SET", "lock:res", "tok-a", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders(&h, "lock:res", "tok-a") == n).await;
    for m in &h.masters {
        assert_eq!(m.get("lock:res").as_deref(), Some("tok-a"));
        let pttl = m.pttl("lock:res");
        assert!((25_000..=30_000).contains(&pttl), "pttl {pttl}");
    }
    assert_eq!(
        h.backend.get("lock:res"),
        None,
        "a lock key reached the backend"
    );

    // A second acquisition is refused, and leaves nothing of its own.
    assert_eq!(
        other
            .cmd_str(&["SET", "lock:res", "tok-b", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    assert_eq!(holders(&h, "lock:res", "tok-a"), n);

    // Queries answer from the quorum.
    assert_eq!(other.cmd_str(&["GET", "lock:res"]).await, "$5\r\ntok-a\r\n");
    assert_eq!(
        other.cmd_str(&["EXISTS", "lock:res", "lock:none"]).await,
        ":1\r\n"
    );
    let pttl = other.cmd_str(&["PTTL", "lock:res"]).await;
    let pttl: i64 = pttl[1..pttl.len() - 2].parse().unwrap();
    assert!((25_000..=30_000).contains(&pttl), "{pttl}");
    assert_eq!(other.cmd_str(&["TTL", "lock:res"]).await, ":30\r\n");
    assert_eq!(other.cmd_str(&["PTTL", "lock:none"]).await, ":-2\r\n");

    // Release by another token: 0, and the lock stays.
    assert_eq!(
        other
            .cmd_str(&["EVAL", RELEASE, "1", "lock:res", "tok-b"])
            .await,
        ":0\r\n"
    );
    assert_eq!(holders(&h, "lock:res", "tok-a"), n);

    // Extend by the owner (and not by another).
    assert_eq!(
        other
            .cmd_str(&["EVAL", EXTEND, "1", "lock:res", "tok-b", "60000"])
            .await,
        ":0\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", EXTEND, "1", "lock:res", "tok-a", "60000"])
            .await,
        ":1\r\n"
    );
    poll(|| h.masters.iter().all(|m| m.pttl("lock:res") > 55_000)).await;

    // Release by the owner: 1, and every master is clear.
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "lock:res", "tok-a"])
            .await,
        ":1\r\n"
    );
    poll(|| holders(&h, "lock:res", "tok-a") == 0).await; // decided at a quorum; the last master follows
    assert_eq!(c.cmd_str(&["GET", "lock:res"]).await, "$-1\r\n");
    assert_eq!(c.cmd_str(&["EXISTS", "lock:res"]).await, ":0\r\n");

    // Free again: the other client takes it; DEL force-releases it.
    assert_eq!(
        other
            .cmd_str(&["SET", "lock:res", "tok-b", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["DEL", "lock:res"]).await, ":1\r\n");
    assert_eq!(c.cmd_str(&["UNLINK", "lock:res"]).await, ":0\r\n");
    assert_eq!(holders(&h, "lock:res", "tok-b"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_3_masters() {
    lifecycle(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_5_masters() {
    lifecycle(5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_forms() {
    let h = Harness::start_with(3, |_| {}).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["set", "lock:ex", "t", "ex", "8", "nx"]).await,
        "+OK\r\n"
    );
    poll(|| holders(&h, "lock:ex", "t") == 3).await;
    assert!((7_000..=8_000).contains(&h.masters[0].pttl("lock:ex")));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let at = (now + 20_000).to_string();
    assert_eq!(
        c.cmd_str(&["SET", "lock:pxat", "t", "PXAT", &at, "NX"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders(&h, "lock:pxat", "t") == 3).await;
    assert!((15_000..=20_000).contains(&h.masters[2].pttl("lock:pxat")));
    let at = (now / 1000 + 20).to_string();
    assert_eq!(
        c.cmd_str(&["SET", "lock:exat", "t", "NX", "EXAT", &at])
            .await,
        "+OK\r\n"
    );
    poll(|| holders(&h, "lock:exat", "t") == 3).await;
    assert!((15_000..=20_000).contains(&h.masters[1].pttl("lock:exat")));
    // An absolute time already past: Redis answers OK on a free key and
    // the key is gone at once, so the proxy does the same and stores nothing.
    assert_eq!(
        c.cmd_str(&["SET", "lock:past", "t", "NX", "PXAT", "1000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(holders(&h, "lock:past", "t"), 0);
    // NX without expiry: held until released.
    assert_eq!(
        c.cmd_str(&["SET", "lock:forever", "t", "NX"]).await,
        "+OK\r\n"
    );
    poll(|| holders(&h, "lock:forever", "t") == 3).await;
    assert_eq!(h.masters[0].pttl("lock:forever"), -1);
    assert_eq!(c.cmd_str(&["PTTL", "lock:forever"]).await, ":-1\r\n");
    // A 1 ms TTL can never be valid.
    assert_eq!(
        c.cmd_str(&["SET", "lock:tiny", "t", "NX", "PX", "1"]).await,
        "$-1\r\n"
    );
    // Other forms of SET on a lock key are refused with a clear error.
    for bad in [
        &["SET", "lock:f", "t"][..],
        &["SET", "lock:f", "t", "PX", "100"],
        &["SET", "lock:f", "t", "XX", "PX", "100"],
        &["SET", "lock:f", "t", "NX", "GET", "PX", "100"],
        &["SET", "lock:f", "t", "NX", "KEEPTTL"],
    ] {
        let r = c.cmd_str(bad).await;
        assert!(
            r.starts_with("-ERR lock keys accept only lock operations"),
            "{bad:?}: {r}"
        );
    }
    assert!(
        c.cmd_str(&["SET", "lock:f", "t", "NX", "PX", "0"])
            .await
            .starts_with("-ERR invalid expire time")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_ttl_and_max_ttl() {
    let h = Harness::start_with(3, |c| {
        c.redlock.require_ttl = true;
        c.redlock.max_ttl = Duration::from_secs(60);
    })
    .await;
    let mut c = h.client().await;
    assert!(
        c.cmd_str(&["SET", "lock:n", "t", "NX"])
            .await
            .contains("require_ttl")
    );
    assert!(
        c.cmd_str(&["SET", "lock:n", "t", "NX", "EX", "61"])
            .await
            .contains("max_ttl")
    );
    assert_eq!(
        c.cmd_str(&["SET", "lock:n", "t", "NX", "EX", "60"]).await,
        "+OK\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_of_three_down_everything_works() {
    let mut h = Harness::start(3).await;
    h.masters[2].kill();
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:d1", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(holders(&h, "lock:d1", "t"), 2);
    assert_eq!(
        c.cmd_str(&["SET", "lock:d1", "u", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    assert_eq!(c.cmd_str(&["GET", "lock:d1"]).await, "$1\r\nt\r\n");
    assert_eq!(
        c.cmd_str(&["EVAL", EXTEND, "1", "lock:d1", "t", "40000"])
            .await,
        ":1\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:d1", "t"]).await,
        ":1\r\n"
    );
    assert_eq!(holders(&h, "lock:d1", "t"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_of_three_down_refuses_fast() {
    // Votes may wait PATIENT: a refusal within WAIT proves that masters known
    // to be down are not waited for.
    let mut h = Harness::start_with(3, patient).await;
    h.masters[0].kill();
    h.masters[1].kill();
    let mut c = h.client().await;
    let start = Instant::now();
    assert_eq!(
        c.cmd_str(&["SET", "lock:d2", "t", "NX", "PX", LONG_TTL])
            .await,
        "$-1\r\n"
    );
    let took = start.elapsed();
    assert!(took < WAIT, "refusal took {took:?}");
    // Our token did not stay on the master that granted it.
    poll(|| h.masters[2].get("lock:d2").is_none()).await;
    // Restarted masters come back into use without intervention.
    h.masters[0].restart();
    h.masters[1].restart();
    h.wait_masters_up().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:d2", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_paused_refuses_within_node_timeout_and_leaves_no_token() {
    // The node timeout (50 ms) decides, not the patient op_timeout.
    let h = Harness::start_with(3, |c| c.redlock.op_timeout = PATIENT).await;
    h.masters[0].pause();
    h.masters[1].pause();
    let mut c = h.client().await;
    let start = Instant::now();
    assert_eq!(
        c.cmd_str(&["SET", "lock:p2", "t", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    let took = start.elapsed();
    assert!(took < WAIT, "refusal took {took:?}");
    assert!(
        took >= Duration::from_millis(40),
        "refused before the node timeout: {took:?}"
    );
    // Other clients' data commands are not held up meanwhile.
    assert_eq!(c.cmd_str(&["SET", "data", "1"]).await, "+OK\r\n");
    h.masters[0].resume();
    h.masters[1].resume();
    // Once they answer again, no token of the refused acquisition remains.
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.try_query(&["GET", "lock:p2"]).ok() == Some(redis::Value::Nil))
    })
    .await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:p2", "t2", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_value_on_two_masters() {
    let h = Harness::start(3).await;
    h.masters[0].query(&["SET", "lock:f2", "someone-else", "PX", "30000"]);
    h.masters[1].query(&["SET", "lock:f2", "someone-else", "PX", "30000"]);
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:f2", "mine", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    // Our token is removed from the third master; theirs is untouched.
    poll(|| h.masters[2].get("lock:f2").is_none()).await;
    assert_eq!(h.masters[0].get("lock:f2").as_deref(), Some("someone-else"));
    // A value held by a quorum is the lock's value; a minority value is not a lock.
    assert_eq!(
        c.cmd_str(&["GET", "lock:f2"]).await,
        "$12\r\nsomeone-else\r\n"
    );
    h.masters[1].query(&["DEL", "lock:f2"]);
    assert_eq!(c.cmd_str(&["GET", "lock:f2"]).await, "$-1\r\n");
    assert_eq!(c.cmd_str(&["EXISTS", "lock:f2"]).await, ":0\r\n");
    assert_eq!(c.cmd_str(&["PTTL", "lock:f2"]).await, ":-2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_failing_on_a_minority_releases_nothing() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:e", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    // Two masters lose it (as after a restart): extension fails, and must not
    // delete it from the third.
    h.masters[0].query(&["DEL", "lock:e"]);
    h.masters[1].query(&["DEL", "lock:e"]);
    assert_eq!(
        c.cmd_str(&["EVAL", EXTEND, "1", "lock:e", "t", "60000"])
            .await,
        ":0\r\n"
    );
    assert_eq!(h.masters[2].get("lock:e").as_deref(), Some("t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_learned_by_eval_and_script_load() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    // EVALSHA before the proxy has the text: Redis's exact NOSCRIPT.
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "lock:s", "t"])
            .await,
        "-NOSCRIPT No matching script. Please use EVAL.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["SCRIPT", "EXISTS", RELEASE_SHA]).await,
        "*1\r\n:0\r\n"
    );
    // SCRIPT LOAD answers with the SHA1, as Redis does; then EVALSHA works.
    assert_eq!(
        c.cmd_str(&["SCRIPT", "LOAD", RELEASE]).await,
        format!("$40\r\n{RELEASE_SHA}\r\n")
    );
    assert_eq!(
        c.cmd_str(&["SCRIPT", "EXISTS", RELEASE_SHA]).await,
        "*1\r\n:1\r\n"
    );
    assert_eq!(
        c.cmd_str(&["SET", "lock:s", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "lock:s", "t"])
            .await,
        ":1\r\n"
    );
    // The same script on a data key passes through, and works there too.
    assert_eq!(c.cmd_str(&["SET", "data", "t"]).await, "+OK\r\n");
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "data", "t"]).await,
        ":1\r\n"
    );
    assert_eq!(h.backend.get("data"), None);
    // A mixed SCRIPT EXISTS is answered by the backend, lock scripts patched in.
    let other = "return 1";
    let other_sha = c.cmd_str(&["SCRIPT", "LOAD", other]).await;
    let other_sha = other_sha.lines().nth(1).unwrap().to_string();
    assert_eq!(
        c.cmd_str(&[
            "SCRIPT",
            "EXISTS",
            &other_sha,
            RELEASE_SHA,
            "0000000000000000000000000000000000000000"
        ])
        .await,
        "*3\r\n:1\r\n:1\r\n:0\r\n"
    );
    // An unknown script on a lock key: a clear error naming it and the config table.
    let r = c
        .cmd_str(&["EVAL", "return redis.call('del', KEYS[1])", "1", "lock:s"])
        .await;
    assert!(
        r.starts_with("-ERR unknown script ")
            && r.contains("[[redlock.scripts]]")
            && ["token_arg", "ttl_arg", "success", "failure"]
                .iter()
                .all(|a| r.contains(a)),
        "{r}"
    );
    // Scripts on data keys are untouched.
    assert_eq!(
        c.cmd_str(&["EVAL", "return redis.call('incr', KEYS[1])", "1", "n"])
            .await,
        ":1\r\n"
    );
    // A release script written differently is recognised by its shape.
    let spaced = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n  return redis.call('DEL', KEYS[1])\nelse\n  return 0\nend";
    assert_eq!(
        c.cmd_str(&["SET", "lock:s", "u", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", spaced, "1", "lock:s", "u"]).await,
        ":1\r\n"
    );
    poll(|| holders(&h, "lock:s", "u") == 0).await; // decided at a quorum; the last master follows
}

/// A multi-key acquire script (node-redlock's shape), declared in the configuration.
const MULTI_ACQUIRE: &str = "for i, key in ipairs(KEYS) do if redis.call('exists', key) == 1 then return 0 end end for i, key in ipairs(KEYS) do redis.call('set', key, ARGV[1], 'PX', ARGV[2]) end return #KEYS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_multi_key_acquire_script_votes_and_cleans_up() {
    let sha = sha1_smol::Sha1::from(MULTI_ACQUIRE).digest().to_string();
    let sha2 = sha.clone();
    let h = Harness::start_with(3, move |c| {
        c.redlock.scripts.push(redlock_proxy::config::ScriptConfig {
            sha1: sha2.try_into().unwrap(),
            kind: redlock_proxy::config::ScriptKind::Acquire,
            ttl_arg: std::num::NonZeroUsize::new(2),
            token_arg: None,
            success: Some(redlock_proxy::config::ScriptSuccess::Positive),
            // node-redlock's shape answers 0 when a key is taken.
            failure: Some(redlock_proxy::config::ScriptFailure::Zero),
        })
    })
    .await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&[
            "EVAL",
            MULTI_ACQUIRE,
            "2",
            "lock:m1",
            "lock:m2",
            "tok",
            "30000"
        ])
        .await,
        ":2\r\n"
    );
    // Decided at a quorum; the last master gets it too, moments later.
    poll(|| holders(&h, "lock:m1", "tok") == 3 && holders(&h, "lock:m2", "tok") == 3).await;
    // One key held elsewhere on two masters: refused, and cleaned up everywhere.
    h.masters[0].query(&["SET", "lock:m4", "x"]);
    h.masters[1].query(&["SET", "lock:m4", "x"]);
    assert_eq!(
        c.cmd_str(&["EVALSHA", &sha, "2", "lock:m3", "lock:m4", "tok", "30000"])
            .await,
        ":0\r\n"
    );
    poll(|| holders(&h, "lock:m3", "tok") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquisitions_are_decided_without_waiting_for_a_stalled_master() {
    // Votes may wait PATIENT: grants within WAIT were decided without it.
    let h = Harness::start_with(3, patient).await;
    h.masters[2].pause();
    let mut c = h.client().await;
    for i in 0..20 {
        let start = Instant::now();
        assert_eq!(
            c.cmd_str(&["SET", &format!("lock:fast{i}"), "t", "NX", "PX", LONG_TTL])
                .await,
            "+OK\r\n"
        );
        assert!(start.elapsed() < WAIT);
    }
    h.masters[2].resume();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_client_s_grant_is_released() {
    let h = Harness::start_with(3, |c| c.redlock.node_timeout = Duration::from_secs(5)).await;
    h.masters[1].pause();
    h.masters[2].pause();
    let mut c = h.client().await;
    c.send(&enc(&["SET", "lock:gone", "t", "NX", "PX", "30000"]))
        .await;
    // The acquisition is under way (one master has the token, two are silent)...
    poll(|| h.masters[0].get("lock:gone").is_some()).await;
    // ...when the client disappears (reset, not a polite half-close).
    socket2::SockRef::from(&c.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    // A second master answers: the lock is granted to nobody, so the proxy
    // releases it everywhere.
    h.masters[1].resume();
    poll(|| h.masters[0].get("lock:gone").is_none()).await;
    h.masters[2].resume();
    poll(|| holders(&h, "lock:gone", "t") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_measure_each_attempt_afresh() {
    let h = Harness::start_with(3, |c| {
        c.redlock.retry_count = 3;
        c.redlock.retry_delay = Duration::from_millis(100);
    })
    .await;
    // Someone else holds the lock for another 150 ms.
    for m in &h.masters {
        m.query(&["SET", "lock:r", "other", "PX", "150"]);
    }
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:r", "mine", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    // The grant comes from a later attempt, with the full TTL ahead of it,
    // on the quorum that granted it. (The third master may still have held
    // the other's lock at that attempt: its SET came last, so it expired
    // last; under load that gap decides, and a quorum is all a grant needs.)
    let granted: Vec<&RedisServer> = (h.masters.iter())
        .filter(|m| m.get("lock:r").as_deref() == Some("mine"))
        .collect();
    assert!(granted.len() >= 2, "{} masters hold it", granted.len());
    assert!(granted.iter().all(|m| m.pttl("lock:r") > 29_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_come_from_the_urls() {
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(&["--requirepass", "s3cret"]))
        .collect();
    let backend = RedisServer::start_with(&["--requirepass", "b@ck"]);
    let urls: Vec<String> = masters.iter().map(|m| m.url()).collect();
    assert!(urls[0].contains(":s3cret@"));
    let backend_url = format!("redis://default:b%40ck@127.0.0.1:{}/2", backend.port);
    let h = Harness::start_with(0, move |c| {
        c.redlock.masters = urls
            .iter()
            .map(|u| redlock_proxy::config::RedisUrl::parse(u).unwrap())
            .collect();
        c.passthrough.url = redlock_proxy::config::RedisUrl::parse(&backend_url).unwrap();
    })
    .await;
    h.wait_masters_up().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:auth", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["SET", "data", "in-db-2"]).await, "+OK\r\n");
    let check =
        redis::Client::open(format!("redis://:b%40ck@127.0.0.1:{}/2", backend.port)).unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("data")
        .query(&mut check.get_connection().unwrap())
        .unwrap();
    assert_eq!(v.as_deref(), Some("in-db-2"));
    // Passwords never show in the effective configuration line.
    let summary = h.shared.config().summary();
    assert!(
        !summary.contains("s3cret") && !summary.contains("b@ck"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_flushed_on_the_masters_are_loaded_again() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    for round in 0..3 {
        let token = format!("t{round}");
        assert_eq!(
            c.cmd_str(&["SET", "lock:fl", &token, "NX", "PX", "60000"])
                .await,
            "+OK\r\n"
        );
        poll(|| holders(&h, "lock:fl", &token) == 3).await;
        for m in &h.masters {
            m.query(&["SCRIPT", "FLUSH"]);
        }
        assert_eq!(
            c.cmd_str(&["EVAL", RELEASE, "1", "lock:fl", &token]).await,
            ":1\r\n"
        );
        poll(|| holders(&h, "lock:fl", &token) == 0).await; // decided at a quorum; the last master follows
    }
}

/// redlock-universal's batch acquisition, as `LockManager.acquireBatch` sends it.
const BATCH_ACQUIRE: &str = r#"-- Phase 1: Check all keys are available
  for i = 1, #KEYS do
    if redis.call("EXISTS", KEYS[i]) == 1 then
      return {0, i, KEYS[i]}
    end
  end

  -- Phase 2: All keys available, acquire atomically
  local ttl = tonumber(ARGV[#ARGV])
  for i = 1, #KEYS do
    redis.call("SET", KEYS[i], ARGV[i], "PX", ttl)
  end

  return {1, #KEYS}"#;

/// A batch takes each key with its own token; a refused batch is taken back
/// on every master key by key, each with its own token, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_released_key_by_key_with_each_token() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let batch = |keys: [&'static str; 2], tokens: [&'static str; 2]| {
        let mut args = vec!["EVAL", BATCH_ACQUIRE, "2"];
        args.extend(keys);
        args.extend(tokens);
        args.push("30000");
        args
    };
    let granted = c
        .cmd_str(&batch(["lock:ba", "lock:bb"], ["ta", "tb"]))
        .await;
    assert_eq!(granted, "*2\r\n:1\r\n:2\r\n");
    poll(|| holders(&h, "lock:ba", "ta") == 3 && holders(&h, "lock:bb", "tb") == 3).await;
    // Someone else holds lock:bd on two masters: the batch is taken on the
    // third only, refused, and released there.
    for m in &h.masters[..2] {
        m.query(&["SET", "lock:bd", "other", "PX", "30000"]);
    }
    let refused = c
        .cmd_str(&batch(["lock:bc", "lock:bd"], ["tc", "td"]))
        .await;
    assert_eq!(refused, "*3\r\n:0\r\n:2\r\n$7\r\nlock:bd\r\n");
    poll(|| h.masters[2].get("lock:bc").is_none() && h.masters[2].get("lock:bd").is_none()).await;
    for m in &h.masters[..2] {
        assert_eq!(m.get("lock:bd").as_deref(), Some("other"));
    }
    // The granted batch stands, and is released key by key.
    assert_eq!(holders(&h, "lock:ba", "ta"), 3);
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:bb", "tb"]).await,
        ":1\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:ba", "tb"]).await,
        ":0\r\n"
    );
    // Not one token per key: refused before anything is sent.
    let wrong = c
        .cmd_str(&[
            "EVAL",
            BATCH_ACQUIRE,
            "2",
            "lock:be",
            "lock:bf",
            "t",
            "30000",
        ])
        .await;
    assert!(wrong.contains("one token per key"), "{wrong}");
}
