//! Framing and connection limits over raw sockets: each gets Redis's error text,
//! the offending connection is closed, and other clients are still served.

use std::time::Duration;

use crate::common::*;

async fn small_limits() -> Harness {
    Harness::start_with(3, |c| {
        c.limits.max_bulk_len = 1024;
        c.limits.max_multibulk_len = 16;
        c.limits.max_inline_len = 256;
        c.limits.max_query_buffer = 64 * 1024;
        c.limits.max_nesting_depth = 32;
    })
    .await
}

/// Sends `input`, expects `error` and a closed connection, then checks that a
/// fresh client is served.
async fn refused(h: &Harness, input: &[u8], error: &str) {
    let mut c = h.client().await;
    c.send(input).await;
    assert_eq!(
        text(&c.read().await),
        format!("-ERR {error}\r\n"),
        "input {:?}",
        text(&input[..input.len().min(40)])
    );
    assert!(c.closed().await, "connection left open after {error}");
    let mut other = h.client().await;
    assert_eq!(other.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(other.cmd_str(&["SET", "still", "served"]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_length_limit() {
    let h = small_limits().await;
    refused(
        &h,
        b"*2\r\n$3\r\nGET\r\n$1025\r\n",
        "Protocol error: invalid bulk length",
    )
    .await;
    refused(&h, b"*1\r\n$-5\r\n", "Protocol error: invalid bulk length").await;
    // At the limit it is fine.
    let mut c = h.client().await;
    let v = "x".repeat(1024);
    assert_eq!(c.cmd_str(&["SET", "k", &v]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multibulk_length_limit() {
    let h = small_limits().await;
    refused(&h, b"*17\r\n", "Protocol error: invalid multibulk length").await;
    refused(&h, b"*abc\r\n", "Protocol error: invalid multibulk length").await;
    let mut c = h.client().await;
    let mut args = vec!["DEL"];
    args.extend(["k"; 15]);
    assert_eq!(c.cmd_str(&args).await, ":0\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_element_header_with_default_limits() {
    let h = Harness::start(3).await;
    refused(
        &h,
        b"*2000000\r\n",
        "Protocol error: invalid multibulk length",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_length_limit() {
    let h = small_limits().await;
    refused(&h, &[b'A'; 300], "Protocol error: too big inline request").await;
    refused(
        &h,
        b"SET k \"unterminated\r\n",
        "Protocol error: unbalanced quotes in request",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_before_any_decoder() {
    let h = Harness::start(3).await;
    let mut deep = Vec::new();
    for _ in 0..100_000 {
        deep.extend_from_slice(b"*1\r\n");
    }
    refused(&h, &deep, "Protocol error: expected '$', got '*'").await;
    refused(
        &h,
        b"*1\r\n%1\r\n+a\r\n+b\r\n",
        "Protocol error: expected '$', got '%'",
    )
    .await;
    refused(&h, b"*1\r\n:1\r\n", "Protocol error: expected '$', got ':'").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_buffer_limit() {
    let h = Harness::start_with(3, |c| c.limits.max_query_buffer = 64 * 1024).await;
    let mut c = h.client().await;
    // A declared 1 MB bulk (within the bulk limit) arriving past the buffer limit.
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n").await;
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..8 {
        if c.stream.try_write(&chunk).is_err() {
            break;
        }
    }
    let reply = text(&c.read().await);
    assert!(
        reply.starts_with("-ERR Protocol error: query buffer limit"),
        "{reply}"
    );
    assert!(c.closed().await);
    let mut other = h.client().await;
    assert_eq!(other.cmd_str(&["PING"]).await, "+PONG\r\n");
}

/// Resident memory of this process (the proxy runs in it), in bytes.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_length_is_not_allocated_up_front() {
    let h = Harness::start(3).await;
    let before = rss();
    let mut stalled = Vec::new();
    for _ in 0..8 {
        let mut c = h.client().await;
        // 500 MB declared, a few bytes sent, then silence.
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\nabc")
            .await;
        stalled.push(c);
    }
    let mut other = h.client().await;
    assert_eq!(other.cmd_str(&["PING"]).await, "+PONG\r\n");
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew by {grown} bytes for 8 stalled 500 MB declarations"
    );
    // The stalled clients are still connected, waiting for their bytes.
    assert!(
        stalled[0]
            .try_read(Duration::from_millis(50))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_clients() {
    let h = Harness::start_with(3, |c| c.server.max_clients = 2).await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    assert_eq!(a.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(b.cmd_str(&["PING"]).await, "+PONG\r\n");
    let mut c = h.client().await;
    assert_eq!(
        text(&c.read().await),
        "-ERR max number of clients reached\r\n"
    );
    assert!(c.closed().await);
    drop(a);
    // Once a slot is free, a client gets in again.
    poll(|| h.shared.clients() < 2).await;
    let mut d = h.client().await;
    assert_eq!(d.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(b.cmd_str(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_clients_are_closed_when_a_timeout_is_set() {
    let h = Harness::start_with(3, |c| c.server.timeout = Duration::from_millis(200)).await;
    let mut idle = h.client().await;
    assert_eq!(idle.cmd_str(&["PING"]).await, "+PONG\r\n");
    let mut blocked = h.client().await;
    blocked.send(&enc(&["BLPOP", "nothing", "0"])).await;
    let mut sub = h.client().await;
    assert!(
        sub.cmd_str(&["SUBSCRIBE", "ch"])
            .await
            .contains("subscribe")
    );
    assert!(idle.closed().await);
    // Blocked and subscribed clients are not idle (as in Redis).
    let mut pusher = h.client().await;
    assert_eq!(pusher.cmd_str(&["RPUSH", "nothing", "x"]).await, ":1\r\n");
    assert_eq!(
        text(&blocked.read().await),
        "*2\r\n$7\r\nnothing\r\n$1\r\nx\r\n"
    );
    assert_eq!(pusher.cmd_str(&["PUBLISH", "ch", "m"]).await, ":1\r\n");
    assert!(text(&sub.read().await).contains("message"));
}
