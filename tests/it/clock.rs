//! The clock guard: a master whose wall clock runs ahead of the proxy's (a
//! step forward, a fast clock) forgets its locks early, so its votes do not
//! count until every lock it may have shortened has expired. The masters
//! here are real redis-servers on a wall clock the test sets (see
//! `common/fake_clock.rs`); the proxy's clock is the real one.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::common::fake_clock::FakeClock;
use crate::common::*;

/// Three masters, the first two on fake clocks.
async fn two_on_fake_clocks() -> (Harness, [FakeClock; 2]) {
    let clocks = [FakeClock::new(), FakeClock::new()];
    let masters = vec![
        RedisServer::start_with_clock(&clocks[0]),
        RedisServer::start_with_clock(&clocks[1]),
        RedisServer::start(),
    ];
    (Harness::with_masters(masters, |_| {}).await, clocks)
}

fn quarantined(h: &Harness) -> Vec<bool> {
    let engine = h.shared.engine();
    engine.masters().iter().map(|m| m.quarantined()).collect()
}

/// The scenario: two of three masters stepped 60 s forward while a
/// 30 s lock is held. They forget it at once; without the guard a second
/// client was granted it with 27 s of the first one's lock still to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_whose_clocks_step_forward_grant_no_second_holder() {
    logs();
    let (h, clocks) = two_on_fake_clocks().await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    assert_eq!(
        a.cmd_str(&["SET", "lock:clk", "a", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&h.masters, "lock:clk", "a") == 3).await;
    for c in &clocks {
        c.step_forward(Duration::from_secs(60));
    }
    assert_eq!(holders_on(&h.masters, "lock:clk", "a"), 1, "they forgot it");
    // The stepped masters grant it again; their TIME, read right behind,
    // shows the step, and their grants do not count.
    for _ in 0..5 {
        assert_eq!(
            b.cmd_str(&["SET", "lock:clk", "b", "NX", "PX", "30000"])
                .await,
            "$-1\r\n"
        );
    }
    assert_eq!(quarantined(&h), [true, true, false]);
    let engine = h.shared.engine();
    let masters = engine.masters();
    for m in &masters[..2] {
        assert_eq!(m.stats.clock_jumps.load(Ordering::Relaxed), 1);
        let offset_ms = m.stats.clock_offset_us.load(Ordering::Relaxed) / 1000;
        assert!((59_000..61_000).contains(&offset_ms), "{offset_ms} ms");
        assert_eq!(log_lines("its clock ran", m.url.port).len(), 1);
    }
    assert_eq!(masters[2].stats.clock_jumps.load(Ordering::Relaxed), 0);
    let info = until_info(h.addr, |i| i.contains("clock_jumps=1")).await;
    assert_eq!(info.matches("clock_jumps=1,").count(), 2, "{info}");
    let metrics = h.client().await.cmd_str(&["PROXY", "MASTERS"]).await;
    assert!(metrics.contains("clock_jumps"), "{metrics}");
}

/// Two masters whose clocks run twice as fast expire a lock in half its TTL;
/// a second client keeps asking. No grant while the first holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_whose_clocks_run_fast_grant_no_second_holder() {
    let (h, clocks) = two_on_fake_clocks().await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    let asked = Instant::now();
    assert_eq!(
        a.cmd_str(&["SET", "lock:fast", "a", "NX", "PX", "3000"])
            .await,
        "+OK\r\n"
    );
    for c in &clocks {
        c.run_at(2.0);
    }
    // The lock is gone from the fast masters after about 1.5 s; it is the
    // first client's until 3 s after it asked.
    let mut tries = 0;
    while asked.elapsed() < Duration::from_millis(2_800) {
        let r = b
            .cmd_str(&["SET", "lock:fast", "b", "NX", "PX", "3000"])
            .await;
        assert_eq!(r, "$-1\r\n", "after {:?}", asked.elapsed());
        tries += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(tries > 20, "{tries} tries");
    assert_eq!(holders_on(&h.masters[..2], "lock:fast", "a"), 0);
    let engine = h.shared.engine();
    for m in &engine.masters()[..2] {
        assert!(m.stats.clock_jumps.load(Ordering::Relaxed) >= 1);
    }
}

/// A clock stepped back keeps locks longer than their TTL: nothing is at
/// risk, so nothing is quarantined; it is counted and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_stepped_back_is_reported_and_trusted() {
    let (h, clocks) = two_on_fake_clocks().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:back1", "a", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    clocks[0].step_back(Duration::from_secs(60));
    for i in 0..5 {
        let key = format!("lock:back-{i}");
        assert_eq!(
            c.cmd_str(&["SET", &key, "a", "NX", "PX", "30000"]).await,
            "+OK\r\n"
        );
        assert_eq!(holders_on(&h.masters[..1], &key, "a"), 1);
    }
    assert_eq!(quarantined(&h), [false, false, false]);
    let engine = h.shared.engine();
    let m = &engine.masters()[0];
    assert_eq!(m.stats.clock_jumps.load(Ordering::Relaxed), 0);
    assert!(m.stats.clock_steps_back.load(Ordering::Relaxed) >= 1);
}
