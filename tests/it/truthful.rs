//! Truthful lock replies under load and faults: the proxy never answers an OK,
//! 0 or nil the masters did not say. One test per way it used to.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use crate::common::relay::Mode;
use crate::common::*;

/// Sends `args` until the reply is `want`, or fails after [`WAIT`].
async fn until_reply(c: &mut RawClient, args: &[&str], want: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if c.cmd_str(args).await == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?} never answered {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Blocks a master for `seconds` (DEBUG SLEEP, from another thread), and
/// returns once it is asleep (a PING goes unanswered).
fn stall(m: &RedisServer, seconds: f64) -> std::thread::JoinHandle<()> {
    let url = m.url();
    let port = m.port;
    let t = std::thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: redis::Value = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(seconds)
            .query(&mut conn)
            .unwrap();
    });
    let deadline = Instant::now() + WAIT;
    loop {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        s.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 16];
        if s.read(&mut buf).is_err() {
            return t; // no answer: asleep
        }
        assert!(Instant::now() < deadline, "the master never fell asleep");
    }
}

// 1. An OK is never delivered after the grant's validity ran out.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_held_behind_a_blocking_reply_past_its_validity_becomes_what_redis_would_say() {
    let h = Harness::start(3).await;
    let mut a = h.client().await;
    let mut pipeline = enc(&["BLPOP", "q:truth", "1.2"]);
    pipeline.extend(enc(&["SET", "lock:p", "X", "NX", "PX", "400"]));
    a.send(&pipeline).await;
    // The proxy acquires for A at once; its OK waits behind the BLPOP. After the
    // TTL, B takes the lock.
    poll(|| holders_on(&h.masters, "lock:p", "X") >= 2).await;
    let mut b = h.client().await;
    until_reply(
        &mut b,
        &["SET", "lock:p", "Y", "NX", "PX", "10000"],
        "+OK\r\n",
    )
    .await;
    assert_eq!(text(&a.read().await), "*-1\r\n");
    // Redis, running the pipeline in order, would have answered nil at 1.2 s.
    assert_eq!(text(&a.read().await), "$-1\r\n");
    assert!(holders_on(&h.masters, "lock:p", "Y") >= 2, "B holds it");
    assert!(h.shared.metrics().leases_revoked.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_contention_the_acquisition_runs_again_when_its_reply_is_written() {
    let h = Harness::start(3).await;
    let mut a = h.client().await;
    let mut pipeline = enc(&["BLPOP", "q:again", "1"]);
    pipeline.extend(enc(&["SET", "lock:again", "X", "NX", "PX", "400"]));
    a.send(&pipeline).await;
    assert_eq!(text(&a.read().await), "*-1\r\n");
    assert_eq!(text(&a.read().await), "+OK\r\n");
    // The first grant expired long ago: this one is fresh, taken when written.
    for m in &h.masters {
        let pttl = m.pttl("lock:again");
        assert!(pttl > 100 && pttl <= 400, "PTTL {pttl}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ok_a_client_does_not_read_within_its_validity_is_not_delivered() {
    let h = Harness::start(3).await;
    let mut setup = h.client().await;
    let value = "v".repeat(8 << 20);
    assert_eq!(setup.cmd_str(&["SET", "big", &value]).await, "+OK\r\n");
    let mut slow = h.client().await;
    let mut pipeline = Vec::new();
    for _ in 0..3 {
        pipeline.extend(enc(&["GET", "big"]));
    }
    pipeline.extend(enc(&["SET", "lock:slow", "X", "NX", "PX", "500"]));
    slow.send(&pipeline).await;
    // 24 MiB of replies sit in front of the OK, and the client reads nothing
    // until its grant has expired and another client holds the lock.
    poll(|| holders_on(&h.masters, "lock:slow", "X") >= 2).await;
    let mut other = h.client().await;
    until_reply(
        &mut other,
        &["SET", "lock:slow", "Y", "NX", "PX", "60000"],
        "+OK\r\n",
    )
    .await;
    for _ in 0..3 {
        assert_eq!(slow.read().await.len(), value.len() + 12);
    }
    assert_eq!(text(&slow.read().await), "$-1\r\n");
    assert!(holders_on(&h.masters, "lock:slow", "Y") >= 2);
    assert!(h.shared.metrics().leases_revoked.load(Ordering::Relaxed) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_reply_past_its_validity_says_it_did_not_extend() {
    let h = Harness::start(3).await;
    let mut a = h.client().await;
    assert_eq!(
        a.cmd_str(&["SET", "lock:ext", "X", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    let mut pipeline = enc(&["BLPOP", "q:ext", "1"]);
    pipeline.extend(enc(&["EVAL", EXTEND, "1", "lock:ext", "X", "300"]));
    a.send(&pipeline).await;
    assert_eq!(text(&a.read().await), "*-1\r\n");
    // Extended to 300 ms at once; read after a second: by then not held.
    assert_eq!(text(&a.read().await), ":0\r\n");
}

// 2. Deadlines fit the operation.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_wait_for_two_stalled_masters() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let n = 200;
    let mut acquire = Vec::new();
    for i in 0..n {
        acquire.extend(enc(&[
            "SET",
            &format!("lock:st{i}"),
            "t",
            "NX",
            "PX",
            "30000",
        ]));
    }
    c.send(&acquire).await;
    for _ in 0..n {
        assert_eq!(text(&c.read().await), "+OK\r\n");
    }
    // Two of three masters stall 300 ms (a fork, an fsync, a slow script).
    let sleepers = [stall(&h.masters[0], 0.3), stall(&h.masters[1], 0.3)];
    let mut release = Vec::new();
    for i in 0..n {
        release.extend(enc(&["EVAL", RELEASE, "1", &format!("lock:st{i}"), "t"]));
    }
    c.send(&release).await;
    for i in 0..n {
        assert_eq!(text(&c.read().await), ":1\r\n", "release {i}");
    }
    for s in sleepers {
        s.join().unwrap();
    }
}

/// A lock held by exactly two of three masters (the third holds another token).
async fn held_by_two(h: &Harness, key: &str) {
    h.masters[2].query(&["SET", key, "other", "PX", "60000"]);
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", key, "t", "NX", "PX", "60000"]).await,
        "+OK\r\n"
    );
    assert_eq!(holders_on(&h.masters, key, "t"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_wait_for_a_paused_holder() {
    let h = Harness::start(3).await;
    held_by_two(&h, "lock:rd").await;
    let mut c = h.client().await;
    h.masters[0].pause();
    let pid = h.masters[0].pid();
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal(pid, libc::SIGCONT);
    });
    assert_eq!(c.cmd_str(&["GET", "lock:rd"]).await, "$1\r\nt\r\n");
    resume.join().unwrap();
    let pttl = c.cmd_str(&["PTTL", "lock:rd"]).await;
    assert!(pttl.starts_with(':') && !pttl.starts_with(":-"), "{pttl}");
    assert_eq!(c.cmd_str(&["EXISTS", "lock:rd"]).await, ":1\r\n");
}

// 3. Undecided is an error, not a "no".

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_releases_the_masters_do_not_decide_are_errors() {
    let h = Harness::start_with(3, |c| c.redlock.op_timeout = Duration::from_millis(300)).await;
    held_by_two(&h, "lock:und").await;
    let mut c = h.client().await;
    h.masters[0].pause();
    let port = h.masters[0].port.to_string();
    for cmd in [
        &["GET", "lock:und"][..],
        &["PTTL", "lock:und"],
        &["TTL", "lock:und"],
        &["EXISTS", "lock:und"],
        &["EVAL", RELEASE, "1", "lock:und", "t"],
    ] {
        let r = c.cmd_str(cmd).await;
        assert!(r.starts_with("-NOQUORUM "), "{cmd:?}: {r}");
        assert!(
            r.contains(&format!("{port}: no answer within 300 ms")),
            "{r}"
        );
    }
    h.masters[0].resume();
    // The release was sent, and runs once the master answers again.
    poll(|| holders_on(&h.masters, "lock:und", "t") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_that_answer_every_command_with_an_error_are_named() {
    logs();
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:ro", "t", "NX", "PX", "60000"])
            .await,
        "+OK\r\n"
    );
    // Two masters turn into replicas of nothing: every write is READONLY.
    let nowhere = free_port().to_string();
    for m in &h.masters[..2] {
        m.query(&["REPLICAOF", "127.0.0.1", &nowhere]);
    }
    assert_eq!(
        c.cmd_str(&["SET", "lock:ro2", "t", "NX", "PX", "60000"])
            .await,
        "$-1\r\n"
    );
    let r = c.cmd_str(&["EVAL", RELEASE, "1", "lock:ro", "t"]).await;
    assert!(r.starts_with("-NOQUORUM ") && r.contains("READONLY"), "{r}");
    for m in &h.masters[..2] {
        assert_eq!(log_lines_about("too few masters could vote", m.port), 1);
        m.query(&["REPLICAOF", "NO", "ONE"]);
    }
    // The release that failed is owed to those masters, and now goes through.
    poll(|| holders_on(&h.masters, "lock:ro", "t") == 0).await;
}

// 4. No stale tokens, ever.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_master_that_lost_its_scripts_still_releases() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    // A first release loads the script on every master connection.
    assert_eq!(
        c.cmd_str(&["SET", "lock:warm", "t", "NX", "PX", "60000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:warm", "t"]).await,
        ":1\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:warm", "t") == 0).await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:ns", "t", "NX", "PX", "60000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:ns", "t") == 3).await;
    for m in &h.masters {
        m.query(&["SCRIPT", "FLUSH"]);
    }
    h.masters[2].pause();
    // Decided by the two others; the third answers NOSCRIPT after the decision.
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:ns", "t"]).await,
        ":1\r\n"
    );
    h.masters[2].resume();
    poll(|| holders_on(&h.masters, "lock:ns", "t") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanups_need_no_eval() {
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_with(&["--rename-command", "EVAL", ""]))
        .collect();
    let h = Harness::with_masters(masters, |_| {}).await;
    // Two masters hold another token: the acquisition is refused, and the third
    // master's grant must be cleaned up.
    for m in &h.masters[..2] {
        m.query(&["SET", "lock:ev", "other", "PX", "60000"]);
    }
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:ev", "mine", "NX", "PX", "60000"])
            .await,
        "$-1\r\n"
    );
    poll(|| h.masters[2].get("lock:ev").is_none()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_lost_with_its_connection_is_sent_again() {
    let s = behind_relays(|_| {}).await;
    let mut c = s.h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:cut", "t", "NX", "PX", "60000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&s.masters, "lock:cut", "t") == 3).await;
    s.relays[2].set(Mode::Blackhole);
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:cut", "t"]).await,
        ":1\r\n"
    );
    // The release never reaches the third master: the link drops with it.
    s.relays[2].sever();
    s.relays[2].set(Mode::Pass);
    poll(|| holders_on(&s.masters, "lock:cut", "t") == 0).await;
}

// 5. Reconnect at once.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_closes_the_connection_is_back_at_once() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let engine = h.shared.engine();
    let masters = engine.masters();
    for m in &h.masters[..2] {
        m.query(&["CLIENT", "KILL", "TYPE", "normal"]);
    }
    // Straight away, while the proxy reconnects: requests wait for the new
    // connections instead of failing.
    let mut granted = 0;
    for i in 0..100 {
        let r = c
            .cmd_str(&["SET", &format!("lock:rc{i}"), "t", "NX", "PX", "10000"])
            .await;
        granted += (r == "+OK\r\n") as usize;
    }
    for m in &masters[..2] {
        assert_eq!(m.stats.refused.load(Ordering::Relaxed), 0, "{}", m.addr());
        assert_eq!(m.stats.connects.load(Ordering::Relaxed), 2, "{}", m.addr());
    }
    // At most the request in flight when the connection died is lost.
    assert!(granted >= 99, "{granted} of 100 granted");
}

/// Connections killed twice within a second on every master (a middlebox,
/// an operator's `CLIENT KILL TYPE normal`) are churn, not failure: the
/// masters are healthy and accept new connections at once, so a release sent
/// right after waits for them and is decided, never `NOQUORUM ... down`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_churn_is_not_a_failure() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:churn", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    let engine = h.shared.engine();
    let masters = engine.masters();
    for m in &h.masters {
        m.query(&["CLIENT", "KILL", "TYPE", "normal"]);
    }
    poll(|| {
        masters
            .iter()
            .all(|m| m.stats.connects.load(Ordering::Relaxed) == 2)
    })
    .await;
    for m in &h.masters {
        m.query(&["CLIENT", "KILL", "TYPE", "normal"]);
    }
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:churn", "t"]).await,
        ":1\r\n"
    );
    // Decided by the first two; the third's release may still be on its way.
    poll(|| holders(&h, "lock:churn", "t") == 0).await;
    for m in masters.iter() {
        assert_eq!(m.stats.refused.load(Ordering::Relaxed), 0, "{}", m.addr());
    }
}

// 6. Locks without expiry: kept until released or deleted, from any
// connection, as on Redis; with `bind_ttl_less_locks`, released with the
// connection that took them.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_expiry_outlives_its_connection_and_anyone_may_release_it() {
    let h = Harness::start(3).await;
    // A job queue: the dispatcher takes the unique-job lock, without TTL,
    // and goes away.
    let mut dispatcher = h.client().await;
    assert_eq!(
        dispatcher.cmd_str(&["SETNX", "lock:job:1", "tok"]).await,
        ":1\r\n"
    );
    assert_eq!(
        dispatcher
            .cmd_str(&["SET", "lock:job:2", "tok", "NX"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:job:1", "tok") == 3).await;
    poll(|| holders_on(&h.masters, "lock:job:2", "tok") == 3).await;
    let connected = h.shared.clients();
    assert_eq!(dispatcher.cmd_str(&["QUIT"]).await, "+OK\r\n");
    drop(dispatcher);
    poll(|| h.shared.clients() < connected).await;
    // Gone with it, a second dispatch of the same job is refused.
    let mut again = h.client().await;
    assert_eq!(
        again.cmd_str(&["SETNX", "lock:job:1", "other"]).await,
        ":0\r\n"
    );
    assert_eq!(
        again.cmd_str(&["SET", "lock:job:2", "other", "NX"]).await,
        "$-1\r\n"
    );
    assert_eq!(again.cmd_str(&["PTTL", "lock:job:1"]).await, ":-1\r\n");
    drop(again);
    // The worker, another process, releases with the token, or by DEL.
    let mut worker = h.client().await;
    assert_eq!(
        worker.cmd_str(&["GET", "lock:job:1"]).await,
        "$3\r\ntok\r\n"
    );
    assert_eq!(
        worker
            .cmd_str(&["EVAL", RELEASE, "1", "lock:job:1", "tok"])
            .await,
        ":1\r\n"
    );
    assert_eq!(worker.cmd_str(&["DEL", "lock:job:2"]).await, ":1\r\n");
    poll(|| holders_on(&h.masters, "lock:job:1", "tok") == 0).await;
    poll(|| holders_on(&h.masters, "lock:job:2", "tok") == 0).await;
    assert_eq!(
        worker.cmd_str(&["SETNX", "lock:job:1", "next"]).await,
        ":1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_expiry_is_released_when_the_proxy_closes_its_client() {
    let h = Harness::start_with(3, |c| {
        c.server.timeout = Duration::from_millis(300);
        c.redlock.bind_ttl_less_locks = true;
    })
    .await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "lock:idle", "t", "NX"]).await, "+OK\r\n");
    poll(|| holders_on(&h.masters, "lock:idle", "t") == 3).await;
    // Closed for its idle timeout: the lock goes with the connection.
    assert!(c.closed().await);
    poll(|| holders_on(&h.masters, "lock:idle", "t") == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_without_expiry_is_released_when_its_client_goes() {
    let h = Harness::start_with(3, |c| c.redlock.bind_ttl_less_locks = true).await;
    // One that sends and closes before reading cannot release it, ever.
    let granted = h.shared.engine().stats.granted.load(Ordering::Relaxed);
    let mut gone = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    gone.write_all(&enc(&["SET", "lock:orphan", "t", "NX"]))
        .await
        .unwrap();
    gone.shutdown().await.unwrap();
    drop(gone);
    poll(|| h.shared.engine().stats.granted.load(Ordering::Relaxed) > granted).await;
    poll(|| holders_on(&h.masters, "lock:orphan", "t") == 0).await;
    // Nor can one that read its OK and then closed, or quit.
    for (key, leave) in [("lock:closed", "close"), ("lock:quit", "quit")] {
        let mut c = h.client().await;
        assert_eq!(c.cmd_str(&["SET", key, "t", "NX"]).await, "+OK\r\n");
        // Granted at a quorum: the last master may take a moment.
        poll(|| holders_on(&h.masters, key, "t") == 3).await;
        if leave == "quit" {
            assert_eq!(c.cmd_str(&["QUIT"]).await, "+OK\r\n");
        }
        drop(c);
        poll(|| holders_on(&h.masters, key, "t") == 0).await;
    }
    // A client still connected keeps its lock, and one it released on its
    // connection is not released again when it leaves.
    let mut keeper = h.client().await;
    assert_eq!(
        keeper.cmd_str(&["SET", "lock:kept", "k", "NX"]).await,
        "+OK\r\n"
    );
    let mut other = h.client().await;
    assert_eq!(
        other.cmd_str(&["SET", "lock:again", "o", "NX"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        other
            .cmd_str(&["EVAL", RELEASE, "1", "lock:again", "o"])
            .await,
        ":1\r\n"
    );
    assert_eq!(
        keeper.cmd_str(&["SET", "lock:again", "o", "NX"]).await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:again", "o") == 3).await;
    poll(|| holders_on(&h.masters, "lock:kept", "k") == 3).await;
    let connected = h.shared.clients();
    drop(other);
    poll(|| h.shared.clients() < connected).await;
    // The other's connection is over; what it had released is not released
    // again, so the keeper's lock:again (same token, taken since) stands. Each
    // master's pipeline is in order: once a later acquisition is on all three,
    // anything the departure sent has been applied.
    assert_eq!(
        keeper.cmd_str(&["SET", "lock:barrier", "b", "NX"]).await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:barrier", "b") == 3).await;
    assert_eq!(holders_on(&h.masters, "lock:again", "o"), 3);
    assert_eq!(holders_on(&h.masters, "lock:kept", "k"), 3);
    drop(keeper);
    poll(|| holders_on(&h.masters, "lock:kept", "k") == 0).await;
}
