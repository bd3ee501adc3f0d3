//! Hostile input over raw sockets. After each attack the proxy still serves
//! other clients, lets go of the attacker's connections, and its memory stays
//! within a bound (the proxy runs in this process, so this process's RSS is
//! measured).

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::*;
use tokio::io::AsyncWriteExt;

/// Resident memory of this process, in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<usize>()
        .unwrap()
        * 4096
}

const RSS_BOUND: usize = 64 * 1024 * 1024;

async fn still_serving(h: &Harness) {
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(c.cmd_str(&["SET", "alive", "yes"]).await, "+OK\r\n");
    let lock = c
        .cmd_str(&["SET", "lock:alive", "t", "NX", "PX", "1000"])
        .await;
    assert!(lock == "+OK\r\n" || lock == "$-1\r\n", "{lock}");
}

async fn all_attackers_gone(h: &Harness, baseline: usize) {
    poll(|| h.shared.clients() <= baseline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_redis_errors() {
    let h = Harness::start(3).await;
    let before = rss();
    let cases: &[(&[u8], &str)] = &[
        (
            b"*1\r\n#foo\r\n",
            "-ERR Protocol error: expected '$', got '#'\r\n",
        ),
        (
            b"*2\r\n$3\r\nGET\r\n!3\r\nabc\r\n",
            "-ERR Protocol error: expected '$', got '!'\r\n",
        ),
        (
            b"*1\r\n$-2\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$9999999999999\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*1\r\n$1073741824\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
        (
            b"*99999999999999999999\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*2000000\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1x\r\n",
            "-ERR Protocol error: invalid multibulk length\r\n",
        ),
        (
            b"*1\r\n$1x\r\n",
            "-ERR Protocol error: invalid bulk length\r\n",
        ),
    ];
    for (input, expected) in cases {
        let mut c = h.client().await;
        c.send(input).await;
        assert_eq!(text(&c.read().await), *expected, "input {:?}", text(input));
        assert!(c.closed().await);
    }
    // Negative element counts are empty requests, as in Redis.
    let mut c = h.client().await;
    c.send(b"*-5\r\n*0\r\n").await;
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    still_serving(&h).await;
    all_attackers_gone(&h, 1).await;
    assert!(rss().saturating_sub(before) < RSS_BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_and_half_closed_sockets() {
    let h = Harness::start(3).await;
    // A request cut off, then the socket closed: nothing to answer, nothing kept.
    for cut in [
        &b"*3\r\n$3\r\nSET\r\n$1"[..],
        b"*3\r\n",
        b"*1\r\n$4\r\nPI",
        b"PIN",
    ] {
        let mut c = h.client().await;
        c.send(cut).await;
        c.stream.shutdown().await.unwrap();
        assert!(c.closed().await, "{cut:?}");
    }
    // A complete request and then a half-close: the reply still comes.
    let mut c = h.client().await;
    c.send(
        &[
            enc(&["SET", "hc", "1"]),
            enc(&["SET", "lock:hc", "t", "NX", "PX", "5000"]),
        ]
        .concat(),
    )
    .await;
    c.stream.shutdown().await.unwrap();
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert!(c.closed().await);
    still_serving(&h).await;
    all_attackers_gone(&h, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_garbage() {
    let h = Harness::start(3).await;
    let before = rss();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        let mut c = h.client().await;
        let len = rng.usize(1..4096);
        let junk: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        let _ = c.stream.write_all(&junk).await;
        drop(c);
    }
    still_serving(&h).await;
    all_attackers_gone(&h, 0).await;
    assert!(rss().saturating_sub(before) < RSS_BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_starve_others() {
    let h = Harness::start(3).await;
    let before = rss();
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(h.client().await);
    }
    let request = b"*1\r\n$4\r\nPING\r\n";
    for byte in request.iter() {
        for c in slow.iter_mut() {
            c.send(std::slice::from_ref(byte)).await;
        }
        // Between bytes, a normal client is served as usual.
        let mut fast = h.client().await;
        assert_eq!(fast.cmd_str(&["PING"]).await, "+PONG\r\n");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in slow.iter_mut() {
        assert_eq!(text(&c.read().await), "+PONG\r\n");
    }
    assert!(rss().saturating_sub(before) < RSS_BOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_connections_opened_and_dropped() {
    let h = Harness::start(3).await;
    let before = rss();
    for round in 0..5 {
        let mut batch = Vec::new();
        for i in 0..1000 {
            let mut c = tokio::net::TcpStream::connect(h.addr).await.unwrap();
            if i % 3 == 0 {
                let _ = c.write_all(b"*2\r\n$3\r\nGET\r\n$").await;
            }
            if i % 3 == 1 {
                let _ = c
                    .write_all(&enc(&[
                        "SET",
                        &format!("lock:drop{round}-{i}"),
                        "t",
                        "NX",
                        "PX",
                        "2000",
                    ]))
                    .await;
            }
            batch.push(c);
        }
        drop(batch);
    }
    all_attackers_gone(&h, 0).await;
    still_serving(&h).await;
    let grown = rss().saturating_sub(before);
    assert!(grown < RSS_BOUND, "RSS grew by {grown} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_hits_the_output_limit() {
    // On its own backend connection a client that does not read is held back
    // (tests/memory/backpressure.rs); on a shared one the replies to what it
    // sent must be taken off the connection, and it is closed at the limit.
    let h = Harness::start_with(3, |c| {
        c.limits.max_output_buffer = 4 * 1024 * 1024;
        c.passthrough.multiplex = true;
    })
    .await;
    let before = rss();
    let mut setup = h.client().await;
    let value = "v".repeat(512 * 1024);
    assert_eq!(setup.cmd_str(&["SET", "big", &value]).await, "+OK\r\n");
    let mut greedy = h.client().await;
    let get = enc(&["GET", "big"]);
    // Ask for ~100 MB of replies and never read them.
    for _ in 0..200 {
        if tokio::time::timeout(Duration::from_secs(2), greedy.stream.write_all(&get))
            .await
            .is_err()
        {
            break;
        }
    }
    poll(|| h.shared.metrics().output_limit.load(Ordering::Relaxed) >= 1).await;
    all_attackers_gone(&h, 1).await;
    still_serving(&h).await;
    let grown = rss().saturating_sub(before);
    assert!(grown < RSS_BOUND, "RSS grew by {grown} bytes");
}
