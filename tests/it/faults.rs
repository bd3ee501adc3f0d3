//! Faults: masters that are blackholed, killed and restarted; a passthrough
//! backend that dies in the middle of a pipeline.

use std::time::{Duration, Instant};

use crate::common::relay::Mode;
use crate::common::*;

fn holders(masters: &[RedisServer], key: &str) -> usize {
    masters
        .iter()
        .filter(|m| m.is_running() && m.get(key).is_some())
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_blackholed_every_acquire_is_granted_in_time() {
    // Votes and decisions may wait PATIENT: an answer within WAIT proves the
    // silent master was not waited for.
    let s = behind_relays(patient).await;
    s.relays[0].set(Mode::Blackhole);
    let mut c = s.h.client().await;
    for i in 0..30 {
        let key = format!("lock:bh1-{i}");
        // A TTL longer than any wait below: only a release can clear the healed master.
        let start = Instant::now();
        assert_eq!(
            c.cmd_str(&["SET", &key, "t", "NX", "PX", LONG_TTL]).await,
            "+OK\r\n"
        );
        let took = start.elapsed();
        assert!(took < WAIT, "acquire {i} took {took:?}");
        assert!(holders(&s.masters[1..], &key) == 2);
        // Decided by the two that answer, without the silent one.
        let start = Instant::now();
        assert_eq!(
            c.cmd_str(&["EVAL", RELEASE, "1", &key, "t"]).await,
            ":1\r\n"
        );
        assert!(start.elapsed() < WAIT);
    }
    s.relays[0].set(Mode::Pass);
    // The held-back SETs reach the healed master with their releases right behind.
    poll(|| (0..30).all(|i| s.masters[0].get(&format!("lock:bh1-{i}")).is_none())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_masters_blackholed_refusals_are_quick_and_leave_nothing() {
    // The node timeout (50 ms) decides, not the patient op_timeout.
    let s = behind_relays(|c| c.redlock.op_timeout = PATIENT).await;
    s.relays[0].set(Mode::Blackhole);
    s.relays[1].set(Mode::Blackhole);
    // Ten clients at once: none hangs, all are refused within the bound.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let addr = s.h.addr;
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let start = Instant::now();
            let r = c
                .cmd_str(&["SET", &format!("lock:bh2-{i}"), "t", "NX", "PX", "60000"])
                .await;
            (r, start.elapsed())
        }));
    }
    for t in tasks {
        let (r, took) = t.await.unwrap();
        assert_eq!(r, "$-1\r\n");
        assert!(took < WAIT, "refusal took {took:?}");
    }
    // The third master granted, and was cleaned up.
    poll(|| (0..10).all(|i| s.masters[2].get(&format!("lock:bh2-{i}")).is_none())).await;
    s.relays[0].set(Mode::Pass);
    s.relays[1].set(Mode::Pass);
    // Once they answer again, no token of the refused acquisitions remains.
    poll(|| (0..10).all(|i| holders(&s.masters, &format!("lock:bh2-{i}")) == 0)).await;
    let mut c = s.h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:bh2-0", "u", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_one_link_does_not_slow_acquisitions() {
    let s = behind_relays(patient).await;
    // Slower than the test waits: an acquisition that waited for it would fail.
    s.relays[2].set(Mode::Delay(PATIENT));
    let mut c = s.h.client().await;
    let start = Instant::now();
    for i in 0..10 {
        assert_eq!(
            c.cmd_str(&["SET", &format!("lock:slow{i}"), "t", "NX", "PX", LONG_TTL])
                .await,
            "+OK\r\n"
        );
    }
    assert!(start.elapsed() < WAIT, "{:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_is_reconnected_without_an_error_storm() {
    logs();
    let mut h = Harness::start_with(3, patient).await;
    let port = h.masters[0].port;
    h.masters[0].kill();
    let mut c = h.client().await;
    // Keep working while it is down: each operation costs it nothing (it is
    // not waited for: votes may wait PATIENT).
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut i = 0;
    while Instant::now() < deadline {
        let start = Instant::now();
        assert_eq!(
            c.cmd_str(&["SET", &format!("lock:k{i}"), "t", "NX", "PX", LONG_TTL])
                .await,
            "+OK\r\n"
        );
        assert!(start.elapsed() < WAIT);
        i += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.masters[0].restart();
    h.wait_masters_up().await;
    // Many reconnect attempts, one warning (repeats are rate-limited), one recovery line.
    let lines = log_lines("master unavailable", port);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    poll(|| log_lines_about("master reconnected", port) == 1).await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:after", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    poll(|| h.masters[0].get("lock:after").is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_killed_mid_pipeline_fails_every_pending_command_in_order() {
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "a", "1"]).await, "+OK\r\n");
    let mut pipeline = enc(&["BLPOP", "nothing", "30"]);
    for _ in 0..100 {
        pipeline.extend(enc(&["GET", "a"]));
    }
    pipeline.extend(enc(&["SET", "lock:mid", "t", "NX", "PX", "10000"]));
    c.send(&pipeline).await;
    poll(|| {
        h.backend
            .query_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    })
    .await;
    h.backend.kill();
    for i in 0..101 {
        let r = text(&c.read().await);
        assert!(
            r.starts_with("-ERR passthrough backend unavailable"),
            "reply {i}: {r}"
        );
    }
    // The lock operation in the same pipeline does not depend on the backend.
    assert_eq!(text(&c.read().await), "+OK\r\n");
    h.backend.restart();
    assert_eq!(c.cmd_str(&["SET", "a", "2"]).await, "+OK\r\n");
}

/// Whether `reply` is the error of a request whose backend fell silent.
fn timed_out(reply: &[u8]) -> bool {
    text(reply).starts_with("-ERR passthrough backend unavailable: no answer from")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_backend_fails_prompt_requests_and_lets_waiting_ones_wait() {
    let h = Harness::start_with(1, |c| {
        c.passthrough.reply_timeout = Duration::from_millis(300);
    })
    .await;
    // A plain read takes a shared connection; a read after WATCH, the
    // client's own; a BLPOP and a script may wait on purpose.
    let mut shared = h.client().await;
    assert_eq!(shared.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    let mut own = h.client().await;
    assert_eq!(own.cmd_str(&["WATCH", "w"]).await, "+OK\r\n");
    let mut blocked = h.client().await;
    blocked.send(&enc(&["BLPOP", "q", "0"])).await;
    poll(|| {
        h.backend
            .query_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    })
    .await;
    h.backend.pause();
    let mut script = h.client().await;
    script.send(&enc(&["EVAL", "return 7", "0"])).await;
    // Stopped (SIGSTOP): the sockets stay open and nothing answers. Prompt
    // requests get an error after the reply timeout, not a wait without end.
    shared.send(&enc(&["GET", "k"])).await;
    own.send(&enc(&["GET", "k"])).await;
    let (a, b) = (shared.read().await, own.read().await);
    assert!(timed_out(&a), "{}", text(&a));
    assert!(timed_out(&b), "{}", text(&b));
    // Counted: the shared lane's connection and the client's own.
    until_info(h.addr, |i| i.contains("backend_reply_timeouts:2\r\n")).await;
    h.backend.resume();
    // Both go on, on new connections.
    assert_eq!(shared.cmd_str(&["GET", "k"]).await, "$1\r\nv\r\n");
    assert_eq!(own.cmd_str(&["GET", "k"]).await, "$1\r\nv\r\n");
    // The blocked command and the script were left to wait: their replies
    // are the first thing their clients get, no error before them.
    assert_eq!(text(&script.read().await), ":7\r\n");
    assert_eq!(shared.cmd_str(&["RPUSH", "q", "x"]).await, ":1\r\n");
    assert_eq!(text(&blocked.read().await), "*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
}
