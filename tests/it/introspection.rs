//! What clients learn about each other, answered by the proxy for its own
//! clients: `CLIENT LIST`, `INFO`, `ID`, `KILL`, and `UNBLOCK`,
//! `TRACKING ... REDIRECT`, `GETREDIR` by the proxy's ids; `MONITOR` showing
//! every command the proxy receives. Compared with a redis-server where
//! Redis's own behaviour is the measure.

use std::net::SocketAddr;

use crate::common::*;

/// The value of `field` in a `CLIENT LIST` line.
fn field<'a>(line: &'a str, field: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
}

/// The lines of a `CLIENT LIST` / `CLIENT INFO` bulk reply.
fn lines(reply: &str) -> Vec<String> {
    let body = reply.split_once("\r\n").map_or("", |(_, b)| b);
    body.trim_end_matches("\r\n")
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// The line of the client named `name`.
async fn line_of(c: &mut RawClient, name: &str) -> Option<String> {
    let list = c.cmd_str(&["CLIENT", "LIST"]).await;
    lines(&list)
        .into_iter()
        .find(|l| field(l, "name") == Some(name))
}

fn keys(line: &str) -> Vec<String> {
    line.split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_list_shows_every_client_of_the_proxy_as_redis_shows_its_own() {
    let h = Harness::start(3).await;
    let (mut a, mut b) = (h.client().await, h.client().await);
    // Both on the shared backend connections: the backend sees one client.
    assert_eq!(a.cmd_str(&["CLIENT", "SETNAME", "alpha"]).await, "+OK\r\n");
    assert_eq!(b.cmd_str(&["CLIENT", "SETNAME", "beta"]).await, "+OK\r\n");
    assert_eq!(b.cmd_str(&["SELECT", "2"]).await, "+OK\r\n");
    let la = line_of(&mut a, "alpha").await.expect("alpha listed");
    let lb = line_of(&mut a, "beta").await.expect("beta listed");
    assert_ne!(field(&la, "id"), field(&lb, "id"));
    assert_eq!(field(&lb, "db"), Some("2"));
    assert_eq!(field(&la, "laddr"), Some(h.addr.to_string().as_str()));
    assert_eq!(field(&la, "cmd"), Some("client|list"));
    // CLIENT ID, CLIENT INFO and HELLO agree on the id.
    let id = a.cmd_str(&["CLIENT", "ID"]).await;
    assert_eq!(id, format!(":{}\r\n", field(&la, "id").unwrap()));
    let info = a.cmd_str(&["CLIENT", "INFO"]).await;
    assert_eq!(lines(&info).len(), 1, "{info}");
    assert_eq!(field(&lines(&info)[0], "name"), Some("alpha"));
    let hello = a.cmd_str(&["HELLO"]).await;
    assert!(
        hello.contains(&format!("\r\nid\r\n{}", id.trim_end())),
        "{hello}"
    );
    // Filters.
    let one = a
        .cmd_str(&["CLIENT", "LIST", "ID", field(&lb, "id").unwrap()])
        .await;
    assert_eq!(lines(&one).len(), 1);
    assert_eq!(
        lines(&a.cmd_str(&["CLIENT", "LIST", "TYPE", "replica"]).await).len(),
        0
    );
    // Redis's fields, in Redis's order.
    let backend: SocketAddr = format!("127.0.0.1:{}", h.backend.port).parse().unwrap();
    let mut direct = RawClient::connect(backend).await;
    let theirs = lines(&direct.cmd_str(&["CLIENT", "INFO"]).await)[0].clone();
    let ours = keys(&la);
    let mut at = 0;
    for k in keys(&theirs) {
        let i = ours.iter().position(|o| *o == k).expect(&k);
        assert!(i >= at, "{k} out of order in {la}");
        at = i;
    }
    // Errors as Redis words them.
    for cmd in [
        &["CLIENT", "LIST", "TYPE", "odd"][..],
        &["CLIENT", "LIST", "ID", "x"],
        &["CLIENT", "KILL", "ID", "0"],
        &["CLIENT", "KILL", "1.2.3.4:5"],
        &["CLIENT", "KILL", "ADDR"],
    ] {
        assert_eq!(a.cmd_str(cmd).await, direct.cmd_str(cmd).await, "{cmd:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kill_closes_the_clients_it_names() {
    let h = Harness::start(3).await;
    let mut admin = h.client().await;
    let mut victims = Vec::new();
    for name in ["v1", "v2", "v3"] {
        let mut c = h.client().await;
        assert_eq!(c.cmd_str(&["CLIENT", "SETNAME", name]).await, "+OK\r\n");
        victims.push(c);
    }
    let l1 = line_of(&mut admin, "v1").await.unwrap();
    let l2 = line_of(&mut admin, "v2").await.unwrap();
    let l3 = line_of(&mut admin, "v3").await.unwrap();
    // By id, by address (the old form), by address as a filter.
    let by_id = ["CLIENT", "KILL", "ID", field(&l1, "id").unwrap()];
    assert_eq!(admin.cmd_str(&by_id).await, ":1\r\n");
    assert_eq!(admin.cmd_str(&by_id).await, ":0\r\n", "gone already");
    let old_form = ["CLIENT", "KILL", field(&l2, "addr").unwrap()];
    assert_eq!(admin.cmd_str(&old_form).await, "+OK\r\n");
    let addr = ["CLIENT", "KILL", "ADDR", field(&l3, "addr").unwrap()];
    assert_eq!(admin.cmd_str(&addr).await, ":1\r\n");
    for v in &mut victims {
        assert!(v.closed().await);
    }
    for name in ["v1", "v2", "v3"] {
        assert_eq!(line_of(&mut admin, name).await, None, "{name}");
    }
    // SKIPME: by default a client's own address spares it; SKIPME no does not.
    let me = field(&lines(&admin.cmd_str(&["CLIENT", "INFO"]).await)[0], "addr")
        .unwrap()
        .to_string();
    assert_eq!(
        admin.cmd_str(&["CLIENT", "KILL", "ADDR", &me]).await,
        ":0\r\n"
    );
    assert_eq!(
        admin
            .cmd_str(&["CLIENT", "KILL", "ADDR", &me, "SKIPME", "no"])
            .await,
        ":1\r\n",
        "the reply comes before the close"
    );
    assert!(admin.closed().await);
}

/// The proxy's id of a fresh client, and the client.
async fn client_with_id(addr: SocketAddr) -> (RawClient, String) {
    let mut c = RawClient::connect(addr).await;
    let id = c.cmd_str(&["CLIENT", "ID"]).await;
    let id = id.trim_start_matches(':').trim_end().to_string();
    (c, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_unblock_names_the_blocked_client_by_the_proxys_id() {
    let h = Harness::start(3).await;
    let (mut blocked, id) = client_with_id(h.addr).await;
    let mut other = h.client().await;
    assert_eq!(
        other.cmd_str(&["CLIENT", "UNBLOCK", &id]).await,
        ":0\r\n",
        "not blocked"
    );
    blocked.send(&enc(&["BLPOP", "nothing", "0"])).await;
    poll_async(|| {
        let (addr, id) = (h.addr, id.clone());
        async move {
            let mut c = RawClient::connect(addr).await;
            let list = c.cmd_str(&["CLIENT", "LIST", "ID", &id]).await;
            lines(&list)
                .first()
                .and_then(|l| field(l, "flags"))
                .is_some_and(|f| f.contains('b'))
        }
    })
    .await;
    assert_eq!(
        other.cmd_str(&["CLIENT", "UNBLOCK", &id, "ERROR"]).await,
        ":1\r\n"
    );
    assert_eq!(
        text(&blocked.read().await),
        "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"
    );
    // Another backend connection's id (the backend's own numbering) is no
    // client of the proxy.
    assert_eq!(
        other.cmd_str(&["CLIENT", "UNBLOCK", "999999"]).await,
        ":0\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_redirects_to_the_client_the_proxys_id_names() {
    let h = Harness::start(3).await;
    let (mut listener, id) = client_with_id(h.addr).await;
    assert!(
        listener
            .cmd_str(&["SUBSCRIBE", "__redis__:invalidate"])
            .await
            .starts_with("*3\r\n")
    );
    let mut tracker = h.client().await;
    assert_eq!(
        tracker
            .cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        tracker.cmd_str(&["CLIENT", "GETREDIR"]).await,
        format!(":{id}\r\n")
    );
    let info = tracker.cmd_str(&["CLIENT", "TRACKINGINFO"]).await;
    assert!(
        info.contains(&format!("$8\r\nredirect\r\n:{id}\r\n")),
        "{info}"
    );
    assert_eq!(tracker.cmd_str(&["GET", "tracked"]).await, "$-1\r\n");
    // OFF names the client too (Redis checks it exists).
    let mut second = h.client().await;
    assert_eq!(
        second
            .cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", &id])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        second
            .cmd_str(&["CLIENT", "TRACKING", "OFF", "REDIRECT", &id])
            .await,
        "+OK\r\n"
    );
    let mut writer = h.client().await;
    assert_eq!(writer.cmd_str(&["SET", "tracked", "1"]).await, "+OK\r\n");
    let msg = text(&listener.read().await);
    assert!(
        msg.contains("__redis__:invalidate") && msg.contains("tracked"),
        "{msg}"
    );
    // A client with no backend connection of its own cannot receive them.
    let mut idle = h.client().await;
    let info = idle.cmd_str(&["CLIENT", "INFO"]).await;
    let idle_id = field(&lines(&info)[0], "id").unwrap().to_string();
    let refused = tracker
        .cmd_str(&["CLIENT", "TRACKING", "ON", "REDIRECT", &idle_id])
        .await;
    assert!(refused.starts_with("-ERR client"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shows_every_command_the_proxy_receives() {
    let h = Harness::start(3).await;
    let mut mon = h.client().await;
    assert_eq!(mon.cmd_str(&["MONITOR"]).await, "+OK\r\n");
    let mut c = h.client().await;
    // Answered by the proxy, a lock operation, a passthrough command, a
    // script (its GET runs on the backend), credentials.
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "lock:mon", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(
        c.cmd_str(&["EVAL", "return redis.call('GET', KEYS[1])", "1", "k"])
            .await,
        "$1\r\nv\r\n"
    );
    let _ = c.cmd_str(&["AUTH", "secret"]).await;
    // In order: what the proxy received. The script's GET comes from the
    // backend's MONITOR, after the EVAL, but it may come after what the
    // client sent next.
    let mut want = vec![
        "\"PING\"",
        "\"SET\" \"lock:mon\" \"t\" \"NX\" \"PX\" \"10000\"",
        "\"SET\" \"k\" \"v\"",
        "\"EVAL\"",
        "\"AUTH\" \"(redacted)\"",
    ];
    let mut script_get = false;
    let mut eval_seen = false;
    while !want.is_empty() || !script_get {
        let line = text(&mon.read().await);
        assert!(line.starts_with('+') && line.ends_with("\r\n"), "{line}");
        assert!(!line.contains("secret"), "{line}");
        if line.contains("lua] \"GET\" \"k\"") {
            assert!(eval_seen, "the script's command before its EVAL: {line}");
            script_get = true;
        } else if want.first().is_some_and(|w| line.contains(w)) {
            eval_seen |= line.contains("\"EVAL\"");
            want.remove(0);
        }
    }
    // A monitor may not touch keys, as in Redis; RESET ends it.
    assert_eq!(
        mon.cmd_str(&["GET", "k"]).await,
        "-ERR Replica can't interact with the keyspace\r\n"
    );
    assert_eq!(mon.cmd_str(&["RESET"]).await, "+RESET\r\n");
    assert_eq!(mon.cmd_str(&["GET", "k"]).await, "$1\r\nv\r\n");
    assert_eq!(c.cmd_str(&["SET", "after", "1"]).await, "+OK\r\n");
    assert_eq!(
        mon.try_read(std::time::Duration::from_millis(200)).await,
        None
    );
}
