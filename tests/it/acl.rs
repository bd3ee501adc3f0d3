//! Per-user permissions in Redis's ACL language: the proxy and a real
//! redis-server get the same users and rules and the same battery of
//! requests, and must answer alike, word for word; lock keys follow the
//! same rules (checked on the masters); `ACL` itself, failed logins, a
//! reload, and the backend seeing the client's own user.

use crate::common::*;
use redlock_proxy::config::{Identity, ScriptConfig, ScriptKind, Secret, User};

/// The users both sides get (besides `admin`, who reads `ACL LOG`).
const USERS: &[(&str, &str)] = &[
    (
        "app",
        "on >pw ~app:* %R~shared:* %W~inbox:* &app:* +@all -@dangerous +sort +sort_ro +config|get",
    ),
    (
        "reader",
        "on >pw ~* &* -@all +@read +ping +multi +exec +discard +select|0",
    ),
    (
        "sel",
        "on >pw ~a:* resetchannels -@all +get +publish +multi +discard (+set ~b:*) (+del +publish ~c:* &c:*)",
    ),
    (
        "subs",
        "on >pw ~* +@all -@dangerous resetchannels &news.* &exact",
    ),
    ("admin", "on >pw ~* &* +@all"),
];

/// The requests every user sends, one by one; `|` separates the requests of
/// a pipeline, sent in one write.
const BATTERY: &[&str] = &[
    "SET app:s v",
    "GET app:s",
    "SET shared:s v",
    "GET shared:s",
    "SET inbox:s v",
    "GET inbox:s",
    "SET inbox:s w GET",
    "SET other:s v",
    "GET other:s",
    "SET a:1 x",
    "GET a:1",
    "SET b:1 y",
    "GET b:1",
    "DEL c:1 a:1",
    "DEL c:1",
    "MSET app:m 1 other:m 2",
    "MSET app:m 1 app:n 2",
    "MGET app:m app:n",
    "MGET app:m shared:s",
    "INCR app:c",
    "INCRBY shared:c 5",
    "LPUSH app:l 3 1 2",
    "LRANGE app:l 0 -1",
    "LPUSH other:l 1",
    "RPOPLPUSH app:l shared:l",
    "RPOPLPUSH app:l inbox:l",
    "LMOVE app:l app:l LEFT RIGHT",
    "SADD app:set a",
    "SMEMBERS app:set",
    "SINTERSTORE inbox:set app:set",
    "SINTERSTORE app:set2 shared:set",
    "ZADD app:z 1 a",
    "ZRANGE app:z 0 -1",
    "ZUNIONSTORE app:z2 2 app:z other:z",
    "HSET app:h f v",
    "HGETALL app:h",
    "XADD app:x 1-1 f v",
    "XRANGE app:x - +",
    "XREAD COUNT 1 STREAMS app:x 0",
    "XREAD COUNT 1 STREAMS app:x other:x 0 0",
    "PFADD app:p a",
    "PFCOUNT app:p shared:p",
    "SETBIT app:b 7 1",
    "GETBIT app:b 7",
    "BITFIELD shared:bf GET u8 0",
    "BITFIELD shared:bf SET u8 0 1",
    "BITFIELD_RO shared:bf GET u8 0",
    "GEOADD app:g 13.361389 38.115556 P",
    "GEODIST app:g P P",
    "EXISTS app:s other:s",
    "EXISTS shared:s inbox:s",
    "TYPE app:s",
    "EXPIRE app:s 100",
    "TTL app:s",
    "PERSIST app:s",
    "RENAME app:s app:s2",
    "RENAME app:s2 other:s2",
    "COPY app:s2 shared:copy",
    "COPY app:s2 inbox:copy",
    "DEL app:s2 inbox:s",
    "UNLINK other:s",
    "OBJECT ENCODING app:c",
    "SORT app:l",
    "SORT app:l BY nosort",
    "SORT app:l BY w_*",
    "SORT app:l GET #",
    "SORT app:l STORE inbox:sorted",
    "SORT_RO shared:l",
    "KEYS nomatch*",
    "FLUSHALL",
    "FLUSHDB",
    "CONFIG SET maxmemory 0",
    "CONFIG GET maxmemory",
    "DEBUG SLEEP 0",
    "CLIENT KILL ID 999999",
    "SLOWLOG LEN",
    "INFO keyspace",
    "PING",
    "ECHO hi",
    "SELECT 0",
    "SELECT 1",
    "SELECT 0",
    "CLIENT SETNAME n1",
    "CLIENT GETNAME",
    "PUBLISH app:ch m",
    "PUBLISH other:ch m",
    "PUBLISH news.a m",
    "PUBLISH c:x m",
    "SPUBLISH app:ch m",
    "SUBSCRIBE app:ch",
    "UNSUBSCRIBE app:ch",
    "SUBSCRIBE exact news.x",
    "UNSUBSCRIBE exact news.x",
    "SUBSCRIBE exact other",
    "PSUBSCRIBE news.*",
    "PUNSUBSCRIBE news.*",
    "PSUBSCRIBE news.a*",
    "EVAL 'return 1' 0",
    "EVAL 'return redis.call(\"get\",KEYS[1])' 1 app:c",
    "EVAL 'return 1' 1 other:k",
    "EVAL 'return 1' 1 shared:s",
    "EVAL_RO 'return 1' 1 shared:s",
    "SCRIPT LOAD 'return 1'",
    "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 1 app:c",
    "EVALSHA e0e1f9fabfc9d4800c877a703b823ac0578ff8db 1 other:c",
    "BLPOP app:empty 0.01",
    "BLPOP other:empty 0.01",
    "MULTI",
    "SET app:t 1",
    "FLUSHALL",
    "EXEC",
    "MULTI",
    "INCR app:c",
    "GET app:c",
    "GET other:c",
    "EXEC",
    "MULTI",
    "INCR app:c",
    "DISCARD",
    "SET app:p 1|GET other:p|INCR app:p|FLUSHDB|GET app:p|PUBLISH other:ch x|PING",
    "GET|SET app:q|CONFIG NOSUCH",
    "ACL WHOAMI",
    "ACL CAT",
    "ACL SETUSER eve on",
    "ACL DELUSER app",
    "AUTH app wrong",
    "AUTH nosuch pw",
    "GET app:c",
];

/// Splits a battery line into arguments: words, or `'...'` for one with spaces.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('\'') {
            let end = r.find('\'').expect("closing quote");
            out.push(r[..end].to_string());
            rest = r[end + 1..].trim_start();
        } else {
            let end = rest.find(' ').unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    out
}

/// How many reply frames a request gets: a (un)subscription one per
/// channel it names when it is not refused.
fn frames(args: &[String], first: &[u8]) -> usize {
    let name = args[0].to_ascii_uppercase();
    let subscription = matches!(
        name.as_str(),
        "SUBSCRIBE" | "UNSUBSCRIBE" | "PSUBSCRIBE" | "PUNSUBSCRIBE"
    );
    if subscription && first.first() != Some(&b'-') {
        args.len() - 1
    } else {
        1
    }
}

/// The rules as `ACL SETUSER` arguments: a selector in parentheses is one.
fn rule_args(rules: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut open = false;
    for w in rules.split_whitespace() {
        if open {
            let last = out.last_mut().unwrap();
            last.push(' ');
            last.push_str(w);
            open = !w.ends_with(')');
        } else {
            out.push(w.to_string());
            open = w.starts_with('(') && !w.ends_with(')');
        }
    }
    out
}

fn with_users(c: &mut redlock_proxy::Config, users: &[(&str, &str)]) {
    for (name, rules) in users {
        c.users.push(User {
            name: (*name).into(),
            password: Secret::default(),
            rules: Some((*rules).into()),
        });
    }
}

/// A redis-server with the same users.
fn reference(users: &[(&str, &str)]) -> RedisServer {
    let r = RedisServer::start();
    for (name, rules) in users {
        let mut args = vec!["ACL".to_string(), "SETUSER".into(), (*name).into()];
        args.extend(rule_args(rules));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(r.query_str(&args).eq_ignore_ascii_case("OK"), "{name}");
    }
    r
}

async fn login(addr: std::net::SocketAddr, user: &str) -> RawClient {
    let mut c = RawClient::connect(addr).await;
    assert_eq!(c.cmd_str(&["AUTH", user, "pw"]).await, "+OK\r\n", "{user}");
    c
}

/// One `ACL LOG` entry without what differs by nature (its age, the
/// client's line).
fn log_entries(reply: &redis::Value) -> Vec<Vec<String>> {
    let redis::Value::Array(entries) = reply else {
        panic!("ACL LOG: {reply:?}")
    };
    entries
        .iter()
        .map(|e| {
            let redis::Value::Array(kv) = e else {
                panic!("entry {e:?}")
            };
            kv.chunks(2)
                .filter_map(|p| {
                    let k: String = redis::from_redis_value(p[0].clone()).unwrap();
                    (k != "age-seconds" && k != "client-info").then(|| {
                        let v = match &p[1] {
                            redis::Value::Int(i) => i.to_string(),
                            v => redis::from_redis_value::<String>(v.clone()).unwrap(),
                        };
                        format!("{k}={v}")
                    })
                })
                .collect()
        })
        .collect()
}

async fn acl_log(addr: std::net::SocketAddr) -> redis::Value {
    let url = format!("redis://admin:pw@{addr}");
    let client = redis::Client::open(url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("ACL")
        .arg("LOG")
        .arg("500")
        .query_async(&mut con)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_users_answer_as_on_redis() {
    let h = Harness::start_with(3, |c| with_users(c, USERS)).await;
    let redis = reference(USERS);
    let redis_addr: std::net::SocketAddr = ([127, 0, 0, 1], redis.port).into();
    let mut mismatches = Vec::new();
    let mut requests = 0;
    for (user, _) in USERS.iter().filter(|(u, _)| *u != "admin") {
        let mut p = login(h.addr, user).await;
        let mut r = login(redis_addr, user).await;
        for line in BATTERY {
            let batch: Vec<Vec<String>> = line.split('|').map(words).collect();
            let mut bytes = Vec::new();
            for args in &batch {
                let a: Vec<&str> = args.iter().map(String::as_str).collect();
                bytes.extend(enc(&a));
            }
            p.send(&bytes).await;
            r.send(&bytes).await;
            for args in &batch {
                requests += 1;
                let (mut fp, mut fr) = (p.read().await, r.read().await);
                for _ in 1..frames(args, &fr) {
                    fp.extend(p.read().await);
                    fr.extend(r.read().await);
                }
                if fp != fr {
                    mismatches.push(format!(
                        "{user} {args:?}: redis {:?}, proxy {:?}",
                        text(&fr),
                        text(&fp)
                    ));
                }
            }
        }
    }
    assert!(requests >= 500, "{requests} requests");
    assert!(mismatches.is_empty(), "{mismatches:#?}");
    // Every refusal is in ACL LOG, grouped and ordered as Redis keeps them.
    let (lp, lr) = (
        log_entries(&acl_log(h.addr).await),
        log_entries(&acl_log(redis_addr).await),
    );
    assert!(lr.len() > 40, "{lr:?}");
    assert_eq!(lp, lr);
    let denied = h
        .shared
        .metrics()
        .acl_denied
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(denied > 100, "{denied}");
}

/// `ACL CAT c` lists what Redis lists, and the proxy's own commands where
/// they belong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_cat_lists_the_categories_as_redis_does() {
    let h = Harness::start_with(1, |c| with_users(c, &USERS[4..])).await;
    let redis = RedisServer::start();
    let mut p = login(h.addr, "admin").await;
    let mut r = RawClient::connect(([127, 0, 0, 1], redis.port).into()).await;
    assert_eq!(p.cmd(&["ACL", "CAT"]).await, r.cmd(&["ACL", "CAT"]).await);
    let names = |b: Vec<u8>| -> std::collections::BTreeSet<String> {
        text(&b)
            .split("\r\n")
            .filter(|l| !l.starts_with(['*', '$']) && !l.is_empty())
            .map(String::from)
            .collect()
    };
    for cat in ["read", "write", "dangerous", "pubsub", "connection", "slow"] {
        let mut got = names(p.cmd(&["ACL", "CAT", cat]).await);
        let want = names(r.cmd(&["ACL", "CAT", cat]).await);
        let own: Vec<String> = got
            .iter()
            .filter(|n| n.contains('.') || n.starts_with("proxy"))
            .cloned()
            .collect();
        for n in &own {
            got.remove(n);
        }
        assert_eq!(got, want, "{cat}");
        if cat == "write" {
            assert!(own.contains(&"lock.acquire".to_string()), "{own:?}");
            assert!(own.contains(&"rwlock.write".to_string()), "{own:?}");
        }
    }
    assert_eq!(
        p.cmd_str(&["ACL", "CAT", "nosuch"]).await,
        r.cmd_str(&["ACL", "CAT", "nosuch"]).await
    );
    assert_eq!(p.cmd_str(&["ACL", "WHOAMI"]).await, "$5\r\nadmin\r\n");
    assert_eq!(
        p.cmd_str(&["ACL", "USERS"]).await,
        "*2\r\n$5\r\nadmin\r\n$7\r\ndefault\r\n"
    );
    // Users live in the configuration: writes are refused, and say where.
    for sub in ["SETUSER", "DELUSER", "GETUSER", "LIST", "LOAD", "SAVE"] {
        let reply = p.cmd_str(&["ACL", sub, "x"]).await;
        assert!(
            reply.starts_with(&format!("-ERR ACL {sub} is not served by redlock-proxy")),
            "{reply}"
        );
    }
    assert_eq!(
        p.cmd_str(&["ACL", "LOG", "x"]).await,
        r.cmd_str(&["ACL", "LOG", "x"]).await
    );
    assert_eq!(p.cmd_str(&["ACL", "LOG", "RESET"]).await, "+OK\r\n");
}

/// A script the proxy runs as a read of the lock (declared as a query).
const LOCK_TTL: &str = "return redis.call('pttl', KEYS[1])";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_keys_follow_the_same_rules() {
    let team = [(
        "team1",
        "on >pw ~lock:app1:* %R~lock:app2:* ~data:* +@all -lock.fence",
    )];
    let h = Harness::start_with(3, |c| {
        with_users(c, &team);
        c.redlock.scripts.push(ScriptConfig {
            sha1: sha1_smol::Sha1::from(LOCK_TTL)
                .digest()
                .to_string()
                .try_into()
                .unwrap(),
            kind: ScriptKind::Query,
            ttl_arg: None,
            token_arg: None,
            success: None,
            failure: None,
        });
    })
    .await;
    let mut other = h.client().await;
    // Another team's lock, taken directly on the masters.
    for m in &h.masters {
        m.query(&["SET", "lock:app2:x", "theirs", "PX", LONG_TTL]);
    }
    let mut c = login(h.addr, "team1").await;
    let noperm_key =
        "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";
    // Its own locks: taken, extended, released.
    assert_eq!(
        c.cmd_str(&["SET", "lock:app1:x", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    // Granted on a quorum; the last master's answer may still be on its way.
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.get("lock:app1:x").as_deref() == Some("t"))
    })
    .await;
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:app1:x", "t"]).await,
        ":1\r\n"
    );
    // The other team's: read, but never taken, extended, released or deleted.
    assert_eq!(c.cmd_str(&["GET", "lock:app2:x"]).await, "$6\r\ntheirs\r\n");
    assert!(c.cmd_str(&["PTTL", "lock:app2:x"]).await.starts_with(':'));
    assert_eq!(c.cmd_str(&["EXISTS", "lock:app2:x"]).await, ":1\r\n");
    assert!(
        c.cmd_str(&["EVAL", LOCK_TTL, "1", "lock:app2:x"])
            .await
            .starts_with(':')
    );
    for write in [
        &["SET", "lock:app2:y", "t", "NX", "PX", "10000"][..],
        &["SETNX", "lock:app2:y", "t"],
        &["LOCK.ACQUIRE", "lock:app2:y", "t", "10000"],
        &["RWLOCK.WRITE", "lock:app2:y", "t", "10000"],
        &["SEMAPHORE.ACQUIRE", "lock:app2:y", "t", "2", "10000"],
        &["EVAL", RELEASE, "1", "lock:app2:x", "theirs"],
        &["EVAL", EXTEND, "1", "lock:app2:x", "theirs", "50000"],
        &["PEXPIRE", "lock:app2:x", "1"],
        &["DEL", "lock:app2:x"],
        &["SET", "lock:app3:y", "t", "NX", "PX", "10000"],
        &["GET", "lock:app3:y"],
    ] {
        assert_eq!(c.cmd_str(write).await, noperm_key, "{write:?}");
    }
    assert_eq!(
        c.cmd_str(&["LOCK.FENCE", "lock:app1:x", "t"]).await,
        "-NOPERM this user has no permissions to run the 'lock.fence' command\r\n"
    );
    for m in &h.masters {
        assert_eq!(m.get("lock:app2:x").as_deref(), Some("theirs"));
        assert_eq!(m.get("lock:app2:y"), None);
        assert!(m.pttl("lock:app2:x") > 100_000);
    }
    // Nothing of it reached the backend either, and another client is unaffected.
    assert_eq!(h.backend.query(&["DBSIZE"]), redis::Value::Int(0));
    assert_eq!(
        other.cmd_str(&["PING"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_limited_per_address_and_counted() {
    let h = Harness::start_with(1, |c| {
        with_users(c, &USERS[4..]);
        c.server.auth_failure_limit = 3;
    })
    .await;
    let mut c = h.client().await;
    for _ in 0..3 {
        assert_eq!(
            c.cmd_str(&["AUTH", "admin", "wrong"]).await,
            "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
        );
    }
    // Past the limit, even the right password is refused, unchecked, and
    // from every connection of the address.
    let mut d = h.client().await;
    for conn in [&mut c, &mut d] {
        let r = conn.cmd_str(&["AUTH", "admin", "pw"]).await;
        assert!(
            r.starts_with("-ERR too many failed authentication attempts"),
            "{r}"
        );
        let r = conn.cmd_str(&["HELLO", "3", "AUTH", "admin", "pw"]).await;
        assert!(r.starts_with("-ERR too many failed"), "{r}");
    }
    let m = h.shared.metrics();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((get(&m.auth_failures), get(&m.auth_throttled)), (3, 4));
    // Logged as Redis logs a failed AUTH.
    let entries = log_entries(&acl_log_as_limited(&h).await);
    assert_eq!(
        entries,
        [[
            "count=3",
            "reason=auth",
            "context=toplevel",
            "object=AUTH",
            "username=admin"
        ]]
    );
}

/// `ACL LOG` from a proxy whose address is locked out: through a reload that
/// lifts the limit.
async fn acl_log_as_limited(h: &Harness) -> redis::Value {
    let mut config = (*h.shared.config()).clone();
    config.server.auth_failure_limit = 0;
    h.shared.reload(config);
    acl_log(h.addr).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_rules_of_connected_clients() {
    let h = Harness::start_with(1, |c| {
        with_users(
            c,
            &[("alice", "on >pw ~a:* +@all"), ("bob", "on >pw ~* +@all")],
        );
    })
    .await;
    let mut alice = login(h.addr, "alice").await;
    let mut bob = login(h.addr, "bob").await;
    let r = alice.cmd_str(&["SET", "b:1", "x"]).await;
    assert!(r.starts_with("-NOPERM"), "{r}");
    let mut config = (*h.shared.config()).clone();
    config.users.clear();
    with_users(&mut config, &[("alice", "on >pw ~b:* +@all")]);
    h.shared.reload(config);
    assert_eq!(alice.cmd_str(&["SET", "b:1", "x"]).await, "+OK\r\n");
    assert!(
        alice
            .cmd_str(&["SET", "a:1", "x"])
            .await
            .starts_with("-NOPERM")
    );
    // A user the configuration no longer has is logged out: its connection closes.
    bob.send(&enc(&["PING"])).await;
    assert!(bob.closed().await);
    let mut again = h.client().await;
    assert!(
        again
            .cmd_str(&["AUTH", "bob", "pw"])
            .await
            .starts_with("-WRONGPASS")
    );
}

/// With `passthrough.identity = client`, the backend sees each client's own
/// user: its ACLs apply (inside scripts too), its `ACL LOG` and `CLIENT
/// LIST` name the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backend_sees_the_clients_own_user() {
    let backend = RedisServer::start();
    // The backend's alice may not touch bob's keys, nor run GET at all.
    backend.query(&[
        "ACL", "SETUSER", "alice", "on", ">pw", "~alice:*", "+@all", "-get",
    ]);
    let masters = vec![RedisServer::start()];
    let h = Harness::around(masters, backend, |c| {
        with_users(c, &[("alice", "on >pw ~* +@all")]);
        c.passthrough.identity = Identity::Client;
    })
    .await;
    h.wait_masters_up().await;
    let mut c = login(h.addr, "alice").await;
    assert_eq!(c.cmd_str(&["SET", "alice:1", "x"]).await, "+OK\r\n");
    // The proxy lets these through; the backend refuses them as alice.
    assert_eq!(
        c.cmd_str(&["GET", "alice:1"]).await,
        "-NOPERM this user has no permissions to run the 'get' command\r\n"
    );
    let r = c
        .cmd_str(&["EVAL", "return redis.call('set','bob:1','x')", "0"])
        .await;
    assert!(
        r.starts_with("-ERR The user executing the script can't access"),
        "{r}"
    );
    assert_eq!(h.backend.get("bob:1"), None);
    let log = format!("{:?}", h.backend.query(&["ACL", "LOG"]));
    assert!(log.contains("alice"), "{log}");
    let list = h.backend.query_str(&["CLIENT", "LIST"]);
    assert!(list.contains("user=alice"), "{list}");
    // A login the backend refuses logs the client out of the proxy too.
    let mut d = h.client().await;
    h.backend.query(&["ACL", "SETUSER", "alice", "off"]);
    let r = d.cmd_str(&["AUTH", "alice", "pw"]).await;
    assert!(r.starts_with("-WRONGPASS"), "{r}");
    assert_eq!(
        d.cmd_str(&["SET", "alice:2", "x"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(h.backend.get("alice:2"), None);
}

/// A command the proxy does not know (a module's) cannot have its keys
/// checked: a user allowed everything runs it, anyone else is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_the_proxy_does_not_know() {
    let users = [
        ("root", "on >pw ~* &* +@all"),
        ("app", "on >pw ~app:* +@all"),
    ];
    let h = Harness::start_with(1, |c| with_users(c, &users)).await;
    let mut root = login(h.addr, "root").await;
    let r = root.cmd_str(&["JSON.SET", "other:1", "$", "1"]).await;
    assert!(r.starts_with("-ERR unknown command 'JSON.SET'"), "{r}");
    let mut app = login(h.addr, "app").await;
    assert_eq!(
        app.cmd_str(&["JSON.SET", "other:1", "$", "1"]).await,
        "-NOPERM this user has no permissions to run the 'json.set' command\r\n"
    );
}
