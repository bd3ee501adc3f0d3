//! `passthrough.multiplex = true` (the default): stateless commands of all
//! clients share backend connections; a client moves to its own connection at
//! its first stateful command, or after a large reply, after its shared
//! replies, so order and semantics hold.

use crate::common::*;

async fn multiplexed() -> Harness {
    let h = Harness::start(3).await;
    assert!(
        h.shared.config().passthrough.multiplex,
        "multiplexing is the default"
    );
    h
}

/// Waits until the proxy has its ready backend connection open (it is
/// counted among the backend's clients from then on).
async fn ready_connection_open(h: &Harness) {
    until_info(h.addr, |i| i.contains("backend_connections_ready:1\r\n")).await;
}

fn backend_clients(h: &Harness) -> usize {
    let info = h.backend.query_str(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("connected_clients:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_share_one_backend_connection() {
    let h = multiplexed().await;
    ready_connection_open(&h).await;
    let before = backend_clients(&h);
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(h.client().await);
    }
    let mut tasks = Vec::new();
    for (i, mut c) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // A shared counter and one of the client's own, interleaved: each
            // client must get its own replies, in order (the shared
            // connection hands a client's run of replies over together).
            let own = format!("counter:{i}");
            let mut req = Vec::new();
            for _ in 0..250 {
                req.extend(enc(&["INCR", "counter"]));
                req.extend(enc(&["INCR", &own]));
            }
            c.send(&req).await;
            let mut last = 0i64;
            for n in 1..=250 {
                let r = text(&c.read().await);
                let v: i64 = r.trim_start_matches(':').trim().parse().unwrap();
                assert!(v > last, "replies out of order: {v} after {last}");
                last = v;
                let r = text(&c.read().await);
                assert_eq!(r.trim(), format!(":{n}"), "client {i}'s own counter");
            }
            c
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap());
    }
    assert_eq!(h.backend.get("counter").as_deref(), Some("5000"));
    // 20 clients, one shared connection (a second if it was steered around
    // a stall), plus the test's own query.
    assert!(
        backend_clients(&h) <= before + 3,
        "{} backend connections",
        backend_clients(&h)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_keep_their_order_across_the_move_to_an_own_connection() {
    let h = multiplexed().await;
    let mut c = h.client().await;
    let mut req = Vec::new();
    for cmd in [
        &["SET", "k", "1"][..],
        &["INCR", "k"],
        &["SET", "lock:mx", "t", "NX", "PX", "10000"],
        &["MULTI"],
        &["INCR", "k"],
        &["EXEC"],
        &["GET", "k"],
        &["PING"],
    ] {
        req.extend(enc(cmd));
    }
    c.send(&req).await;
    let expected = [
        "+OK\r\n",
        ":2\r\n",
        "+OK\r\n",
        "+OK\r\n",
        "+QUEUED\r\n",
        "*1\r\n:3\r\n",
        "$1\r\n3\r\n",
        "+PONG\r\n",
    ];
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(text(&c.read().await), *e, "reply {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_blocking_and_pubsub_get_their_own_connection() {
    let h = multiplexed().await;
    let mut a = h.client().await;
    assert_eq!(a.cmd_str(&["SET", "k", "db0"]).await, "+OK\r\n");
    assert_eq!(a.cmd_str(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(a.cmd_str(&["GET", "k"]).await, "$-1\r\n");
    assert_eq!(a.cmd_str(&["SET", "k", "db1"]).await, "+OK\r\n");
    let mut b = h.client().await;
    assert_eq!(b.cmd_str(&["GET", "k"]).await, "$3\r\ndb0\r\n");
    // BLPOP blocks only its own client.
    let mut waiter = h.client().await;
    waiter.send(&enc(&["BLPOP", "q", "0"])).await;
    poll(|| {
        h.backend
            .query_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    })
    .await;
    assert_eq!(b.cmd_str(&["GET", "k"]).await, "$3\r\ndb0\r\n");
    assert_eq!(b.cmd_str(&["RPUSH", "q", "x"]).await, ":1\r\n");
    assert_eq!(text(&waiter.read().await), "*2\r\n$1\r\nq\r\n$1\r\nx\r\n");
    // Pub/sub.
    let mut sub = h.client().await;
    assert!(
        sub.cmd_str(&["SUBSCRIBE", "ch"])
            .await
            .contains("subscribe")
    );
    assert_eq!(b.cmd_str(&["PUBLISH", "ch", "hi"]).await, ":1\r\n");
    assert_eq!(
        text(&sub.read().await),
        "*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resp3_clients_use_a_resp3_connection() {
    let h = multiplexed().await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["HSET", "h", "f", "v"]).await, ":1\r\n");
    let mut req = Vec::new();
    for cmd in [
        &["HELLO", "3"][..],
        &["HGETALL", "h"],
        &["GET", "none"],
        &["HELLO", "2"],
        &["HGETALL", "h"],
        &["GET", "none"],
    ] {
        req.extend(enc(cmd));
    }
    c.send(&req).await;
    assert!(text(&c.read().await).starts_with("%7"));
    assert_eq!(text(&c.read().await), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(text(&c.read().await), "_\r\n");
    assert!(text(&c.read().await).starts_with("*14"));
    assert_eq!(text(&c.read().await), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(text(&c.read().await), "$-1\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_then_back_with_shared_connections() {
    let mut h = multiplexed().await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "a", "1"]).await, "+OK\r\n");
    h.backend.kill();
    let r = c.cmd_str(&["GET", "a"]).await;
    assert!(r.starts_with("-ERR passthrough backend unavailable"), "{r}");
    assert_eq!(
        c.cmd_str(&["SET", "lock:mb", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    h.backend.restart();
    // The next command opens a new shared connection.
    assert_eq!(c.cmd_str(&["SET", "a", "2"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "a"]).await, "$1\r\n2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reply_and_scripts_on_shared_connections() {
    let h = multiplexed().await;
    let mut c = h.client().await;
    c.send(&enc(&["CLIENT", "REPLY", "OFF"])).await;
    c.send(&enc(&["SET", "quiet", "1"])).await;
    c.send(&enc(&["CLIENT", "REPLY", "ON"])).await;
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "quiet"]).await, "$1\r\n1\r\n");
    // A lock script learned by the proxy, run on a data key: loaded on the shared
    // connection first.
    assert_eq!(
        c.cmd_str(&["SCRIPT", "LOAD", RELEASE]).await,
        format!("$40\r\n{RELEASE_SHA}\r\n")
    );
    assert_eq!(c.cmd_str(&["SET", "d", "t"]).await, "+OK\r\n");
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", "d", "t"]).await,
        ":1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_a_large_value_stops_sharing() {
    let h = multiplexed().await;
    // 4 MiB: past the 1 MiB output_high_water.
    let big = "v".repeat(4 << 20);
    assert_eq!(h.backend.query_str(&["SET", "big", &big]), "ok");
    let mut small = h.client().await;
    assert_eq!(small.cmd_str(&["SET", "small", "1"]).await, "+OK\r\n");
    ready_connection_open(&h).await;
    let shared = backend_clients(&h);
    let mut reader = h.client().await;
    let reply = reader.cmd(&["GET", "big"]).await;
    assert_eq!(reply.len(), big.len() + "$4194304\r\n\r\n".len());
    // Its next command takes a connection of its own (the ready one, which
    // is opened again)...
    assert_eq!(reader.cmd_str(&["GET", "small"]).await, "$1\r\n1\r\n");
    ready_connection_open(&h).await;
    assert_eq!(backend_clients(&h), shared + 1);
    // ...and the others keep sharing.
    let mut other = h.client().await;
    assert_eq!(other.cmd_str(&["INCR", "small"]).await, ":2\r\n");
    assert_eq!(small.cmd_str(&["INCR", "small"]).await, ":3\r\n");
    assert_eq!(backend_clients(&h), shared + 1);
}
