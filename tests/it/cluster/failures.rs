//! A cluster backend when things change or fail: resharding under load, a
//! dead, failed-over or paused master, and readiness while the topology is
//! unknown.

use super::*;

/// Runs `redis-cli --cluster reshard`, moving `slots` slots from `from` to `to`.
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
    tokio::task::block_in_place(|| cluster.reshard(from, to, 2000));
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

#[tokio::test]
async fn a_migrating_slot_is_followed_with_asking() {
    let cluster = RedisCluster::start(3, 0);
    let h = proxy_for(&cluster, true).await;
    let key = "ask:key";
    let source = cluster.owner(key);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.port != source.port)
        .unwrap();
    let slot = match source.query(&["CLUSTER", "KEYSLOT", key]) {
        redis::Value::Int(s) => s.to_string(),
        other => panic!("KEYSLOT: {other:?}"),
    };
    // The slot migrates from source to target; the key is not on the source
    // yet, so the source answers -ASK for it.
    let (src_id, dst_id) = (RedisCluster::id(source), RedisCluster::id(target));
    target.query(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]);
    source.query(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]);
    let mut c = h.client().await;
    assert_eq!(c.cmd(&["SET", key, "moved-in"]).await, b"+OK\r\n");
    assert_eq!(c.cmd(&["GET", key]).await, b"$8\r\nmoved-in\r\n");
    // It was written on the target, which only an ASKING client may do.
    assert_eq!(
        target.query(&["CLUSTER", "GETKEYSINSLOT", &slot, "10"]),
        redis::Value::Array(vec![redis::Value::BulkString(key.as_bytes().to_vec())])
    );
    let info = text(&c.cmd(&["INFO", "proxy"]).await);
    assert!(!info.contains(",ask=0,"), "{info}");
}
