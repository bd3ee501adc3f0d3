//! Stateful commands through a cluster backend: transactions, `WATCH`,
//! blocking commands, pub/sub, and a split lock script's data part.

use super::*;

/// python-redis-lock 4.0.1's release script, byte for byte (the proxy knows it
/// by its SHA1): its lock part is voted on the masters, its data part (the
/// signal) goes to the cluster master of `lock-signal:NAME`.
const PRL_UNLOCK: &str = "\n    if redis.call(\"get\", KEYS[1]) ~= ARGV[1] then\n        return 1\n    else\n        redis.call(\"del\", KEYS[2])\n        redis.call(\"lpush\", KEYS[2], 1)\n        redis.call(\"pexpire\", KEYS[2], ARGV[2])\n        redis.call(\"del\", KEYS[1])\n        return 0\n    end\n";

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

/// A script that runs on one master past its `busy-reply-threshold` holds
/// nobody else: a read of another key on that master gets `-BUSY` at once
/// (the script went on a lane of its own), and `SCRIPT KILL` reaches every
/// master on a lane that carries nothing else: the one running the script
/// answers OK, and so does the proxy.
#[tokio::test]
async fn a_busy_script_on_one_master_is_killed_through_the_proxy() {
    let cluster = RedisCluster::start(3, 0);
    for m in cluster.masters() {
        m.query(&["CONFIG", "SET", "lua-time-limit", "10"]);
    }
    let h = proxy_for(&cluster, true).await;
    let busy = cluster.owner("spin");
    let other = keys(200)
        .into_iter()
        .find(|k| cluster.owner(k).port == busy.port && k != "spin")
        .expect("another key on the same master");
    let mut runner = h.client().await;
    runner
        .send(&crate::common::enc(&[
            "EVAL",
            "while true do end",
            "1",
            "spin",
        ]))
        .await;
    crate::common::poll(
        || matches!(busy.try_query(&["PING"]), Err(e) if e.to_string().contains("BUSY")),
    )
    .await;
    let mut reader = h.client().await;
    let got = text(&reader.cmd(&["GET", &other]).await);
    assert!(got.starts_with("-BUSY"), "{got}");
    let mut admin = h.client().await;
    assert_eq!(admin.cmd(&["SCRIPT", "KILL"]).await, b"+OK\r\n");
    let ended = text(&runner.read().await);
    assert!(ended.starts_with("-ERR Script killed by user"), "{ended}");
    // With nothing running, a kill is NOTBUSY everywhere, as on one Redis.
    let none = text(&admin.cmd(&["SCRIPT", "KILL"]).await);
    assert!(none.starts_with("-NOTBUSY"), "{none}");
    assert_eq!(reader.cmd(&["SET", &other, "1"]).await, b"+OK\r\n");
}
