//! Authentication: towards the proxy (requirepass and users), or, when the
//! proxy has none, towards the backend.

use crate::common::*;
use redlock_proxy::config::{Secret, User};

async fn secured() -> Harness {
    Harness::start_with(3, |c| {
        c.server.requirepass = Secret("s3cret".into());
        c.users.push(User {
            name: "alice".into(),
            password: Secret("wonderland".into()),
            rules: None,
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_before_auth_lock_operations_included() {
    let h = secured().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["PING"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["GET", "k"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["SET", "lock:a", "t", "NX", "PX", "10000"])
            .await,
        "-NOAUTH Authentication required.\r\n"
    );
    assert!(h.masters.iter().all(|m| m.get("lock:a").is_none()));
    assert!(
        c.cmd_str(&["HELLO", "3"])
            .await
            .starts_with("-NOAUTH HELLO must be called")
    );
    assert_eq!(
        c.cmd_str(&["AUTH", "wrong"]).await,
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.cmd_str(&["AUTH", "s3cret"]).await, "+OK\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "lock:a", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    // RESET drops the authentication.
    assert_eq!(c.cmd_str(&["RESET"]).await, "+RESET\r\n");
    assert_eq!(
        c.cmd_str(&["GET", "k"]).await,
        "-NOAUTH Authentication required.\r\n"
    );
    // QUIT is always allowed.
    assert_eq!(c.cmd_str(&["QUIT"]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_hello_auth() {
    let h = secured().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["AUTH", "alice", "s3cret"]).await,
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        c.cmd_str(&["HELLO", "3", "AUTH", "alice", "nope"]).await,
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    let hello = c
        .cmd_str(&["HELLO", "3", "AUTH", "alice", "wonderland"])
        .await;
    assert!(hello.starts_with("%7"), "{hello}");
    assert_eq!(c.cmd_str(&["GET", "missing"]).await, "_\r\n");
    let mut d = h.client().await;
    assert_eq!(d.cmd_str(&["AUTH", "default", "s3cret"]).await, "+OK\r\n");
    assert_eq!(d.cmd_str(&["PING"]).await, "+PONG\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_clients_cannot_send_big_requests() {
    let h = secured().await;
    let mut c = h.client().await;
    c.send(b"*11\r\n").await;
    assert_eq!(
        text(&c.read().await),
        "-ERR Protocol error: unauthenticated multibulk length\r\n"
    );
    assert!(c.closed().await);
    let mut c = h.client().await;
    c.send(b"*2\r\n$4\r\nAUTH\r\n$20000\r\n").await;
    assert_eq!(
        text(&c.read().await),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
    assert!(c.closed().await);
    // Authenticated, the normal limits apply.
    let mut c = h.client().await;
    assert_eq!(c.cmd_str(&["AUTH", "s3cret"]).await, "+OK\r\n");
    let big = "x".repeat(20_000);
    assert_eq!(c.cmd_str(&["SET", "big", &big]).await, "+OK\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_auth_answers_like_redis() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    assert!(
        c.cmd_str(&["AUTH", "x"])
            .await
            .starts_with("-ERR AUTH <password> called without any password configured")
    );
    assert_eq!(c.cmd_str(&["AUTH", "default", "anything"]).await, "+OK\r\n");
    assert!(
        c.cmd_str(&["HELLO", "3", "AUTH", "default", "x"])
            .await
            .starts_with("%7")
    );
}

/// What a client sees of `AUTH` on a backend that sets a password and a user
/// at run time, from `addr` (a redis-server, or the proxy in front of it).
async fn backend_auth_session(addr: std::net::SocketAddr) -> Vec<String> {
    let mut c = RawClient::connect(addr).await;
    let mut seen = Vec::new();
    for cmd in [
        &["AUTH", "nopass-yet"][..],
        &["CONFIG", "SET", "requirepass", "temp"],
        &["AUTH", "wrong"],
        &["AUTH", "temp"],
        &["AUTH", "default", "temp"],
        &["ACL", "SETUSER", "app", "on", ">pw", "+@all", "~*"],
        &["AUTH", "app", "pw"],
        &["ACL", "WHOAMI"],
        &["SET", "k", "v"],
        &["GET", "k"],
        &["AUTH", "temp"],
        &["ACL", "WHOAMI"],
        // HELLO's AUTH too (RESP3 clients authenticate so).
        &["HELLO", "3", "AUTH", "app", "wrong"],
        &["HELLO", "3", "AUTH", "app", "pw", "SETNAME", "n"],
        &["ACL", "WHOAMI"],
        &["CLIENT", "GETNAME"],
        &["HELLO", "2"],
        &["CONFIG", "SET", "requirepass", ""],
        &["ACL", "DELUSER", "app"],
    ] {
        let reply = c.cmd_str(cmd).await;
        // Redis's error texts go on after the first words; compare those.
        let first: String = reply.chars().take(40).collect();
        seen.push(format!("{cmd:?} -> {first}"));
    }
    seen
}

/// Without a password of its own, the proxy passes `AUTH` to the backend:
/// the client's session there is the user it authenticated as, as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_password_of_its_own_the_proxy_passes_auth_to_the_backend() {
    let h = Harness::start(3).await;
    let direct: std::net::SocketAddr = ([127, 0, 0, 1], h.backend.port).into();
    let want = backend_auth_session(direct).await;
    let got = backend_auth_session(h.addr).await;
    assert_eq!(got, want);
    assert!(want[7].ends_with("$3\r\napp\r\n"), "{want:?}");
}

#[test]
fn passwords_never_show_in_the_configuration_line() {
    let mut c = redlock_proxy::Config::default();
    c.server.requirepass = Secret("hunter2".into());
    c.users.push(User {
        name: "bob".into(),
        password: Secret("pa55".into()),
        rules: Some("on >x ~* +@all".into()),
    });
    let s = c.summary();
    assert!(
        !s.contains("hunter2") && !s.contains("pa55") && s.contains("bob"),
        "{s}"
    );
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("pa55"),
        "{debug}"
    );
}
