//! Scripts on data keys through the proxy answer as on Redis, whatever the
//! backend's script cache holds: the same sequence of commands goes to a
//! redis-server directly and through the proxy, and the replies must match.

use crate::common::*;

/// The repro of the client-suite issue: a lock script on a data key, the
/// script cache flushed, the client's standard recovery (`SCRIPT LOAD`, then
/// `EVALSHA` again).
const AFTER_FLUSH: &[&[&str]] = &[
    &["SCRIPT", "LOAD", "RELEASE"],
    &["SET", "foo", "tok"],
    &["EVALSHA", "RELEASE_SHA", "1", "foo", "tok"],
    &["SCRIPT", "EXISTS", "RELEASE_SHA"],
    &["SCRIPT", "FLUSH"],
    &["SCRIPT", "EXISTS", "RELEASE_SHA"],
    &["SET", "foo", "tok"],
    &["EVALSHA", "RELEASE_SHA", "1", "foo", "tok"],
    &["SCRIPT", "LOAD", "RELEASE"],
    &["SET", "foo", "tok"],
    &["EVALSHA", "RELEASE_SHA", "1", "foo", "tok"],
    &["EVALSHA_RO", "RELEASE_SHA", "1", "foo", "tok"],
    &["SCRIPT", "EXISTS", "RELEASE_SHA"],
    // Inside a transaction: one reply per queued command, as on Redis.
    &["SET", "foo", "tok"],
    &["MULTI"],
    &["EVALSHA", "RELEASE_SHA", "1", "foo", "tok"],
    &["GET", "foo"],
    &["EXEC"],
];

fn expand(case: &[&str]) -> Vec<String> {
    case.iter()
        .map(|a| match *a {
            "RELEASE" => RELEASE.to_string(),
            "RELEASE_SHA" => RELEASE_SHA.to_string(),
            other => other.to_string(),
        })
        .collect()
}

async fn replies(c: &mut RawClient, seq: &[&[&str]]) -> Vec<String> {
    let mut out = Vec::new();
    for case in seq {
        let args = expand(case);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        out.push(c.cmd_str(&args).await);
    }
    out
}

async fn same_as_redis(multiplex: bool) {
    let h = Harness::start_with(3, |c| c.passthrough.multiplex = multiplex).await;
    let direct = RedisServer::start();
    let mut redis = RawClient::connect(([127, 0, 0, 1], direct.port).into()).await;
    let mut proxy = h.client().await;
    let want = replies(&mut redis, AFTER_FLUSH).await;
    let got = replies(&mut proxy, AFTER_FLUSH).await;
    assert_eq!(got, want, "multiplex = {multiplex}");
    assert!(
        want[10] == ":1\r\n",
        "the recovery works on Redis: {want:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_script_on_a_data_key_survives_script_flush_on_shared_connections() {
    same_as_redis(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_script_on_a_data_key_survives_script_flush_on_an_own_connection() {
    same_as_redis(false).await;
}

/// An operator flushes the backend's cache behind the proxy's back: the
/// script the client was told exists still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_run_on_the_backend_directly_breaks_nothing() {
    for multiplex in [true, false] {
        let h = Harness::start_with(3, |c| c.passthrough.multiplex = multiplex).await;
        let mut c = h.client().await;
        let sha = c.cmd_str(&["SCRIPT", "LOAD", RELEASE]).await;
        assert_eq!(sha, format!("$40\r\n{RELEASE_SHA}\r\n"));
        for round in 0..3 {
            assert_eq!(c.cmd_str(&["SET", "d", "t"]).await, "+OK\r\n");
            assert_eq!(
                c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "d", "t"]).await,
                ":1\r\n",
                "round {round}, multiplex = {multiplex}"
            );
            assert_eq!(h.backend.get("d"), None);
            h.backend.query(&["SCRIPT", "FLUSH"]);
        }
    }
}

/// A pipeline mixing the script with plain commands keeps its order: the
/// script's delete lands between the writes around it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_lock_script_on_a_data_key_keeps_its_place() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    c.cmd(&["SCRIPT", "LOAD", RELEASE]).await;
    h.backend.query(&["SCRIPT", "FLUSH"]);
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend(enc(&["SET", "p", &format!("t{i}")]));
        batch.extend(enc(&["EVALSHA", RELEASE_SHA, "1", "p", &format!("t{i}")]));
        batch.extend(enc(&["EXISTS", "p"]));
    }
    c.send(&batch).await;
    for i in 0..20 {
        assert_eq!(text(&c.read().await), "+OK\r\n", "{i}");
        assert_eq!(text(&c.read().await), ":1\r\n", "{i}");
        assert_eq!(text(&c.read().await), ":0\r\n", "{i}");
    }
}
