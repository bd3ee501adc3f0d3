//! A Redis Cluster as the passthrough backend, against real clusters the
//! harness starts: commands routed by slot (checked on the nodes), multi-key
//! commands split and merged, keyless commands by the table, both connection
//! modes, RESP3, TLS. `stateful.rs`: transactions, WATCH, blocking, pub/sub;
//! `failures.rs`: resharding under load, dead, failed-over and paused masters.

use std::collections::HashSet;

use crate::common::cluster::RedisCluster;
use crate::common::{Harness, RawClient, RedisServer, holders, text};
use redlock_proxy::config::RedisUrl;

mod failures;
mod stateful;

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
    // SCRIPT EXISTS asks every master, and answers for the lock scripts the
    // proxy knows (they never reach the nodes).
    c.cmd(&["SCRIPT", "LOAD", crate::common::RELEASE]).await;
    let release = crate::common::RELEASE_SHA;
    assert_eq!(
        c.cmd(&[
            "SCRIPT",
            "EXISTS",
            release,
            &sha,
            "ffffffffffffffffffffffffffffffffffffffff"
        ])
        .await,
        b"*3\r\n:1\r\n:1\r\n:0\r\n"
    );
    // The lock script on data keys runs on each key's master, which never
    // loaded it (it goes out as EVAL with the text the proxy learned).
    for k in ["key:1", "key:2", "key:3"] {
        assert_eq!(c.cmd(&["SET", k, "t"]).await, b"+OK\r\n");
        assert_eq!(
            c.cmd(&["EVALSHA", release, "1", k, "t"]).await,
            b":1\r\n",
            "{k}"
        );
    }
    assert_eq!(c.cmd(&["FLUSHALL"]).await, b"+OK\r\n");
    for m in cluster.masters() {
        assert_eq!(m.query(&["DBSIZE"]), redis::Value::Int(0));
    }
    assert_eq!(c.cmd(&["DBSIZE"]).await, b":0\r\n");
}

/// `SCAN`'s reply: the cursor and the keys.
fn parse_scan(reply: &[u8]) -> (String, Vec<String>) {
    let value = redis::parse_redis_value(reply).expect("a SCAN reply");
    let text = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).unwrap(),
        other => panic!("not a bulk string: {other:?}"),
    };
    let redis::Value::Array(items) = value else {
        panic!("not an array: {value:?}")
    };
    let redis::Value::Array(keys) = &items[1] else {
        panic!("no keys: {items:?}")
    };
    (text(&items[0]), keys.iter().map(text).collect())
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

/// What clients learn about each other is the proxy's with a cluster backend
/// too: `CLIENT LIST` and `MONITOR` (commands routed to any master show);
/// what names a backend connection is refused, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_and_monitor_work_with_a_cluster_backend() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let mut mon = h.client().await;
    assert_eq!(mon.cmd(&["MONITOR"]).await, b"+OK\r\n");
    let mut c = h.client().await;
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "routed"]).await, b"+OK\r\n");
    for k in keys(3) {
        assert_eq!(c.cmd(&["SET", &k, "v"]).await, b"+OK\r\n");
    }
    let list = text(&c.cmd(&["CLIENT", "LIST"]).await);
    assert!(
        list.contains(" name=routed ") && list.contains(" flags=O "),
        "{list}"
    );
    for k in keys(3) {
        let want = format!("\"SET\" \"{k}\" \"v\"");
        loop {
            let line = text(&mon.read().await);
            if line.contains(&want) {
                break;
            }
        }
    }
    let refused = text(&c.cmd(&["CLIENT", "UNBLOCK", "1"]).await);
    assert!(
        refused.starts_with("-ERR 'unblock' is not supported through a cluster backend"),
        "{refused}"
    );
}
