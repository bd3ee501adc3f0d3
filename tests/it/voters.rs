//! RedLock voters that are Redis Clusters: a key's vote in each is cast by
//! the shard of its slot, checked on the nodes directly.

use redlock_proxy::config::RedisUrl;

use crate::common::cluster::RedisCluster;
use crate::common::*;

/// A proxy whose voters are `clusters` (and `masters`, plain ones, first).
async fn over_clusters(clusters: &[RedisCluster], masters: Vec<RedisServer>) -> Harness {
    let seeds: Vec<RedisUrl> = clusters
        .iter()
        .map(|c| RedisUrl::parse(&c.seed()).unwrap())
        .collect();
    Harness::with_masters(masters, move |c| c.redlock.cluster_masters = seeds).await
}

/// The token `key` holds on the shard of its slot, in `cluster`.
fn held_in(cluster: &RedisCluster, key: &str) -> Option<String> {
    cluster.owner(key).get(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_cluster_voters_hold_each_lock_on_the_shard_of_its_slot() {
    let clusters: Vec<RedisCluster> = (0..3).map(|_| RedisCluster::start(3, 0)).collect();
    let h = over_clusters(&clusters, vec![]).await;
    let mut c = h.client().await;
    let info = c.cmd_str(&["INFO", "proxy"]).await;
    assert!(
        info.contains("masters:3\r\n") && info.contains("quorum:2\r\n"),
        "{info}"
    );
    assert!(info.contains("master0:cluster=127.0.0.1:"), "{info}");
    assert!(info.contains("master2_shard2:addr="), "{info}");
    // Keys spread over every shard of every voter, hash tags included.
    let keys: Vec<String> = (0..24)
        .map(|i| match i % 3 {
            0 => format!("lock:order:{i}"),
            1 => format!("lock:{{user{i}}}:cart"),
            _ => format!("lock:{i}"),
        })
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let token = format!("t{i}");
        assert_eq!(
            c.cmd_str(&["SET", key, &token, "NX", "PX", "30000"]).await,
            "+OK\r\n",
            "{key}"
        );
        for cl in &clusters {
            assert_eq!(held_in(cl, key).as_deref(), Some(token.as_str()), "{key}");
        }
        assert_eq!(
            c.cmd_str(&["SET", key, "rival", "NX", "PX", "30000"]).await,
            "$-1\r\n"
        );
        assert_eq!(
            c.cmd_str(&["GET", key]).await,
            format!("${}\r\n{token}\r\n", token.len())
        );
    }
    let shards_used: std::collections::HashSet<u16> =
        keys.iter().map(|k| clusters[0].owner(k).port).collect();
    assert_eq!(shards_used.len(), 3, "the keys reach every shard");
    // Releases by the compare-and-delete script (learned from EVAL).
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            c.cmd_str(&["EVAL", RELEASE, "1", key, &format!("t{i}")])
                .await,
            ":1\r\n"
        );
        for cl in &clusters {
            assert_eq!(held_in(cl, key), None, "{key}");
        }
    }
    assert_eq!(
        c.cmd_str(&["EVALSHA", RELEASE_SHA, "1", &keys[0], "t0"])
            .await,
        ":0\r\n"
    );
    // redis-py's Lock (its release and extend scripts by EVALSHA, learned
    // after NOSCRIPT) and redis-cli, unchanged.
    let py = crate::clients::client_env("py-redis8").join("bin/python");
    let script = "import redis, sys\n\
        r = redis.Redis(port=int(sys.argv[1]))\n\
        l = r.lock('lock:py', timeout=10)\n\
        assert l.acquire(blocking=False)\n\
        assert not r.lock('lock:py', timeout=10).acquire(blocking=False)\n\
        assert l.owned()\n\
        l.extend(5)\n\
        l.release()\n\
        assert not l.locked()\n";
    let out = std::process::Command::new(py)
        .args(["-c", script, &h.addr.port().to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &h.addr.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "lock:cli", "me", "NX", "PX", "30000"]), "OK");
    for cl in &clusters {
        assert_eq!(held_in(cl, "lock:cli").as_deref(), Some("me"));
    }
    assert_eq!(cli(&["GET", "lock:cli"]), "me");
    assert_eq!(cli(&["DEL", "lock:cli"]), "1");
}

/// Fencing tokens grow across grants on cluster voters: the counter lives in
/// the lock key's slot on each (its own hash tag kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_increase_on_cluster_voters() {
    let clusters: Vec<RedisCluster> = (0..3).map(|_| RedisCluster::start(3, 0)).collect();
    let h = over_clusters(&clusters, vec![]).await;
    let mut c = h.client().await;
    for key in ["lock:fenced", "lock:{acct7}:fenced"] {
        let mut last = 0;
        for round in 0..3 {
            let token = format!("f{round}");
            let reply = c.cmd_str(&["LOCK.ACQUIRE", key, &token, "30000"]).await;
            let fence: i64 = reply
                .rsplit(':')
                .next()
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or_else(|| panic!("{key}: {reply}"));
            assert!(fence > last, "{key}: {fence} after {last}");
            last = fence;
            assert_eq!(
                c.cmd_str(&["LOCK.FENCE", key, &token]).await,
                format!(":{fence}\r\n"),
                "the holder gets its fence again"
            );
            assert_eq!(
                c.cmd_str(&["EVAL", RELEASE, "1", key, &token]).await,
                ":1\r\n"
            );
        }
    }
}

/// Plain masters and a cluster voter together: the quorum is over voters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_masters_and_a_cluster_voter_mix() {
    let clusters = vec![RedisCluster::start(3, 0)];
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let mut h = over_clusters(&clusters, masters).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:mix", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(holders(&h, "lock:mix", "t"), 2);
    assert_eq!(held_in(&clusters[0], "lock:mix").as_deref(), Some("t"));
    // The cluster voter and one master are a quorum of three.
    h.masters[0].kill();
    assert_eq!(
        c.cmd_str(&["SET", "lock:mix2", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(held_in(&clusters[0], "lock:mix2").as_deref(), Some("t"));
}

/// One grant a worker held: when its SET left (validity counts from there),
/// when the OK came, and when the worker stopped using the lock.
#[derive(Debug, Clone)]
struct Held {
    key: usize,
    sent: tokio::time::Instant,
    ok: tokio::time::Instant,
    end: tokio::time::Instant,
}

/// Grants of one key that overlap (each used until its end, or its validity).
fn overlaps(grants: &[Held], ttl: std::time::Duration) -> Vec<(Held, Held)> {
    let validity = ttl - ttl.mul_f64(0.01) - std::time::Duration::from_millis(2);
    let mut by_key: std::collections::HashMap<usize, Vec<&Held>> = Default::default();
    for g in grants {
        by_key.entry(g.key).or_default().push(g);
    }
    let mut bad = Vec::new();
    for list in by_key.values_mut() {
        list.sort_by_key(|g| g.ok);
        for w in list.windows(2) {
            if w[0].end.min(w[0].sent + validity) > w[1].ok {
                bad.push((w[0].clone(), w[1].clone()));
            }
        }
    }
    bad
}

/// Workers contending for a few keys through `addr` until `stop`: acquire,
/// hold briefly, release. Returns the grants, and what went wrong: a release
/// of a lock held within its validity that did not answer 1, or a reply of
/// no expected form.
async fn contend(
    addr: std::net::SocketAddr,
    workers: usize,
    keys: Vec<String>,
    ttl_ms: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (Vec<Held>, Vec<String>) {
    use std::sync::atomic::Ordering;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let stop = std::sync::Arc::clone(&stop);
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let (mut grants, mut problems, mut n) = (Vec::new(), Vec::new(), 0u64);
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = (w + n as usize) % keys.len();
                let name = &keys[key];
                let token = format!("w{w}n{n}");
                let sent = tokio::time::Instant::now();
                let r = c
                    .cmd_str(&["SET", name, &token, "NX", "PX", &ttl_ms.to_string()])
                    .await;
                match r.as_str() {
                    "+OK\r\n" => {
                        let ok = tokio::time::Instant::now();
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        let end = tokio::time::Instant::now();
                        let released = c.cmd_str(&["EVAL", RELEASE, "1", name, &token]).await;
                        let in_time = tokio::time::Instant::now()
                            < sent + std::time::Duration::from_millis(ttl_ms * 9 / 10);
                        if released != ":1\r\n" && in_time {
                            problems.push(format!("release of {name}: {released:?}"));
                        }
                        grants.push(Held { key, sent, ok, end });
                    }
                    "$-1\r\n" => {}
                    other => problems.push(format!("SET {name}: {other:?}")),
                }
            }
            (grants, problems)
        }));
    }
    let (mut grants, mut problems) = (Vec::new(), Vec::new());
    for t in tasks {
        let (g, p) = t.await.unwrap();
        grants.extend(g);
        problems.extend(p);
    }
    (grants, problems)
}

/// A voter's cluster moves 2,000 slots between shards (`redis-cli --cluster
/// reshard`, keys a few at a time) while workers contend for locks: never two
/// holders, and every release of a held lock answers 1. Lock keys move with
/// their TTLs (`MIGRATE`), so no shard is quarantined. One plain master of
/// the three voters is down, so no lock is granted without the cluster's vote.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resharding_a_voter_under_lock_load_keeps_every_lock_whole() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let clusters = vec![RedisCluster::start(3, 0)];
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let mut h = over_clusters(&clusters, masters).await;
    h.masters[1].kill();
    let ttl_ms = 5000;
    let c0 = &clusters[0];
    let (from, to) = (c0.masters()[0].port, c0.masters()[1].port);
    let from = c0.nodes.iter().find(|n| n.port == from).unwrap();
    let to = c0.nodes.iter().find(|n| n.port == to).unwrap();
    // The keys contended for are in the slots that move (the reshard takes
    // the source's lowest slots first).
    let moving: std::collections::HashSet<u16> = c0.slots_of(from).into_iter().take(2000).collect();
    let keys: Vec<String> = (0..2000)
        .map(|i| format!("lock:contend:{i}"))
        .filter(|k| moving.contains(&c0.slot(k)))
        .take(6)
        .collect();
    assert_eq!(keys.len(), 6);
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(contend(h.addr, 8, keys.clone(), ttl_ms, Arc::clone(&stop)));
    let engine = h.shared.engine();
    let voter = &engine.voters()[2];
    let yes_before = voter.stats().votes_yes.load(Ordering::Relaxed);
    tokio::task::block_in_place(|| c0.reshard(from, to, 2000));
    let yes_during = voter.stats().votes_yes.load(Ordering::Relaxed) - yes_before;
    stop.store(true, Ordering::Relaxed);
    let (grants, problems) = load.await.unwrap();
    let bad = overlaps(&grants, std::time::Duration::from_millis(ttl_ms));
    assert!(
        bad.is_empty(),
        "two holders: {:?}",
        &bad[..bad.len().min(3)]
    );
    assert!(problems.is_empty(), "{problems:?}");
    // Every key moved, and the voter finds each where it lives now: with a
    // master down, no grant without its vote.
    let mut c = h.client().await;
    for k in &keys {
        assert_eq!(c0.owner(k).port, to.port, "{k} moved");
        assert_eq!(
            c.cmd_str(&["SET", k, "after", "NX", "PX", "30000"]).await,
            "+OK\r\n",
            "{k}"
        );
        assert_eq!(c0.owner(k).get(k).as_deref(), Some("after"));
    }
    assert!(
        yes_during > 20,
        "the cluster voted yes {yes_during} times during the move"
    );
    let info = h.client().await.cmd_str(&["INFO", "proxy"]).await;
    let line = info.lines().find(|l| l.starts_with("master2:")).unwrap();
    assert!(line.contains("quarantined_shards=0"), "{line}");
    assert!(
        !line.contains("moved:0/ask:0"),
        "the voter followed the move: {line}"
    );
}

/// Two plain masters and a cluster voter with replicas, `max_ttl` set.
async fn with_a_replicated_cluster_voter() -> (Harness, RedisCluster) {
    let cluster = RedisCluster::start(3, 1);
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let seed = RedisUrl::parse(&cluster.seed()).unwrap();
    let h = Harness::with_masters(masters, move |c| {
        c.redlock.cluster_masters = vec![seed];
        c.redlock.max_ttl = std::time::Duration::from_secs(30);
    })
    .await;
    (h, cluster)
}

/// A shard of a cluster voter fails over to its replica: the promoted replica
/// may have lost grants, so its slots are quarantined in that voter (they
/// vote no there) while the voter's other slots vote as before; a lock held
/// across the failover keeps its holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_over_shard_is_quarantined_in_its_voter() {
    let (mut h, mut cluster) = with_a_replicated_cluster_voter().await;
    let mut c = h.client().await;
    let key = "lock:across";
    assert_eq!(
        c.cmd_str(&["SET", key, "first", "NX", "PX", "30000"]).await,
        "+OK\r\n"
    );
    let old = cluster.owner(key).port;
    // Keys on the failing shard, and on another.
    let same: Vec<String> = (0..200)
        .map(|i| format!("lock:s{i}"))
        .filter(|k| cluster.owner(k).port == old)
        .take(3)
        .collect();
    let other = (0..200)
        .map(|i| format!("lock:o{i}"))
        .find(|k| cluster.owner(k).port != old)
        .unwrap();
    let replica = cluster
        .nodes
        .iter()
        .find(|n| {
            n.query_str(&["INFO", "replication"])
                .contains(&format!("master_port:{old}"))
        })
        .expect("the shard has a replica");
    poll(|| {
        replica
            .query_str(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let i = cluster.nodes.iter().position(|n| n.port == old).unwrap();
    cluster.nodes[i].kill();
    tokio::task::block_in_place(|| cluster.wait_ok());
    // The voter finds the promoted replica, and distrusts it.
    let mut info = String::new();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !info.contains("quarantined_shards=1") {
        assert!(tokio::time::Instant::now() < deadline, "{info}");
        // Requests for its slots make the voter look again.
        c.cmd_str(&["GET", &same[0]]).await;
        info = c.cmd_str(&["INFO", "proxy"]).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Never two holders: the lock taken before is still held.
    assert_eq!(
        c.cmd_str(&["SET", key, "second", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    // With one plain master gone, only the voter's trusted slots can make a
    // quorum: the failed-over shard's keys are refused, the others granted.
    h.masters[1].kill();
    for k in &same {
        assert_eq!(
            c.cmd_str(&["SET", k, "t", "NX", "PX", "30000"]).await,
            "$-1\r\n",
            "{k}: its shard is quarantined"
        );
    }
    assert_eq!(
        c.cmd_str(&["SET", &other, "t", "NX", "PX", "30000"]).await,
        "+OK\r\n",
        "{other}: another shard votes as usual"
    );
}

/// A shard that is down makes only the keys of its slots unknown in its voter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shard_makes_only_its_keys_unknown() {
    let mut cluster = RedisCluster::start(3, 0);
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let seed = RedisUrl::parse(&cluster.seed()).unwrap();
    let mut h = Harness::with_masters(masters, move |c| {
        c.redlock.cluster_masters = vec![seed];
    })
    .await;
    let mut c = h.client().await;
    let dead = cluster.owner("lock:d0").port;
    let (on_dead, elsewhere): (Vec<String>, Vec<String>) = (0..60)
        .map(|i| format!("lock:d{i}"))
        .partition(|k| cluster.owner(k).port == dead);
    let i = cluster.nodes.iter().position(|n| n.port == dead).unwrap();
    cluster.nodes[i].kill();
    h.masters[0].kill();
    for k in &on_dead[..3] {
        assert_eq!(
            c.cmd_str(&["SET", k, "t", "NX", "PX", "30000"]).await,
            "$-1\r\n",
            "{k}: one vote of three"
        );
    }
    for k in &elsewhere[..3] {
        assert_eq!(
            c.cmd_str(&["SET", k, "t", "NX", "PX", "30000"]).await,
            "+OK\r\n",
            "{k}"
        );
    }
}

/// A lock key in a slot that is migrating inside a voter: the shard that
/// owns the slot answers `ASK` for a key it no longer has, and the voter asks
/// the migration's target (after `ASKING`) — for the grant and the release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migrating_slot_in_a_voter_is_followed_with_asking() {
    let cluster = RedisCluster::start(3, 0);
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let mut h = over_clusters(std::slice::from_ref(&cluster), masters).await;
    // No grant without the cluster's vote.
    h.masters[1].kill();
    let key = "lock:asked";
    let source = cluster.owner(key);
    let target = cluster
        .masters()
        .into_iter()
        .find(|m| m.port != source.port)
        .unwrap();
    let slot = cluster.slot(key).to_string();
    let (src_id, dst_id) = (RedisCluster::id(source), RedisCluster::id(target));
    target.query(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]);
    source.query(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]);
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", key, "t", "NX", "PX", "30000"]).await,
        "+OK\r\n"
    );
    // Granted on the target, which only an ASKING client can write to.
    assert_eq!(
        target.query(&["CLUSTER", "GETKEYSINSLOT", &slot, "10"]),
        redis::Value::Array(vec![redis::Value::BulkString(key.as_bytes().to_vec())])
    );
    assert_eq!(c.cmd_str(&["EVAL", RELEASE, "1", key, "t"]).await, ":1\r\n");
    assert_eq!(
        target.query(&["CLUSTER", "COUNTKEYSINSLOT", &slot]),
        redis::Value::Int(0)
    );
    let info = c.cmd_str(&["INFO", "proxy"]).await;
    let line = info.lines().find(|l| l.starts_with("master2:")).unwrap();
    assert!(!line.contains("/ask:0/"), "{line}");
}

/// A shard restarted without persistence forgot its locks: the restart guard
/// quarantines it in its voter (the other shards vote), and writes its
/// quarantine marker on the shard itself (a key in one of its slots).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_shard_is_quarantined_and_marked_on_itself() {
    let mut cluster = RedisCluster::start(3, 0);
    let masters: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let seed = RedisUrl::parse(&cluster.seed()).unwrap();
    let h = Harness::with_masters(masters, move |c| {
        c.redlock.cluster_masters = vec![seed];
        c.redlock.max_ttl = std::time::Duration::from_secs(30);
    })
    .await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:r", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    let port = cluster.owner("lock:r").port;
    let i = cluster.nodes.iter().position(|n| n.port == port).unwrap();
    cluster.nodes[i].restart();
    tokio::task::block_in_place(|| cluster.wait_ok());
    until_info(h.addr, |i| i.contains("quarantined_shards=1")).await;
    let node = &cluster.nodes[i];
    let marker = || format!("{:?}", node.query(&["KEYS", "redlock-proxy:quarantine:*"]));

    poll(|| marker().contains("redlock-proxy:quarantine:{m")).await;
}

/// Read/write locks and semaphores on cluster voters: each key's holders live
/// on the shard of its slot in every voter, and a refusal is taken back there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_locks_and_semaphores_on_cluster_voters() {
    let clusters: Vec<RedisCluster> = (0..3).map(|_| RedisCluster::start(3, 0)).collect();
    let h = over_clusters(&clusters, vec![]).await;
    let mut c = h.client().await;
    let zcard = |key: &str| -> Vec<redis::Value> {
        (clusters.iter())
            .map(|cl| cl.owner(key).query(&["ZCARD", key]))
            .collect()
    };
    let all = |n: i64| vec![redis::Value::Int(n); 3];
    for i in 0..6 {
        let key = format!("lock:rw:{i}");
        let k = key.as_str();
        assert_eq!(
            c.cmd_str(&["RWLOCK.READ", k, "r1", "30000"]).await,
            ":1\r\n"
        );
        assert_eq!(
            c.cmd_str(&["RWLOCK.READ", k, "r2", "30000"]).await,
            ":1\r\n"
        );
        assert_eq!(
            c.cmd_str(&["RWLOCK.WRITE", k, "w", "30000"]).await,
            ":0\r\n"
        );
        poll(|| zcard(k) == all(2)).await;
        for r in ["r1", "r2"] {
            assert_eq!(c.cmd_str(&["RWLOCK.RELEASE", k, r]).await, ":1\r\n");
        }
        assert_eq!(
            c.cmd_str(&["RWLOCK.WRITE", k, "w", "30000"]).await,
            ":1\r\n"
        );
        poll(|| zcard(k) == all(2)).await; // the writer and its marker
        assert_eq!(c.cmd_str(&["RWLOCK.RELEASE", k, "w"]).await, ":1\r\n");
        poll(|| zcard(k) == all(0)).await;

        let key = format!("lock:sem:{i}");
        let k = key.as_str();
        for (s, want) in [("s1", ":1\r\n"), ("s2", ":1\r\n"), ("s3", ":0\r\n")] {
            let got = c.cmd_str(&["SEMAPHORE.ACQUIRE", k, s, "2", "30000"]).await;
            assert_eq!(got, want, "{k} {s}");
        }
        // s3 was taken on no voter, or taken back: two seats everywhere.
        poll(|| zcard(k) == all(2)).await;
        assert_eq!(c.cmd_str(&["SEMAPHORE.RELEASE", k, "s1"]).await, ":1\r\n");
        assert_eq!(c.cmd_str(&["SEMAPHORE.RELEASE", k, "s2"]).await, ":1\r\n");
        poll(|| zcard(k) == all(0)).await;
    }
    // A writer that two voters' shards already hold refuses a reader, which
    // the third voter's shard had admitted and gives back.
    let k = "lock:rw:held";
    for cl in &clusters[..2] {
        let far = "99999999999999";
        cl.owner(k)
            .query(&["ZADD", k, far, "other", far, "__write__"]);
    }
    assert_eq!(c.cmd_str(&["RWLOCK.READ", k, "r", "30000"]).await, ":0\r\n");
    poll(|| clusters[2].owner(k).query(&["ZCARD", k]) == redis::Value::Int(0)).await;
}
