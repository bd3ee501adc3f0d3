//! Clients do not reach each other through the backend connections they
//! share: a client that leaves leaves nothing behind on the backend (its
//! blocked commands, transaction and subscriptions end with it, as Redis ends
//! them for a client that disconnects), and nobody waits behind another
//! client's long command. Each case runs against a redis-server directly and
//! through the proxy, and must come out the same.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use crate::common::*;

/// `INFO clients`' `blocked_clients` on `server`.
fn blocked_clients(server: &RedisServer) -> i64 {
    let info = server.query_str(&["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1)
}

/// A consumer blocks on `q`, then is killed; a producer pushes one element.
/// Returns what is left in the queue (Redis: the element, nobody took it).
async fn consumer_killed_then_push(addr: SocketAddr, server: &RedisServer, q: &str) -> String {
    let mut consumer = RawClient::connect(addr).await;
    consumer.send(&enc(&["BLPOP", q, "0"])).await;
    poll(|| blocked_clients(server) == 1).await;
    drop(consumer);
    // Redis cancels the blocked command of a client that left.
    poll(|| blocked_clients(server) == 0).await;
    let mut producer = RawClient::connect(addr).await;
    assert_eq!(producer.cmd_str(&["RPUSH", q, "x"]).await, ":1\r\n");
    producer.cmd_str(&["LRANGE", q, "0", "-1"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_consumers_blpop_takes_nothing_pushed_after_it_left() {
    for multiplex in [true, false] {
        let h = Harness::start_with(3, |c| c.passthrough.multiplex = multiplex).await;
        let direct = RedisServer::start();
        let addr = SocketAddr::from(([127, 0, 0, 1], direct.port));
        let want = consumer_killed_then_push(addr, &direct, "q1").await;
        assert_eq!(want, "*1\r\n$1\r\nx\r\n");
        let got = consumer_killed_then_push(h.addr, &h.backend, "q1").await;
        assert_eq!(got, want, "multiplex = {multiplex}");
    }
}

/// The client half-closes after `BLPOP` and a `GET` behind it: Redis drops
/// both (the client is gone) and closes; nothing is written for them.
async fn half_closed_after_blpop(addr: SocketAddr, server: &RedisServer) -> (Vec<u8>, i64) {
    let mut c = RawClient::connect(addr).await;
    assert_eq!(c.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    c.send(&enc(&["BLPOP", "q2", "0"])).await;
    c.send(&enc(&["GET", "k"])).await;
    poll(|| blocked_clients(server) == 1).await;
    c.stream.shutdown().await.unwrap();
    assert!(c.closed().await, "the connection closes");
    (c.rest(), blocked_clients(server))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_half_closes_gets_what_redis_would_give_it() {
    let h = Harness::start(3).await;
    let direct = RedisServer::start();
    let addr = SocketAddr::from(([127, 0, 0, 1], direct.port));
    let want = half_closed_after_blpop(addr, &direct).await;
    assert_eq!(want, (Vec::new(), 0));
    assert_eq!(half_closed_after_blpop(h.addr, &h.backend).await, want);
}

/// Subscriptions and a transaction in progress end with the client.
async fn leaves_subscribed_and_in_multi(addr: SocketAddr, server: &RedisServer) {
    let mut sub = RawClient::connect(addr).await;
    sub.cmd(&["SUBSCRIBE", "news"]).await;
    let mut tx = RawClient::connect(addr).await;
    assert_eq!(tx.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(tx.cmd_str(&["SET", "t", "1"]).await, "+QUEUED\r\n");
    let numsub = || server.query(&["PUBSUB", "NUMSUB", "news"]);
    let in_multi = || server.query_str(&["CLIENT", "LIST"]).contains("multi=1");
    poll(|| {
        numsub()
            == redis::Value::Array(vec![
                redis::Value::BulkString(b"news".to_vec()),
                redis::Value::Int(1),
            ])
    })
    .await;
    assert!(in_multi());
    drop(sub);
    drop(tx);
    poll(|| {
        numsub()
            == redis::Value::Array(vec![
                redis::Value::BulkString(b"news".to_vec()),
                redis::Value::Int(0),
            ])
    })
    .await;
    poll(|| !in_multi()).await;
    assert_eq!(server.get("t"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_transactions_end_with_their_client() {
    let h = Harness::start(3).await;
    let direct = RedisServer::start();
    leaves_subscribed_and_in_multi(SocketAddr::from(([127, 0, 0, 1], direct.port)), &direct).await;
    leaves_subscribed_and_in_multi(h.addr, &h.backend).await;
}

/// Runs `redis-cli -p port --rdb file`, within [`WAIT`]: its exit status and
/// what it printed.
async fn rdb_backup(port: u16, file: &std::path::Path) -> (bool, String) {
    let run = tokio::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--rdb"])
        .arg(file)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(WAIT, run)
        .await
        .expect("redis-cli --rdb finishes")
        .expect("redis-cli runs");
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), printed)
}

/// Replication does not pass through the proxy: `SYNC`/`PSYNC` (what
/// `redis-cli --rdb` and replicas send) are refused at once with an error
/// that says where to go, never left hanging; the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replication_is_refused_at_once_never_left_hanging() {
    let h = Harness::start(3).await;
    let direct = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let dir = tempfile::tempdir().unwrap();
    let (ok, printed) = rdb_backup(direct.port, &dir.path().join("direct.rdb")).await;
    assert!(ok, "direct: {printed}");
    let (ok, printed) = rdb_backup(h.addr.port(), &dir.path().join("proxy.rdb")).await;
    assert!(!ok, "through the proxy: {printed}");
    assert!(
        printed.contains("is not served through redlock-proxy"),
        "{printed}"
    );
    let mut c = h.client().await;
    for cmd in [&["SYNC"][..], &["PSYNC", "?", "-1"]] {
        let reply = c.cmd_str(cmd).await;
        assert!(
            reply.starts_with("-ERR '") && reply.contains("point the replica"),
            "{reply}"
        );
    }
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
}
