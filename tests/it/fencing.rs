//! Fencing tokens: `LOCK.FENCE` and `LOCK.ACQUIRE`, issued by the majority
//! scheme, strictly increasing across grants and proxies.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::common::*;

fn int(reply: &str) -> i64 {
    reply
        .strip_prefix(':')
        .and_then(|r| r.strip_suffix("\r\n"))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("not an integer: {reply:?}"))
}

/// `[validity, fence]` from a `LOCK.ACQUIRE` reply.
fn acquired(reply: &str) -> Option<(i64, i64)> {
    if reply == "$-1\r\n" {
        return None;
    }
    let parts: Vec<&str> = reply.split("\r\n").collect();
    assert_eq!(parts[0], "*2", "{reply:?}");
    Some((
        parts[1][1..].parse().unwrap(),
        parts[2][1..].parse().unwrap(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_gets_a_fence_and_the_same_grant_gets_the_same_one() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:f", "a", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    let first = int(&c.cmd_str(&["LOCK.FENCE", "lock:f", "a"]).await);
    assert!(first >= 1);
    assert_eq!(int(&c.cmd_str(&["lock.fence", "lock:f", "a"]).await), first);
    let r = c.cmd_str(&["LOCK.FENCE", "lock:f", "b"]).await;
    assert!(
        r.starts_with("-ERR LOCK.FENCE: the lock is not held"),
        "{r}"
    );
    let r = c.cmd_str(&["LOCK.FENCE", "data:f", "a"]).await;
    assert!(r.contains("is not a lock key"), "{r}");
    let r = c.cmd_str(&["LOCK.FENCE", "lock:f"]).await;
    assert!(r.starts_with("-ERR wrong number of arguments"), "{r}");
    // The next grant's fence is larger; the old holder gets none.
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:f", "a"]).await,
        ":1\r\n"
    );
    let (validity, second) =
        acquired(&c.cmd_str(&["LOCK.ACQUIRE", "lock:f", "b", "10000"]).await).unwrap();
    assert!((9_000..=9_900).contains(&validity), "{validity}");
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        int(&c.cmd_str(&["LOCK.FENCE", "lock:f", "b"]).await),
        second
    );
    assert!(
        c.cmd_str(&["LOCK.FENCE", "lock:f", "a"])
            .await
            .starts_with("-ERR")
    );
    // Held: LOCK.ACQUIRE is refused like SET NX.
    assert_eq!(
        c.cmd_str(&["LOCK.ACQUIRE", "lock:f", "c", "10000"]).await,
        "$-1\r\n"
    );
    // The lock rules hold for it too.
    let r = c.cmd_str(&["LOCK.ACQUIRE", "lock:g", "c", "0"]).await;
    assert!(r.contains("ttl_ms must be a positive integer"), "{r}");
    // Not a key for the backend, nor a transaction.
    assert_eq!(h.backend.query(&["DBSIZE"]), redis::Value::Int(0));
    assert_eq!(c.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert!(
        c.cmd_str(&["LOCK.FENCE", "lock:f", "b"])
            .await
            .contains("MULTI")
    );
    assert!(c.cmd_str(&["EXEC"]).await.starts_with("-EXECABORT"));
}

/// A holder whose lease ran out while it was paused: its old fence is below
/// the new holder's, and it gets no new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_holders_fence_is_below_the_new_holders() {
    let h = Harness::start(3).await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    let (_, fa) = acquired(&a.cmd_str(&["LOCK.ACQUIRE", "lock:s", "a", "300"]).await).unwrap();
    // A "pauses"; its lock expires and B takes it.
    let deadline = Instant::now() + WAIT;
    let fb = loop {
        if let Some((_, fb)) = acquired(&b.cmd_str(&["LOCK.ACQUIRE", "lock:s", "b", "10000"]).await)
        {
            break fb;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(fa < fb, "{fa} then {fb}");
    assert!(
        a.cmd_str(&["LOCK.FENCE", "lock:s", "a"])
            .await
            .starts_with("-ERR")
    );
}

/// Two proxies, workers contending for one key: every grant gets a fence,
/// fences are unique, and they increase in the order the grants were held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_from_two_proxies_increase_in_grant_order() {
    let h = Harness::start(3).await;
    let shutdown = CancellationToken::new();
    let backend = RedisServer::start();
    let (second, _, _task) = spawn_proxy(&h.masters, &backend, &shutdown, |_| {}).await;
    let grants = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for w in 0..6 {
        let addr = if w % 2 == 0 { h.addr } else { second };
        let grants = Arc::clone(&grants);
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let mut i = 0;
            while Instant::now() < until {
                // A fresh token per acquisition, as lock libraries make them:
                // the token is what tells one grant from the next.
                i += 1;
                let token = format!("w{w}-{i}");
                let Some((_, fence)) = acquired(
                    &c.cmd_str(&["LOCK.ACQUIRE", "lock:hot", &token, "5000"])
                        .await,
                ) else {
                    continue;
                };
                let held = Instant::now();
                // Asked again for the same grant: the same number.
                assert_eq!(
                    int(&c.cmd_str(&["LOCK.FENCE", "lock:hot", &token]).await),
                    fence
                );
                grants.lock().unwrap().push((held, fence));
                assert_eq!(
                    c.cmd_str(&["EVAL", RELEASE, "1", "lock:hot", &token]).await,
                    ":1\r\n"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    shutdown.cancel();
    let mut grants = grants.lock().unwrap().clone();
    assert!(grants.len() >= 20, "only {} grants", grants.len());
    grants.sort();
    for w in grants.windows(2) {
        assert!(w[0].1 < w[1].1, "fence {} then {}", w[0].1, w[1].1);
    }
}

/// With masters that persist every write, counters survive restarts, so
/// fences keep increasing (once the restart guard trusts the masters again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_keep_increasing_across_restarts_of_persistent_masters() {
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]))
        .collect();
    let mut h = Harness::with_masters(masters, |_| {}).await;
    let mut c = h.client().await;
    let mut last = 0;
    for round in 0..3 {
        let token = format!("t{round}");
        let deadline = Instant::now() + WAIT;
        let (_, fence) = loop {
            // While the restarted masters are quarantined nothing is granted.
            if let Some(g) = acquired(&c.cmd_str(&["LOCK.ACQUIRE", "lock:p", &token, "500"]).await)
            {
                break g;
            }
            assert!(Instant::now() < deadline, "never granted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(fence > last, "round {round}: {fence} after {last}");
        last = fence;
        assert_eq!(
            c.cmd_str(&["EVAL", RELEASE, "1", "lock:p", &token]).await,
            ":1\r\n"
        );
        for m in &mut h.masters {
            m.restart();
        }
        h.wait_masters_up().await;
    }
}
