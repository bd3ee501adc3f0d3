//! The restart guard: a master that restarted (a new `run_id`) may have
//! forgotten locks, so its votes do not count until every lock it may have
//! forgotten has expired.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::common::*;

fn quarantined(shared: &redlock_proxy::server::Shared) -> Vec<bool> {
    shared
        .engine()
        .masters()
        .iter()
        .map(|m| m.quarantined())
        .collect()
}

/// Acquires `key` every 50 ms until granted (within `within`); returns when.
async fn acquire_eventually(
    c: &mut RawClient,
    key: &str,
    token: &str,
    within: Duration,
) -> Instant {
    let deadline = Instant::now() + within;
    loop {
        let r = c.cmd_str(&["SET", key, token, "NX", "PX", "20000"]).await;
        if r == "+OK\r\n" {
            return Instant::now();
        }
        assert_eq!(r, "$-1\r\n");
        assert!(Instant::now() < deadline, "never granted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The issue's scenario: a 20 s lock on 3 masters, two of them restarted
/// empty. Without the guard the two would grant the same key at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_majority_is_quarantined_for_the_longest_ttl() {
    logs();
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:q", "a", "NX", "PX", "20000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:q", "a") == 3).await;
    h.masters[0].restart();
    h.masters[1].restart();
    let restarted = Instant::now();
    assert_eq!(holders_on(&h.masters, "lock:q", "a"), 1, "they forgot it");
    poll(|| quarantined(&h.shared) == [true, true, false]).await;
    // Two masters would say OK; their votes do not count.
    assert_eq!(
        c.cmd_str(&["SET", "lock:q", "b", "NX", "PX", "20000"])
            .await,
        "$-1\r\n"
    );
    let granted = acquire_eventually(&mut c, "lock:q", "b", Duration::from_secs(40)).await;
    let waited = granted - restarted;
    assert!(
        waited >= Duration::from_secs(20),
        "granted after {waited:?}"
    );
    // A grant needs a quorum: the other restarted master, seen a moment
    // later, may still have a moment of quarantine left.
    poll(|| quarantined(&h.shared) == [false, false, false]).await;
    let port = h.masters[0].port;
    assert_eq!(log_lines("master quarantined", port).len(), 1);
}

/// A proxy that starts while a quarantine lasts keeps it: the quarantine is
/// written to the master, and read at every connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_during_a_quarantine_keeps_it() {
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:m", "a", "NX", "PX", "3000"]).await,
        "+OK\r\n"
    );
    h.masters[0].restart();
    h.masters[1].restart();
    poll(|| quarantined(&h.shared) == [true, true, false]).await;
    let run_id = h.shared.engine().masters()[0].run_id().unwrap();
    let marker = format!("redlock-proxy:quarantine:{run_id}");
    poll(|| h.masters[0].pttl(&marker) > 0).await;
    assert!(h.masters[0].pttl(&marker) <= 3100);

    // A second proxy, started now, has never seen the restart.
    let shutdown = CancellationToken::new();
    let backend = RedisServer::start();
    let (addr, shared, _task) = spawn_proxy(&h.masters, &backend, &shutdown, |_| {}).await;
    poll(|| quarantined(&shared) == [true, true, false]).await;
    let mut other = RawClient::connect(addr).await;
    assert_eq!(
        other
            .cmd_str(&["SET", "lock:fresh", "x", "NX", "PX", "1000"])
            .await,
        "$-1\r\n"
    );
    acquire_eventually(&mut other, "lock:fresh", "x", Duration::from_secs(10)).await;
    shutdown.cancel();
}

/// `quarantine_on_start`: masters are trusted only once `max_ttl` has passed
/// since the proxy first saw them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_on_start_distrusts_every_master_for_max_ttl() {
    let started = Instant::now();
    let h = Harness::start_with(3, |c| {
        c.redlock.quarantine_on_start = true;
        c.redlock.max_ttl = Duration::from_secs(2);
    })
    .await;
    assert_eq!(quarantined(&h.shared), [true, true, true]);
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:s", "t", "NX", "PX", "1000"]).await,
        "$-1\r\n"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if c.cmd_str(&["SET", "lock:s", "t", "NX", "PX", "1000"]).await == "+OK\r\n" {
            break;
        }
        assert!(Instant::now() < deadline, "never granted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_secs(2));
}

/// Releases and reads still work with a quarantined master when the others
/// decide them; what the quarantined one says does not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_and_reads_are_decided_without_a_quarantined_master() {
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:r", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:r", "t") == 3).await;
    h.masters[2].restart();
    poll(|| quarantined(&h.shared) == [false, false, true]).await;
    assert_eq!(c.cmd_str(&["GET", "lock:r"]).await, "$1\r\nt\r\n");
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:r", "t"]).await,
        ":1\r\n"
    );
    // With one of the two trusted masters paused, nothing decides a read:
    // the quarantined master's "not held" is not believed.
    assert_eq!(
        c.cmd_str(&["SET", "lock:r2", "u", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    h.masters[1].pause();
    let r = c.cmd_str(&["GET", "lock:r2"]).await;
    h.masters[1].resume();
    assert!(
        r.starts_with("-NOQUORUM") && r.contains("quarantined"),
        "{r}"
    );
}

/// At start the proxy says whether each master keeps locks across a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_is_reported_at_start() {
    logs();
    let masters = vec![
        RedisServer::start(),
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]),
        RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "everysec"]),
    ];
    let ports: Vec<u16> = masters.iter().map(|m| m.port).collect();
    let _h = Harness::with_masters(masters, |_| {}).await;
    poll(|| log_lines_about("does not persist locks", ports[0]) == 1).await;
    poll(|| log_lines_about("keeps locks across a crash", ports[1]) == 1).await;
    poll(|| log_lines_about("fsyncs its AOF only every second", ports[2]) == 1).await;
}
