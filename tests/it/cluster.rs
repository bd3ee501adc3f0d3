//! A Redis Cluster as the passthrough backend: commands routed by slot (checked
//! on the nodes), multi-key commands split and merged, keyless commands by
//! the table, redirections followed through resharding, and a dead or failed
//! over master.

use std::collections::HashSet;

use crate::common::cluster::RedisCluster;
use crate::common::{Harness, RawClient, RedisServer, holders, text};
use redlock_proxy::config::RedisUrl;

/// The proxy with the cluster as its backend (3 lock masters beside it; its
/// plain backend must see nothing).
async fn proxy_for(cluster: &RedisCluster, multiplex: bool) -> Harness {
    proxy_with(cluster, |c| c.passthrough.multiplex = multiplex).await
}

/// [`proxy_for`], with the configuration adjusted by `tweak`.
async fn proxy_with(
    cluster: &RedisCluster,
    tweak: impl FnOnce(&mut redlock_proxy::Config),
) -> Harness {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let seed = cluster.seed();
    let h = Harness::with_masters(masters, move |c| {
        c.passthrough.url = RedisUrl::parse(&seed).unwrap();
        c.passthrough.cluster = true;
        tweak(c);
    })
    .await;
    // The topology is learned in the background: wait for a routed reply.
    let addr = h.addr;
    until_answers(addr, &["GET", "probe"], b"$-1\r\n").await;
    h
}

/// Waits until `cmd`, on a fresh connection through the proxy at `addr`,
/// answers `want`.
async fn until_answers(addr: std::net::SocketAddr, cmd: &[&str], want: &[u8]) {
    crate::common::poll_async(|| async move {
        let mut c = RawClient::connect(addr).await;
        c.cmd(cmd).await == want
    })
    .await;
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("key:{i}")).collect()
}

#[tokio::test]
async fn commands_go_to_the_master_of_their_keys_slot() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    for k in keys(60) {
        assert_eq!(c.cmd(&["SET", &k, &format!("v-{k}")]).await, b"+OK\r\n");
    }
    let mut served = HashSet::new();
    for k in keys(60) {
        let owner = cluster.owner(&k);
        assert_eq!(owner.get(&k), Some(format!("v-{k}")), "{k} on its master");
        served.insert(owner.port);
        let want = format!("${}\r\nv-{k}\r\n", k.len() + 2);
        assert_eq!(text(&c.cmd(&["GET", &k]).await), want);
    }
    assert_eq!(served.len(), 3, "the keys spread over every master");
    // Lock keys go to the lock masters, never to the cluster.
    assert_eq!(
        c.cmd(&["SET", "lock:c", "tok", "NX", "PX", "30000"]).await,
        b"+OK\r\n"
    );
    assert_eq!(holders(&h, "lock:c", "tok"), 3);
    assert_eq!(cluster.owner("lock:c").get("lock:c"), None);
    assert_eq!(
        h.backend.query(&["DBSIZE"]),
        redis::Value::Int(0),
        "the plain backend is unused"
    );
}

#[tokio::test]
async fn multi_key_commands_are_split_per_slot_and_merged_in_order() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    let ks = keys(20);
    let mut mset = vec!["MSET".to_string()];
    for k in &ks {
        mset.push(k.clone());
        mset.push(format!("v-{k}"));
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&mset).await, b"+OK\r\n");
    for k in &ks {
        assert_eq!(cluster.owner(k).get(k), Some(format!("v-{k}")));
    }
    // MGET: every value in its place, a missing key's nil in its place.
    let mut mget = vec!["MGET", "nope"];
    mget.extend(ks.iter().map(String::as_str));
    let mut want = b"*21\r\n$-1\r\n".to_vec();
    for k in &ks {
        let v = format!("v-{k}");
        want.extend(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    assert_eq!(text(&c.cmd(&mget).await), text(&want));
    // Counts add up across slots, duplicates counted as Redis counts them.
    assert_eq!(
        c.cmd(&["EXISTS", "key:1", "key:2", "key:1", "nope"]).await,
        b":3\r\n"
    );
    assert_eq!(c.cmd(&["TOUCH", "key:3", "key:4", "nope"]).await, b":2\r\n");
    assert_eq!(c.cmd(&["DEL", "key:1", "key:2", "nope"]).await, b":2\r\n");
    assert_eq!(
        c.cmd(&["UNLINK", "key:3", "key:4", "key:5"]).await,
        b":3\r\n"
    );
    assert_eq!(cluster.owner("key:5").get("key:5"), None);
    // Other multi-key commands across slots get Redis Cluster's own error.
    let crossslot = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(
        c.cmd(&["MSETNX", "key:6", "a", "key:7", "b"]).await,
        crossslot
    );
    assert_eq!(c.cmd(&["SUNIONSTORE", "key:6", "key:7"]).await, crossslot);
    // ... and work within one slot (hash tags).
    assert_eq!(
        c.cmd(&["MSETNX", "{t}a", "1", "{t}b", "2"]).await,
        b":1\r\n"
    );
    assert_eq!(c.cmd(&["RENAME", "{t}a", "{t}c"]).await, b"+OK\r\n");
    assert_eq!(cluster.owner("{t}c").get("{t}c"), Some("1".into()));
}

#[tokio::test]
async fn keyless_commands_follow_the_table() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    for k in keys(50) {
        c.cmd(&["SET", &k, "v"]).await;
    }
    assert_eq!(c.cmd(&["DBSIZE"]).await, b":50\r\n");
    let all = c.cmd(&["KEYS", "key:*"]).await;
    assert!(all.starts_with(b"*50\r\n"), "{}", text(&all));
    // SCAN walks every master: every key once, then cursor 0.
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    let mut rounds = 0;
    loop {
        let reply = c.cmd(&["SCAN", &cursor, "COUNT", "7"]).await;
        let (next, found) = parse_scan(&reply);
        for k in found {
            seen.insert(k);
        }
        cursor = next;
        rounds += 1;
        if cursor == "0" {
            break;
        }
        assert!(rounds < 1000, "SCAN never ends");
    }
    assert_eq!(seen.len(), 50);
    assert!(c.cmd(&["RANDOMKEY"]).await.starts_with(b"$"));
    assert_eq!(c.cmd(&["SELECT", "0"]).await, b"+OK\r\n");
    assert_eq!(
        c.cmd(&["SELECT", "1"]).await,
        b"-ERR SELECT is not allowed in cluster mode\r\n"
    );
    assert!(
        text(&c.cmd(&["WAIT", "1", "0"]).await)
            .starts_with("-ERR 'wait' is not supported through a cluster backend")
    );
    let info = text(&c.cmd(&["INFO"]).await);
    assert!(
        info.contains("cluster_enabled:1") && info.contains("# Proxy"),
        "{info}"
    );
    // A script loaded through the proxy runs on whichever master a key needs.
    let sha = text(
        &c.cmd(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"])
            .await,
    );
    let sha = sha.lines().nth(1).unwrap().to_string();
    for k in ["key:1", "key:2", "key:3"] {
        assert_eq!(c.cmd(&["EVALSHA", &sha, "1", k]).await, b"$1\r\nv\r\n");
    }
    assert_eq!(c.cmd(&["FLUSHALL"]).await, b"+OK\r\n");
    for m in cluster.masters() {
        assert_eq!(m.query(&["DBSIZE"]), redis::Value::Int(0));
    }
    assert_eq!(c.cmd(&["DBSIZE"]).await, b":0\r\n");
}

/// `SCAN`'s reply: the cursor and the keys.
fn parse_scan(reply: &[u8]) -> (String, Vec<String>) {
    let (v, _) = redlock_proxy::protocol::decode(reply).expect("a SCAN reply");
    let items = v.array().expect("an array").to_vec();
    let cursor = String::from_utf8(items[0].text().unwrap().to_vec()).unwrap();
    let keys = items[1]
        .array()
        .unwrap()
        .iter()
        .map(|k| String::from_utf8(k.text().unwrap().to_vec()).unwrap())
        .collect();
    (cursor, keys)
}

/// Runs `redis-cli --cluster reshard`, moving `slots` slots from `from` to `to`.
fn reshard(cluster: &RedisCluster, from: &RedisServer, to: &RedisServer, slots: usize) {
    let out = std::process::Command::new("redis-cli")
        .args([
            "--cluster",
            "reshard",
            &format!("127.0.0.1:{}", cluster.nodes[0].port),
        ])
        .args(["--cluster-from", &RedisCluster::id(from)])
        .args(["--cluster-to", &RedisCluster::id(to)])
        .args(["--cluster-slots", &slots.to_string()])
        // Keys move a few at a time: clients meet ASK while a slot migrates.
        .args(["--cluster-pipeline", "2", "--cluster-yes"])
        .output()
        .expect("run redis-cli --cluster reshard");
    assert!(
        out.status.success(),
        "reshard: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_under_load_is_invisible_to_clients() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let (from, to) = (&cluster.masters()[0].port, &cluster.masters()[1].port);
    let from = cluster.nodes.iter().find(|n| n.port == *from).unwrap();
    let to = cluster.nodes.iter().find(|n| n.port == *to).unwrap();
    let before: Vec<String> = (0..8)
        .flat_map(|c| (0..60).map(move |j| format!("r:{c}:{j}")))
        .filter(|k| cluster.owner(k).port == from.port)
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (stop, ops, addr) = (Arc::clone(&stop), Arc::clone(&ops), h.addr);
        clients.push(tokio::spawn(async move {
            let mut cl = RawClient::connect(addr).await;
            let mut last = vec![None::<u64>; 60];
            let mut n = 0u64;
            let mut problems = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for (j, last) in last.iter_mut().enumerate() {
                    let key = format!("r:{c}:{j}");
                    if let Some(v) = last {
                        let got = cl.cmd(&["GET", &key]).await;
                        let want = format!("${}\r\n{v}\r\n", v.to_string().len());
                        if got != want.as_bytes() {
                            problems.push(format!("GET {key}: {} want {v}", text(&got)));
                        }
                    }
                    n += 1;
                    let got = cl.cmd(&["SET", &key, &n.to_string()]).await;
                    if got != b"+OK\r\n" {
                        problems.push(format!("SET {key}: {}", text(&got)));
                    }
                    *last = Some(n);
                    ops.fetch_add(2, Ordering::Relaxed);
                }
            }
            problems
        }));
    }
    // Some load before the move starts.
    crate::common::poll(|| ops.load(Ordering::Relaxed) > 2000).await;
    let at_start = ops.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| reshard(&cluster, from, to, 2000));
    let during = ops.load(Ordering::Relaxed) - at_start;
    stop.store(true, Ordering::Relaxed);
    let mut problems = Vec::new();
    for c in clients {
        problems.extend(c.await.unwrap());
    }
    assert!(
        problems.is_empty(),
        "{} client-visible problems: {:?}",
        problems.len(),
        &problems[..problems.len().min(10)]
    );
    assert!(during > 0, "clients ran during the resharding");
    let moved = before
        .iter()
        .filter(|k| cluster.owner(k).port == to.port)
        .count();
    assert!(
        moved > 0,
        "some of the clients' keys moved ({} were on the source)",
        before.len()
    );
    // ... and the clients met the move: the proxy followed redirections.
    let mut c = h.client().await;
    let info = text(&c.cmd(&["INFO", "proxy"]).await);
    assert!(info.contains("cluster_slots_unserved:0"), "{info}");
    assert!(
        !info.contains("cluster_redirections:moved=0,ask=0"),
        "{info}"
    );
}

#[tokio::test]
async fn a_dead_master_fails_its_slots_only_and_serves_them_again_when_back() {
    let mut cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    for k in keys(30) {
        c.cmd(&["SET", &k, "v"]).await;
    }
    let victim = cluster.masters()[2].port;
    let (dead, alive): (Vec<String>, Vec<String>) = keys(30)
        .into_iter()
        .partition(|k| cluster.owner(k).port == victim);
    assert!(!dead.is_empty() && !alive.is_empty());
    let i = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    cluster.nodes[i].kill();
    // Every request is answered (the harness's read has a deadline): errors
    // for the dead master's slots, values for the others', on one connection.
    for _ in 0..3 {
        for k in &dead {
            let got = text(&c.cmd(&["GET", k]).await);
            assert!(got.starts_with('-'), "{k}: {got}");
        }
        for k in &alive {
            assert_eq!(c.cmd(&["GET", k]).await, b"$1\r\nv\r\n");
        }
    }
    // Back (empty: no persistence): its slots work again.
    cluster.nodes[i].restart();
    cluster.wait_ok();
    let k = dead[0].clone();
    until_answers(h.addr, &["SET", &k, "again"], b"+OK\r\n").await;
    assert_eq!(cluster.nodes[i].get(&k), Some("again".into()));
    assert_eq!(c.cmd(&["GET", &k]).await, b"$5\r\nagain\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_follows_a_failover_to_a_replica() {
    let mut cluster = RedisCluster::start(3, 1);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    let k = "failover-key";
    assert_eq!(c.cmd(&["SET", k, "before"]).await, b"+OK\r\n");
    let old = cluster.owner(k).port;
    // Wait until the replica has the write, then kill its master.
    let replica = cluster
        .nodes
        .iter()
        .find(|n| {
            n.query_str(&["INFO", "replication"])
                .contains(&format!("master_port:{old}"))
        })
        .expect("the master has a replica");
    let mut conn = redis::Client::open(replica.url())
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("READONLY").query::<()>(&mut conn).unwrap();
    crate::common::poll(|| {
        redis::cmd("GET")
            .arg(k)
            .query::<Option<String>>(&mut conn)
            .unwrap()
            == Some("before".into())
    })
    .await;
    let i = cluster.nodes.iter().position(|n| n.port == old).unwrap();
    cluster.nodes[i].kill();
    // The replica takes over (cluster-node-timeout 1 s); the proxy finds it.
    tokio::task::block_in_place(|| cluster.wait_ok());
    until_answers(h.addr, &["SET", k, "after"], b"+OK\r\n").await;
    let new = cluster.owner(k);
    assert_ne!(new.port, old);
    assert_eq!(new.get(k), Some("after".into()));
    assert_eq!(c.cmd(&["GET", k]).await, b"$5\r\nafter\r\n");
}

#[tokio::test]
async fn transactions_run_on_the_master_of_their_slot() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    // Keys of one slot (a hash tag), and keyless commands inside.
    assert_eq!(c.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["PING"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["SET", "{u}a", "1"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["INCR", "{u}b"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["GET", "{u}a"]).await, b"+QUEUED\r\n");
    assert_eq!(
        c.cmd(&["EXEC"]).await,
        b"*4\r\n+PONG\r\n+OK\r\n:1\r\n$1\r\n1\r\n"
    );
    assert_eq!(cluster.owner("{u}b").get("{u}b"), Some("1".into()));
    // A key of another slot is refused when queued, whichever master owns
    // it, and the transaction is then aborted.
    let other = (0..100)
        .map(|i| format!("x{i}"))
        .find(|k| cluster.owner(k).port == cluster.owner("{u}a").port)
        .expect("a key on the same master, another slot");
    assert_eq!(c.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{u}a", "2"]).await, b"+QUEUED\r\n");
    assert_eq!(
        c.cmd(&["SET", &other, "2"]).await,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
    assert!(text(&c.cmd(&["EXEC"]).await).starts_with("-EXECABORT"));
    assert_eq!(cluster.owner("{u}a").get("{u}a"), Some("1".into()));
    assert_eq!(cluster.owner(&other).get(&other), None);
    // After a transaction, commands go anywhere again.
    for k in keys(10) {
        assert_eq!(c.cmd(&["SET", &k, "v"]).await, b"+OK\r\n");
    }
    // A pipelined transaction, then a read of what it wrote.
    let mut pipe = Vec::new();
    for cmd in [
        &["MULTI"][..],
        &["SET", "{p}k", "new"],
        &["EXEC"],
        &["GET", "{p}k"],
    ] {
        pipe.extend(crate::common::enc(cmd));
    }
    c.send(&pipe).await;
    assert_eq!(c.read().await, b"+OK\r\n");
    assert_eq!(c.read().await, b"+QUEUED\r\n");
    assert_eq!(c.read().await, b"*1\r\n+OK\r\n");
    assert_eq!(c.read().await, b"$3\r\nnew\r\n");
}

#[tokio::test]
async fn watch_binds_a_transaction_to_its_slot() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    let mut rival = h.client().await;
    c.cmd(&["SET", "{w}k", "0"]).await;
    // Untouched: EXEC runs, with reads of other masters' keys between.
    assert_eq!(c.cmd(&["WATCH", "{w}k"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", "{w}k"]).await, b"$1\r\n0\r\n");
    for k in keys(6) {
        assert_eq!(c.cmd(&["GET", &k]).await, b"$-1\r\n");
    }
    assert_eq!(c.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{w}k", "1"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]).await, b"*1\r\n+OK\r\n");
    // Touched by a rival after WATCH: EXEC answers a nil array.
    assert_eq!(c.cmd(&["WATCH", "{w}k"]).await, b"+OK\r\n");
    assert_eq!(rival.cmd(&["SET", "{w}k", "rival"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["SET", "{w}k", "mine"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]).await, b"*-1\r\n");
    assert_eq!(cluster.owner("{w}k").get("{w}k"), Some("rival".into()));
    // WATCH across slots is Redis Cluster's error.
    assert_eq!(
        c.cmd(&["WATCH", "{w}k", "{v}k"]).await,
        b"-CROSSSLOT Keys in request don't hash to the same slot\r\n"
    );
}

#[tokio::test]
async fn blocking_commands_and_pubsub_hold_only_their_client() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut waiter = h.client().await;
    let mut other = h.client().await;
    waiter
        .send(&crate::common::enc(&["BLPOP", "queue", "0"]))
        .await;
    // Everyone else goes on while it blocks, on every master.
    for k in keys(20) {
        assert_eq!(other.cmd(&["SET", &k, "v"]).await, b"+OK\r\n");
    }
    assert_eq!(other.cmd(&["LPUSH", "queue", "job"]).await, b":1\r\n");
    assert_eq!(waiter.read().await, b"*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n");
    // The waiter is an ordinary client again.
    for k in keys(20) {
        assert_eq!(waiter.cmd(&["GET", &k]).await, b"$1\r\nv\r\n");
    }
    // Pub/sub: a subscriber hears what another client publishes.
    let mut sub = h.client().await;
    assert_eq!(
        sub.cmd(&["SUBSCRIBE", "news"]).await,
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    until_answers(h.addr, &["PUBLISH", "news", "hello"], b":1\r\n").await;
    assert_eq!(
        sub.read().await,
        b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    assert_eq!(
        sub.cmd(&["UNSUBSCRIBE"]).await,
        b"*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n"
    );
    for k in keys(20) {
        assert_eq!(sub.cmd(&["GET", &k]).await, b"$1\r\nv\r\n");
    }
}

#[tokio::test]
async fn without_multiplexing_each_client_has_connections_of_its_own() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, false).await;
    let node = cluster.owner("{o}k");
    let before = connections(node);
    let mut clients = Vec::new();
    for i in 0..5 {
        let mut c = h.client().await;
        assert_eq!(c.cmd(&["SET", "{o}k", &i.to_string()]).await, b"+OK\r\n");
        clients.push(c);
    }
    assert!(
        connections(node) >= before + 5,
        "one connection per client to the key's master"
    );
    // Everything else works the same: splits, transactions, blocking.
    let c = &mut clients[0];
    assert_eq!(
        c.cmd(&["MSET", "a", "1", "b", "2", "c", "3"]).await,
        b"+OK\r\n"
    );
    assert_eq!(
        c.cmd(&["MGET", "c", "a", "b"]).await,
        b"*3\r\n$1\r\n3\r\n$1\r\n1\r\n$1\r\n2\r\n"
    );
    assert_eq!(c.cmd(&["MULTI"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["INCR", "{o}n"]).await, b"+QUEUED\r\n");
    assert_eq!(c.cmd(&["EXEC"]).await, b"*1\r\n:1\r\n");
    // A client that leaves closes its connections.
    drop(clients);
    crate::common::poll(|| connections(node) <= before + 1).await;
}

/// Client connections a node has (besides the one asking).
fn connections(node: &RedisServer) -> usize {
    node.query_str(&["CLIENT", "LIST"]).lines().count() - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_and_metrics_follow_the_topology() {
    use crate::operations::{http_get, with_metrics};
    // A seed nobody answers on: no topology, and the proxy says so.
    let nobody = crate::common::free_port();
    let (h, ops) = with_metrics(|c| {
        c.passthrough.url = RedisUrl::parse(&format!("redis://127.0.0.1:{nobody}")).unwrap();
        c.passthrough.cluster = true;
    })
    .await;
    let mut c = h.client().await;
    assert!(
        text(&c.cmd(&["GET", "k"]).await)
            .starts_with("-CLUSTERDOWN the proxy has not learned the cluster's topology yet")
    );
    let (status, body) = http_get(ops, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("16384 cluster hash slots have no master"),
        "{body}"
    );
    drop(h);
    // A real cluster: ready, with its masters counted.
    let cluster = RedisCluster::start(3, 0);
    let seed = cluster.seed();
    let (h, ops) = with_metrics(|c| {
        c.passthrough.url = RedisUrl::parse(&seed).unwrap();
        c.passthrough.cluster = true;
    })
    .await;
    crate::common::poll(|| http_get(ops, "/readyz").0 == 200).await;
    let (_, metrics) = http_get(ops, "/metrics");
    for line in [
        "redlock_proxy_cluster_masters 3",
        "redlock_proxy_cluster_slots_unserved 0",
        "redlock_proxy_cluster_redirections_total{kind=\"moved\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }
    let mut c = h.client().await;
    assert_eq!(c.cmd(&["SET", "k", "v"]).await, b"+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_fails_its_requests_and_holds_nobody_else() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_with(&cluster, |c| {
        c.passthrough.reply_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let mut c = h.client().await;
    for k in keys(30) {
        c.cmd(&["SET", &k, "v"]).await;
    }
    let victim = cluster.owner("key:0").port;
    let alive: Vec<String> = keys(30)
        .into_iter()
        .filter(|k| cluster.owner(k).port != victim)
        .collect();
    let i = cluster.nodes.iter().position(|n| n.port == victim).unwrap();
    cluster.nodes[i].pause();
    let mut stuck = h.client().await;
    stuck.send(&crate::common::enc(&["GET", "key:0"])).await;
    // Others are served while that request waits on the paused master.
    for k in &alive {
        assert_eq!(c.cmd(&["GET", k]).await, b"$1\r\nv\r\n");
    }
    // It gets an error (the harness's read has a deadline), not a hang.
    let got = text(&stuck.read().await);
    assert!(
        got.starts_with("-ERR passthrough backend unavailable: no answer from"),
        "{got}"
    );
    cluster.nodes[i].resume();
    tokio::task::block_in_place(|| cluster.wait_ok());
    until_answers(h.addr, &["GET", "key:0"], b"$1\r\nv\r\n").await;
}

#[tokio::test]
async fn resp3_and_inline_commands_route_like_any_other() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut c = h.client().await;
    // An inline command is routed by its key like a RESP one.
    c.send(b"SET inline:k v\r\n").await;
    assert_eq!(c.read().await, b"+OK\r\n");
    assert_eq!(cluster.owner("inline:k").get("inline:k"), Some("v".into()));
    // RESP3: a split MGET keeps each master's nulls as they are.
    assert!(c.cmd(&["HELLO", "3"]).await.starts_with(b"%"));
    c.cmd(&["SET", "foo", "1"]).await;
    assert_eq!(
        c.cmd(&["MGET", "foo", "bar", "inline:k"]).await,
        b"*3\r\n$1\r\n1\r\n_\r\n$1\r\nv\r\n"
    );
    assert_eq!(c.cmd(&["DBSIZE"]).await, b":2\r\n");
}

/// python-redis-lock 4.0.1's release script, byte for byte (the proxy knows it
/// by its SHA1): its lock part is voted on the masters, its data part (the
/// signal) goes to the cluster master of `lock-signal:NAME`.
const PRL_UNLOCK: &str = "\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n        return 1\n    else\n        redis.call(\"del\", KEYS[2])\n        redis.call(\"lpush\", KEYS[2], 1)\n        redis.call(\"pexpire\", KEYS[2], ARGV[2])\n        redis.call(\"del\", KEYS[1])\n        return 0\n    end\n";

#[tokio::test]
async fn a_split_scripts_data_part_reaches_the_master_of_its_keys() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut holder = h.client().await;
    let mut waiter = h.client().await;
    assert_eq!(
        holder
            .cmd(&["SET", "lock:prl", "tok", "NX", "PX", "30000"])
            .await,
        b"+OK\r\n"
    );
    waiter
        .send(&crate::common::enc(&["BLPOP", "lock-signal:prl", "0"]))
        .await;
    let node = cluster.owner("lock-signal:prl");
    crate::common::poll(|| node.query_str(&["CLIENT", "LIST"]).contains("cmd=blpop")).await;
    let got = holder
        .cmd(&[
            "EVAL",
            PRL_UNLOCK,
            "2",
            "lock:prl",
            "lock-signal:prl",
            "tok",
            "100",
        ])
        .await;
    assert_eq!(got, b":0\r\n", "released");
    assert_eq!(holders(&h, "lock:prl", "tok"), 0);
    // The signal woke the waiter, on the master that serves its key.
    assert_eq!(
        waiter.read().await,
        b"*2\r\n$15\r\nlock-signal:prl\r\n$1\r\n1\r\n"
    );
}

#[tokio::test]
async fn a_tls_cluster_is_reached_over_tls() {
    let pki = crate::common::pki::Pki::new();
    let cluster = RedisCluster::start_tls(&pki, 3);
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let (seed, ca) = (cluster.seed(), pki.ca.to_str().unwrap().to_string());
    assert!(seed.starts_with("rediss://"));
    let h = Harness::with_masters(masters, move |c| {
        c.passthrough.url = RedisUrl::parse(&seed).unwrap();
        c.passthrough.cluster = true;
        c.tls.ca_cert_file = ca;
    })
    .await;
    until_answers(h.addr, &["GET", "probe"], b"$-1\r\n").await;
    let mut c = h.client().await;
    for k in keys(20) {
        assert_eq!(c.cmd(&["SET", &k, "tls"]).await, b"+OK\r\n");
    }
    // Each key is on exactly one master, reached on its TLS port.
    for k in keys(20) {
        let on = cluster
            .nodes
            .iter()
            .filter(|n| n.tls_cli(&["GET", &k]) == "tls")
            .count();
        assert_eq!(on, 1, "{k}");
    }
    let mut mget = vec!["MGET"];
    let ks = keys(20);
    mget.extend(ks.iter().map(String::as_str));
    assert!(c.cmd(&mget).await.starts_with(b"*20\r\n$3\r\ntls\r\n"));
}
