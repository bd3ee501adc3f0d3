//! Sentinel-managed servers (`redis-sentinel://...#name`): the passthrough
//! backend follows a failover with no client left hanging, and a voter that
//! fails over counts as restarted (quarantined).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use redlock_proxy::config::RedisUrl;

use crate::common::sentinel::SentinelGroup;
use crate::common::*;

/// The backend fails over (`SENTINEL FAILOVER`) while clients write: every
/// request gets a reply (an error at most, while the switch happens), and
/// writes after it land on the new master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_follows_a_failover_and_leaves_nobody_hanging() {
    let group = tokio::task::block_in_place(SentinelGroup::start);
    let url = RedisUrl::parse(&group.url()).unwrap();
    let h = Harness::start_with(3, move |c| c.passthrough.url = url).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "before", "1"]).await, "+OK\r\n");
    assert_eq!(group.master.get("before").as_deref(), Some("1"));
    // Writers, on shared connections and on connections of their own
    // (inside a transaction), while the master is switched.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (stop, answered, addr) = (Arc::clone(&stop), Arc::clone(&answered), h.addr);
        writers.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let key = format!("w{w}:{i}");
                if w % 2 == 0 {
                    c.cmd(&["SET", &key, "v"]).await;
                } else {
                    c.send(&enc(&["MULTI"])).await;
                    c.send(&enc(&["SET", &key, "v"])).await;
                    c.send(&enc(&["EXEC"])).await;
                    for _ in 0..3 {
                        c.read().await;
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    poll(|| answered.load(Ordering::Relaxed) > 50).await;
    tokio::task::block_in_place(|| group.failover());
    // Writes after the switch go to the new master (the old one is a
    // replica now, and would refuse them).
    let mut after = h.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let r = after.cmd_str(&["SET", "after", "1"]).await;
        if r == "+OK\r\n" && group.replica.get("after").as_deref() == Some("1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "last reply {r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let at_switch = answered.load(Ordering::Relaxed);
    poll(|| answered.load(Ordering::Relaxed) > at_switch + 50).await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        // A writer left hanging would never end (each read waits at most WAIT).
        w.await.unwrap();
    }
    let info = until_info(h.addr, |i| i.contains("backend_sentinel_switches:1")).await;
    assert!(info.contains("backend_up:1"), "{info}");
}

/// A voter managed by Sentinel fails over: its new master may have lost
/// grants it had not replicated, so the voter is quarantined like a
/// restarted master; the lock taken before keeps its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voter_that_fails_over_is_quarantined() {
    let group = tokio::task::block_in_place(SentinelGroup::start);
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let sentinel = RedisUrl::parse(&group.url()).unwrap();
    let h = Harness::with_masters(masters, move |c| {
        c.redlock.masters.insert(0, sentinel);
        c.redlock.max_ttl = std::time::Duration::from_secs(30);
    })
    .await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:sentinel", "me", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(group.master.get("lock:sentinel").as_deref(), Some("me"));
    tokio::task::block_in_place(|| group.failover());
    let info = until_info(h.addr, |i| {
        i.lines()
            .any(|l| l.starts_with("master0:") && l.contains("quarantined=1"))
    })
    .await;
    let line = info.lines().find(|l| l.starts_with("master0:")).unwrap();
    assert!(line.contains("sentinel_switches=1"), "{line}");
    assert_eq!(
        c.cmd_str(&["SET", "lock:sentinel", "you", "NX", "PX", "30000"])
            .await,
        "$-1\r\n",
        "never two holders"
    );
}
