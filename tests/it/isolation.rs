//! Clients do not reach each other through the backend connections they
//! share: a client that leaves leaves nothing behind on the backend (its
//! blocked commands, transaction and subscriptions end with it, as Redis ends
//! them for a client that disconnects), and nobody waits behind another
//! client's long command. Each case runs against a redis-server directly and
//! through the proxy, and must come out the same.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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

/// Whether `reply` is an error (RESP2 or RESP3 blob error).
fn is_error(reply: &str) -> bool {
    reply.starts_with('-') || reply.starts_with('!')
}

/// Waits until the proxy says one of its shared connections is stalled (a
/// condition, not a time: what the steering reacts to).
async fn until_stalled(proxy: SocketAddr) {
    until_info(proxy, |i| !i.contains("shared_connections_stalled:0\r\n")).await;
}

/// A script that never ends runs from one client, past the backend's
/// `busy-reply-threshold`: another client gets `-BUSY` at once, and a kill
/// from a third ends the script. `proxy`: the address is the proxy's.
async fn busy_script(
    addr: SocketAddr,
    server: &RedisServer,
    proxy: bool,
    function: bool,
) -> Vec<String> {
    server.query(&["CONFIG", "SET", "lua-time-limit", "10"]);
    let mut runner = RawClient::connect(addr).await;
    if function {
        let lib =
            "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
        assert!(!is_error(
            &runner.cmd_str(&["FUNCTION", "LOAD", "REPLACE", lib]).await
        ));
        runner.send(&enc(&["FCALL", "spin", "0"])).await;
    } else {
        runner.send(&enc(&["EVAL", "while true do end", "0"])).await;
    }
    poll(|| matches!(server.try_query(&["PING"]), Err(e) if e.to_string().contains("BUSY"))).await;
    if proxy {
        until_stalled(addr).await;
    }
    let mut other = RawClient::connect(addr).await;
    let busy = other.cmd_str(&["GET", "foo"]).await;
    let mut killer = RawClient::connect(addr).await;
    let kill = if function { "FUNCTION" } else { "SCRIPT" };
    let killed = killer.cmd_str(&[kill, "KILL"]).await;
    let ended = text(&runner.read().await);
    // Everyone is served again.
    let after = other.cmd_str(&["SET", "foo", "1"]).await;
    vec![busy, killed, ended, after]
}

async fn same_for_a_busy_script(function: bool) {
    let h = Harness::start(3).await;
    let direct = RedisServer::start();
    let want = busy_script(
        SocketAddr::from(([127, 0, 0, 1], direct.port)),
        &direct,
        false,
        function,
    )
    .await;
    assert!(want[0].starts_with("-BUSY"), "{want:?}");
    assert_eq!(want[1], "+OK\r\n");
    let got = busy_script(h.addr, &h.backend, true, function).await;
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_runs_on_busies_others_at_once_and_script_kill_reaches_it() {
    same_for_a_busy_script(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_that_runs_on_busies_others_at_once_and_function_kill_reaches_it() {
    same_for_a_busy_script(true).await;
}

/// Writes are paused: one client's `SET` waits, another's `GET` does not
/// (it reads the value from before the `SET`, which proves it ran first).
/// The pause comes from `admin` (through the proxy, which then knows of it,
/// or on the backend directly, behind its back).
async fn paused_write(
    addr: SocketAddr,
    admin: SocketAddr,
    server: &RedisServer,
    proxy: bool,
) -> Vec<String> {
    let mut admin = RawClient::connect(admin).await;
    let mut writer = RawClient::connect(addr).await;
    writer.cmd(&["DEL", "a"]).await;
    assert_eq!(
        admin.cmd_str(&["CLIENT", "PAUSE", "20000", "WRITE"]).await,
        "+OK\r\n"
    );
    writer.send(&enc(&["SET", "a", "1"])).await;
    poll(|| blocked_clients(server) == 1).await;
    if proxy {
        until_stalled(addr).await;
    }
    let mut reader = RawClient::connect(addr).await;
    let read = reader.cmd_str(&["GET", "a"]).await;
    let unpause = admin.cmd_str(&["CLIENT", "UNPAUSE"]).await;
    let wrote = text(&writer.read().await);
    let read_after = reader.cmd_str(&["GET", "a"]).await;
    vec![read, unpause, wrote, read_after]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_write_holds_only_its_own_client() {
    let h = Harness::start(3).await;
    let direct = RedisServer::start();
    let at = SocketAddr::from(([127, 0, 0, 1], direct.port));
    let want = paused_write(at, at, &direct, false).await;
    assert_eq!(want, ["$-1\r\n", "+OK\r\n", "+OK\r\n", "$1\r\n1\r\n"]);
    // Paused through the proxy: it knows, and writes take lanes of their own.
    assert_eq!(paused_write(h.addr, h.addr, &h.backend, true).await, want);
    // Paused on the backend behind the proxy's back: the stalled connection
    // is steered around.
    let backend = SocketAddr::from(([127, 0, 0, 1], h.backend.port));
    assert_eq!(paused_write(h.addr, backend, &h.backend, true).await, want);
    let info = h.client().await.cmd_str(&["INFO", "proxy"]).await;
    assert!(!info.contains("shared_stalls:0\r\n"), "{info}");
}

/// One reader: pipelines of random depth and shape, in a loop, until `stop`;
/// `done` counts the batches answered.
async fn reader(addr: SocketAddr, seed: u64, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut c = RawClient::connect(addr).await;
    if rng.bool() {
        assert!(c.cmd_str(&["HELLO", "3"]).await.starts_with('%'));
    }
    while !stop.load(Ordering::Relaxed) {
        let depth = rng.usize(1..=16);
        let mut batch = Vec::new();
        for _ in 0..depth {
            let key = format!("r:{}", rng.u8(..8));
            batch.extend(match rng.u8(..4) {
                0 => enc(&["GET", &key]),
                1 => enc(&["EXISTS", &key, "r:x"]),
                2 => enc(&["STRLEN", &key]),
                _ => enc(&["MGET", &key, "r:y"]),
            });
        }
        c.send(&batch).await;
        for _ in 0..depth {
            c.read().await;
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Many clients sharing connections keep being served while another client
/// is held by the backend: a script past `busy-reply-threshold` (they get
/// `-BUSY` from Redis, as directly), or a write under a `CLIENT PAUSE WRITE`
/// sent through the proxy (they read on). Random rounds, the seed in the
/// failure message: readers of random number, protocol and pipeline shape.
/// Once the held command is known held, every reader must get more batches
/// answered before it is released: a reader queued behind it would never
/// get there, and the wait would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_keep_being_served_while_another_client_is_held() {
    let h = Harness::start(3).await;
    h.backend.query(&["CONFIG", "SET", "lua-time-limit", "10"]);
    for round in 0..4 {
        let seed = fastrand::u64(..);
        let mut rng = fastrand::Rng::with_seed(seed);
        let script = round % 2 == 0;
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Vec<Arc<AtomicUsize>> =
            (0..rng.usize(4..=12)).map(|_| Arc::default()).collect();
        let tasks: Vec<_> = counts
            .iter()
            .map(|done| {
                tokio::spawn(reader(
                    h.addr,
                    rng.u64(..),
                    Arc::clone(&stop),
                    Arc::clone(done),
                ))
            })
            .collect();
        // The readers are under way.
        poll(|| counts.iter().all(|c| c.load(Ordering::Relaxed) >= 3)).await;
        let mut held = h.client().await;
        let mut admin = h.client().await;
        if script {
            held.send(&enc(&["EVAL", "while true do end", "0"])).await;
            poll(|| matches!(h.backend.try_query(&["PING"]), Err(e) if e.to_string().contains("BUSY"))).await;
        } else {
            assert_eq!(
                admin.cmd_str(&["CLIENT", "PAUSE", "60000", "WRITE"]).await,
                "+OK\r\n"
            );
            held.send(&enc(&["SET", "r:held", "1"])).await;
            poll(|| blocked_clients(&h.backend) == 1).await;
        }
        let base: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let deadline = tokio::time::Instant::now() + WAIT;
        while counts
            .iter()
            .zip(&base)
            .any(|(c, b)| c.load(Ordering::Relaxed) < b + 5)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round} (seed {seed}, script {script}): readers stopped while another client was held: {:?} from {base:?}",
                counts
                    .iter()
                    .map(|c| c.load(Ordering::Relaxed))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (release, released) = if script {
            (&["SCRIPT", "KILL"][..], "-ERR Script killed by user")
        } else {
            (&["CLIENT", "UNPAUSE"][..], "+OK")
        };
        assert_eq!(admin.cmd_str(release).await, "+OK\r\n");
        assert!(text(&held.read().await).starts_with(released));
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await.unwrap();
        }
    }
}

/// The ids of the backend's clients now.
fn client_ids(server: &RedisServer) -> Vec<String> {
    server
        .query_str(&["CLIENT", "LIST"])
        .lines()
        .filter_map(|l| l.strip_prefix("id=").and_then(|r| r.split(' ').next()))
        .map(str::to_string)
        .collect()
}

/// A consumer's first blocking command does not wait for a connection to
/// open: it runs on one the proxy had ready, with the consumer's name (and
/// library, where the backend knows CLIENT SETINFO) set ahead of it, so it reaches the backend as soon as the proxy
/// reads it (a push another client sends a moment later cannot overtake it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_blocking_command_runs_on_a_connection_already_open() {
    let h = Harness::start(3).await;
    until_info(h.addr, |i| i.contains("backend_connections_ready:1\r\n")).await;
    let open_before = client_ids(&h.backend);
    let mut consumer = h.client().await;
    assert_eq!(
        consumer.cmd_str(&["CLIENT", "SETNAME", "worker-1"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        consumer
            .cmd_str(&["CLIENT", "SETINFO", "LIB-NAME", "jobs"])
            .await,
        "+OK\r\n"
    );
    consumer.send(&enc(&["BLPOP", "jobs", "0"])).await;
    poll(|| blocked_clients(&h.backend) == 1).await;
    let list = h.backend.query_str(&["CLIENT", "LIST"]);
    let blocked = list.lines().find(|l| l.contains("flags=b")).unwrap();
    let id = blocked
        .strip_prefix("id=")
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(
        open_before.iter().any(|i| i == id),
        "{blocked} opened after the BLPOP"
    );
    // (Redis 7.0 has no CLIENT SETINFO: the steps the proxy sends fail
    // quietly, as in a handshake, and CLIENT LIST shows no library.)
    assert!(blocked.contains("name=worker-1"), "{blocked}");
    let mut producer = h.client().await;
    assert_eq!(producer.cmd_str(&["RPUSH", "jobs", "j1"]).await, ":1\r\n");
    assert_eq!(
        text(&consumer.read().await),
        "*2\r\n$4\r\njobs\r\n$2\r\nj1\r\n"
    );
}
