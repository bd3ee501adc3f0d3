//! Passthrough: everything that is not a lock operation behaves as on a direct
//! connection to the backend.

use std::time::Duration;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strings_hashes_lists() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "s", "hello"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "s"]).await, "$5\r\nhello\r\n");
    assert_eq!(c.cmd_str(&["INCRBY", "n", "5"]).await, ":5\r\n");
    assert_eq!(
        c.cmd_str(&["HSET", "h", "f1", "a", "f2", "b"]).await,
        ":2\r\n"
    );
    assert_eq!(c.cmd_str(&["HGET", "h", "f2"]).await, "$1\r\nb\r\n");
    assert_eq!(c.cmd_str(&["RPUSH", "l", "x", "y", "z"]).await, ":3\r\n");
    assert_eq!(
        c.cmd_str(&["LRANGE", "l", "0", "-1"]).await,
        "*3\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n"
    );
    assert_eq!(c.cmd_str(&["GET", "missing"]).await, "$-1\r\n");
    assert!(
        c.cmd_str(&["NOSUCHCOMMAND", "x"])
            .await
            .starts_with("-ERR unknown command")
    );
    // The data is on the backend, and not on the masters.
    assert_eq!(h.backend.get("s").as_deref(), Some("hello"));
    assert!(h.masters.iter().all(|m| m.get("s").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_of_10000_mixed_commands_answered_in_order() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let mut req = Vec::new();
    let mut expected = Vec::new();
    for i in 0..10_000 {
        match i % 4 {
            0 => {
                req.extend(enc(&["SET", &format!("k{i}"), &format!("v{i}")]));
                expected.push("+OK\r\n".to_string());
            }
            1 => {
                let k = format!("k{}", i - 1);
                req.extend(enc(&["GET", &k]));
                let v = format!("v{}", i - 1);
                expected.push(format!("${}\r\n{v}\r\n", v.len()));
            }
            2 if i % 40 == 2 => {
                // A lock acquisition in the middle of the data commands.
                req.extend(enc(&[
                    "SET",
                    &format!("lock:p{i}"),
                    "tok",
                    "NX",
                    "PX",
                    "30000",
                ]));
                expected.push("+OK\r\n".to_string());
            }
            2 => {
                req.extend(enc(&["INCR", "counter"]));
                expected.push(String::new()); // checked below
            }
            _ => {
                req.extend(b"PING\r\n");
                expected.push("+PONG\r\n".to_string());
            }
        }
    }
    c.send(&req).await;
    let mut counter = 0;
    for (i, exp) in expected.iter().enumerate() {
        let got = text(&c.read().await);
        if exp.is_empty() {
            counter += 1;
            assert_eq!(got, format!(":{counter}\r\n"), "reply {i}");
        } else {
            assert_eq!(&got, exp, "reply {i}");
        }
    }
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.get("lock:p42").as_deref() == Some("tok"))
    })
    .await;
    assert_eq!(h.backend.get("lock:p42"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_exec_and_watch() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "a", "1"]).await, "+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["INCR", "a"]).await, "+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["PING"]).await, "+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]).await, "*3\r\n+OK\r\n:2\r\n+PONG\r\n");
    // WATCH: a change by another client aborts EXEC with a nil array.
    let mut other = h.client().await;
    assert_eq!(c.cmd_str(&["WATCH", "a"]).await, "+OK\r\n");
    assert_eq!(other.cmd_str(&["SET", "a", "changed"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "a", "mine"]).await, "+QUEUED\r\n");
    assert_eq!(c.cmd_str(&["EXEC"]).await, "*-1\r\n");
    assert_eq!(h.backend.get("a").as_deref(), Some("changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_command_inside_multi_aborts_the_transaction() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "data", "1"]).await, "+QUEUED\r\n");
    let refused = c
        .cmd_str(&["SET", "lock:m", "tok", "NX", "PX", "10000"])
        .await;
    assert!(
        refused.starts_with("-ERR") && refused.contains("MULTI"),
        "{refused}"
    );
    assert_eq!(
        c.cmd_str(&["EXEC"]).await,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    // Nothing of it was applied, anywhere.
    assert_eq!(h.backend.get("data"), None);
    assert!(h.masters.iter().all(|m| m.get("lock:m").is_none()));
    // The connection is usable again, outside any transaction.
    assert_eq!(c.cmd_str(&["SET", "data", "2"]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn select_is_per_connection() {
    let h = Harness::start(3).await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    assert_eq!(a.cmd_str(&["SELECT", "1"]).await, "+OK\r\n");
    assert_eq!(a.cmd_str(&["SET", "k", "in-db1"]).await, "+OK\r\n");
    assert_eq!(b.cmd_str(&["SET", "k", "in-db0"]).await, "+OK\r\n");
    assert_eq!(a.cmd_str(&["GET", "k"]).await, "$6\r\nin-db1\r\n");
    assert_eq!(b.cmd_str(&["GET", "k"]).await, "$6\r\nin-db0\r\n");
    assert!(a.cmd_str(&["SELECT", "99"]).await.starts_with("-ERR"));
    assert_eq!(a.cmd_str(&["GET", "k"]).await, "$6\r\nin-db1\r\n");
    assert_eq!(h.backend.get("k").as_deref(), Some("in-db0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blpop_blocks_until_another_client_pushes() {
    let h = Harness::start(3).await;
    let mut waiter = h.client().await;
    waiter.send(&enc(&["BLPOP", "queue", "0"])).await;
    // Wait until the backend has the client blocked, then push from another client.
    poll(|| {
        h.backend
            .query_str(&["INFO", "clients"])
            .contains("blocked_clients:1")
    })
    .await;
    assert!(
        waiter.try_read(Duration::from_millis(100)).await.is_none(),
        "BLPOP returned early"
    );
    let mut pusher = h.client().await;
    assert_eq!(pusher.cmd_str(&["RPUSH", "queue", "job"]).await, ":1\r\n");
    assert_eq!(
        text(&waiter.read().await),
        "*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n"
    );
    // The same connection goes on working.
    assert_eq!(waiter.cmd_str(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_receives_publish() {
    let h = Harness::start(3).await;
    let mut sub = h.client().await;
    assert_eq!(
        sub.cmd_str(&["SUBSCRIBE", "news"]).await,
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
    );
    let mut pubc = h.client().await;
    assert_eq!(pubc.cmd_str(&["PUBLISH", "news", "hello"]).await, ":1\r\n");
    assert_eq!(
        text(&sub.read().await),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"
    );
    // PING in pub/sub mode has the pub/sub shape (answered by the backend).
    assert_eq!(
        sub.cmd_str(&["PING"]).await,
        "*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    );
    // A lock command is refused as Redis refuses commands in this context, in order.
    let r = sub
        .cmd_str(&["SET", "lock:s", "t", "NX", "PX", "1000"])
        .await;
    assert!(r.starts_with("-ERR Can't execute 'set'"), "{r}");
    assert_eq!(pubc.cmd_str(&["PUBLISH", "news", "again"]).await, ":1\r\n");
    assert_eq!(
        text(&sub.read().await),
        "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nagain\r\n"
    );
    // Unsubscribed, the connection is a normal one again, locks included.
    assert_eq!(
        sub.cmd_str(&["UNSUBSCRIBE"]).await,
        "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:0\r\n"
    );
    assert_eq!(
        sub.cmd_str(&["SET", "lock:s", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(sub.cmd_str(&["PING"]).await, "+PONG\r\n");
    // PSUBSCRIBE and SSUBSCRIBE too.
    assert_eq!(
        sub.cmd_str(&["PSUBSCRIBE", "n*"]).await,
        "*3\r\n$10\r\npsubscribe\r\n$2\r\nn*\r\n:1\r\n"
    );
    assert_eq!(pubc.cmd_str(&["PUBLISH", "nx", "p"]).await, ":1\r\n");
    assert_eq!(
        text(&sub.read().await),
        "*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$2\r\nnx\r\n$1\r\np\r\n"
    );
    let mut ssub = h.client().await;
    assert_eq!(
        ssub.cmd_str(&["SSUBSCRIBE", "sh"]).await,
        "*3\r\n$10\r\nssubscribe\r\n$2\r\nsh\r\n:1\r\n"
    );
    assert_eq!(pubc.cmd_str(&["SPUBLISH", "sh", "s"]).await, ":1\r\n");
    assert_eq!(
        text(&ssub.read().await),
        "*3\r\n$8\r\nsmessage\r\n$2\r\nsh\r\n$1\r\ns\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_3_gives_resp3_replies() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let hello = c.cmd_str(&["HELLO", "3"]).await;
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(c.cmd_str(&["HSET", "h", "f", "v"]).await, ":1\r\n");
    // A map and a null from the backend, forwarded as RESP3.
    assert_eq!(
        c.cmd_str(&["HGETALL", "h"]).await,
        "%1\r\n$1\r\nf\r\n$1\r\nv\r\n"
    );
    assert_eq!(c.cmd_str(&["GET", "missing"]).await, "_\r\n");
    // Nulls the proxy makes itself follow the protocol too.
    assert_eq!(c.cmd_str(&["GET", "lock:none"]).await, "_\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "lock:r3", "a", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["SET", "lock:r3", "b", "NX", "PX", "10000"])
            .await,
        "_\r\n"
    );
    // RESP3 pub/sub: confirmations and messages are pushes.
    let mut sub = h.client().await;
    sub.cmd(&["HELLO", "3"]).await;
    assert_eq!(
        sub.cmd_str(&["SUBSCRIBE", "c3"]).await,
        ">3\r\n$9\r\nsubscribe\r\n$2\r\nc3\r\n:1\r\n"
    );
    assert_eq!(c.cmd_str(&["PUBLISH", "c3", "m"]).await, ":1\r\n");
    assert_eq!(
        text(&sub.read().await),
        ">3\r\n$7\r\nmessage\r\n$2\r\nc3\r\n$1\r\nm\r\n"
    );
    // In RESP3 other commands work while subscribed, locks included.
    assert_eq!(
        sub.cmd_str(&["SET", "lock:r3b", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(sub.cmd_str(&["GET", "missing"]).await, "_\r\n");
    // Back to RESP2.
    let hello2 = c.cmd_str(&["HELLO", "2"]).await;
    assert!(hello2.starts_with("*14\r\n"), "{hello2}");
    assert_eq!(c.cmd_str(&["GET", "missing"]).await, "$-1\r\n");
    assert!(c.cmd_str(&["HELLO", "4"]).await.starts_with("-NOPROTO"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_commands() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    c.send(b"PING\r\n").await;
    assert_eq!(text(&c.read().await), "+PONG\r\n");
    c.send(b"SET greeting \"hello world\"\r\nGET greeting\n")
        .await;
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert_eq!(text(&c.read().await), "$11\r\nhello world\r\n");
    c.send(b"set lock:inline tok nx px 10000\r\n").await;
    assert_eq!(text(&c.read().await), "+OK\r\n");
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.get("lock:inline").as_deref() == Some("tok"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_only_locks_opens_no_backend_connection() {
    // One connection per client, where the backend sees each client's name.
    let h = Harness::start_with(3, |c| c.passthrough.multiplex = false).await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETNAME", "lockonly"]).await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["CLIENT", "SETINFO", "LIB-NAME", "mylib"]).await,
        "+OK\r\n"
    );
    assert!(c.cmd_str(&["HELLO", "3"]).await.starts_with("%7"));
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "lock:lo", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["GET", "lock:lo"]).await, "$1\r\nt\r\n");
    assert_eq!(
        c.cmd_str(&["CLIENT", "GETNAME"]).await,
        "$8\r\nlockonly\r\n"
    );
    let list = h.backend.query_str(&["CLIENT", "LIST"]);
    assert!(!list.contains("lockonly"), "backend saw the client: {list}");
    // Its first data command opens the connection, with the session's state replayed.
    assert_eq!(c.cmd_str(&["SET", "d", "1"]).await, "+OK\r\n");
    let list = h.backend.query_str(&["CLIENT", "LIST"]);
    assert!(list.contains("name=lockonly"), "{list}");
    assert!(list.contains("resp=3"), "{list}");
    assert_eq!(c.cmd_str(&["GET", "missing"]).await, "_\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_then_back() {
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "a", "1"]).await, "+OK\r\n");
    h.backend.kill();
    let err = c.cmd_str(&["GET", "a"]).await;
    assert!(
        err.starts_with("-ERR passthrough backend unavailable"),
        "{err}"
    );
    assert!(!err[1..err.len() - 2].contains(['\r', '\n']));
    // Locks do not need the backend; the proxy and other clients carry on.
    assert_eq!(
        c.cmd_str(&["SET", "lock:bd", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    let mut other = h.client().await;
    assert!(
        other
            .cmd_str(&["GET", "a"])
            .await
            .starts_with("-ERR passthrough backend unavailable")
    );
    h.backend.restart();
    // A later command reconnects.
    assert_eq!(c.cmd_str(&["SET", "a", "2"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["GET", "a"]).await, "$1\r\n2\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_lost_mid_transaction_aborts_it() {
    let mut h = Harness::start(3).await;
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["MULTI"]).await, "+OK\r\n");
    assert_eq!(c.cmd_str(&["SET", "t", "1"]).await, "+QUEUED\r\n");
    h.backend.restart();
    assert!(c.cmd_str(&["SET", "t", "2"]).await.starts_with("-ERR"));
    assert_eq!(
        c.cmd_str(&["EXEC"]).await,
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(h.backend.get("t"), None);
    assert_eq!(c.cmd_str(&["SET", "t", "3"]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_and_client_commands() {
    let h = Harness::start(3).await;
    let mut mon = h.client().await;
    assert_eq!(mon.cmd_str(&["MONITOR"]).await, "+OK\r\n");
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["SET", "watched", "1"]).await, "+OK\r\n");
    // Other connections (the proxy's own version check) may show up first.
    loop {
        let line = text(&mon.read().await);
        assert!(line.starts_with('+'), "{line}");
        if line.contains("\"SET\" \"watched\" \"1\"") {
            break;
        }
    }
    // CLIENT commands reach the backend.
    let id = c.cmd_str(&["CLIENT", "ID"]).await;
    assert!(id.starts_with(':'), "{id}");
    let info = c.cmd_str(&["CLIENT", "INFO"]).await;
    assert!(info.contains("cmd=client"), "{info}");
    // CLIENT REPLY OFF/SKIP/ON, handled by the proxy for both kinds of command.
    c.send(&enc(&["CLIENT", "REPLY", "OFF"])).await;
    c.send(&enc(&["SET", "silent", "1"])).await;
    c.send(&enc(&["SET", "lock:silent", "t", "NX", "PX", "10000"]))
        .await;
    c.send(&enc(&["CLIENT", "REPLY", "SKIP"])).await;
    c.send(&enc(&["CLIENT", "REPLY", "ON"])).await;
    assert_eq!(text(&c.read().await), "+OK\r\n");
    c.send(&enc(&["CLIENT", "REPLY", "SKIP"])).await;
    c.send(&enc(&["GET", "silent"])).await;
    assert_eq!(c.cmd_str(&["GET", "silent"]).await, "$1\r\n1\r\n");
    poll(|| h.masters[0].get("lock:silent").is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_answers_then_closes() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    c.send(
        &[
            enc(&["SET", "q", "1"]),
            enc(&["QUIT"]),
            enc(&["SET", "q", "2"]),
        ]
        .concat(),
    )
    .await;
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert_eq!(text(&c.read().await), "+OK\r\n");
    assert!(c.closed().await);
    assert_eq!(h.backend.get("q").as_deref(), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_touching_lock_keys_never_reach_the_backend() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    for cmd in [
        &["INCR", "lock:a"][..],
        &["SET", "lock:a", "v"],
        &["SET", "lock:a", "v", "XX", "PX", "100"],
        &["HSET", "lock:a", "f", "v"],
        &["MSET", "lock:a", "1", "data", "2"],
        &["RENAME", "data", "lock:a"],
        &["PERSIST", "lock:a"],
        &["DEL", "lock:a", "data"],
    ] {
        let r = c.cmd_str(cmd).await;
        assert!(r.starts_with("-ERR"), "{cmd:?}: {r}");
    }
    // An expiry is an extension on the masters (none holds lock:a: 0).
    assert_eq!(c.cmd_str(&["EXPIRE", "lock:a", "10"]).await, ":0\r\n");
    assert_eq!(h.backend.query(&["KEYS", "*"]), redis::Value::Array(vec![]));
}

/// A Lua table that holds itself: Redis replies with it nested about 8,000
/// levels deep, an error at the bottom.
const DEEP: &str = "local a = {}; local b = {a}; a[1] = b; return a";

/// A reply as deep as Redis sends passes through whole, byte for byte, on a
/// shared connection and on a client's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_nested_as_deep_as_redis_sends_passes_through() {
    let direct = RedisServer::start();
    let mut redis = RawClient::connect(([127, 0, 0, 1], direct.port).into()).await;
    let want = redis.cmd(&["EVAL", DEEP, "0"]).await;
    assert!(want.len() > 30_000 && want.ends_with(b"-ERR reached lua stack limit\r\n"));
    for multiplex in [true, false] {
        let h = Harness::start_with(3, |c| c.passthrough.multiplex = multiplex).await;
        let mut c = h.client().await;
        assert!(
            c.cmd(&["EVAL", DEEP, "0"]).await == want,
            "multiplex = {multiplex}"
        );
        assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    }
}

/// Past the proxy's own limit the client gets an error that names the limit
/// (not the backend) at once, and is served again right after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_past_the_depth_limit_names_the_limit_and_hangs_nobody() {
    for multiplex in [true, false] {
        let h = Harness::start_with(3, |c| {
            c.passthrough.multiplex = multiplex;
            c.limits.max_nesting_depth = 100;
        })
        .await;
        let mut c = h.client().await;
        let err = c.cmd_str(&["EVAL", DEEP, "0"]).await;
        assert!(
            err.starts_with("-ERR passthrough connection to 127.0.0.1:")
                && err.contains("limits.max_nesting_depth")
                && !err.contains("unavailable"),
            "multiplex = {multiplex}: {err}"
        );
        assert_eq!(c.cmd_str(&["SET", "after", "1"]).await, "+OK\r\n");
        assert_eq!(c.cmd_str(&["GET", "after"]).await, "$1\r\n1\r\n");
    }
}
