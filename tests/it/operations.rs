//! The operations surface: `/metrics` through a real Prometheus parser,
//! `/healthz` and `/readyz`, `INFO` and `PROXY` through redis-py and redis-cli,
//! live reload, and the container files.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use crate::clients::{client_env, root, run};
use crate::common::*;

/// `GET path` on the operations endpoint: (status, body).
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or("");
    (status, body.to_string())
}

/// A harness whose proxy serves the operations endpoint.
pub(crate) async fn with_metrics(
    tweak: impl FnOnce(&mut redlock_proxy::Config),
) -> (Harness, SocketAddr) {
    let port = free_port();
    let h = Harness::start_with(3, |c| {
        c.server.metrics_listen = format!("127.0.0.1:{port}");
        tweak(c);
    })
    .await;
    (h, SocketAddr::from(([127, 0, 0, 1], port)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_info_and_proxy_commands_through_real_clients() {
    let (h, ops) = with_metrics(|_| {}).await;
    // The backend probe has run once the proxy reports ready.
    poll(|| http_get(ops, "/readyz").0 == 200).await;
    let py = client_env("py-ops").join("bin/python");
    let script = root().join("tests/clients/python/ops_checks.py");
    let port = ops.port().to_string();
    run(
        &h,
        &py,
        &[script.to_str().unwrap()],
        &[("METRICS_PORT", &port)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_masters_quorum_and_healthz_the_process() {
    let (mut h, ops) = with_metrics(|_| {}).await;
    poll(|| http_get(ops, "/readyz").0 == 200).await;
    assert_eq!(http_get(ops, "/healthz"), (200, "ok\n".to_string()));
    assert_eq!(http_get(ops, "/nothing").0, 404);
    h.masters[0].kill();
    h.masters[1].kill();
    poll(|| http_get(ops, "/readyz").0 == 503).await;
    let (_, why) = http_get(ops, "/readyz");
    assert!(why.contains("1 of 3 masters reachable, 2 needed"), "{why}");
    assert_eq!(http_get(ops, "/healthz").0, 200, "the process still serves");
    h.masters[0].restart();
    h.masters[1].restart();
    poll(|| http_get(ops, "/readyz").0 == 200).await;
    // And the backend: not ready without it.
    h.backend.kill();
    poll(|| http_get(ops, "/readyz").0 == 503).await;
    assert!(http_get(ops, "/readyz").1.contains("backend"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_proxy_commands_through_redis_cli() {
    let h = Harness::start_with(3, |c| {
        c.server.requirepass = redlock_proxy::config::Secret("sesame".into())
    })
    .await;
    let cli = |args: &[&str]| {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &h.addr.port().to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(cli(&["PROXY", "MASTERS"]).contains("NOAUTH"));
    let authed = |args: &[&str]| {
        let mut all = vec!["--no-auth-warning", "-a", "sesame"];
        all.extend_from_slice(args);
        cli(&all)
    };
    let info = authed(&["INFO", "proxy"]);
    assert!(info.starts_with("# Proxy"), "{info}");
    assert!(
        info.contains("masters_up:3") && info.contains("quorum:2"),
        "{info}"
    );
    assert!(!info.contains("redis_version"), "{info}");
    let all = authed(&["INFO"]);
    assert!(
        all.contains("redis_version") && all.contains("# Proxy"),
        "{all}"
    );
    let masters = authed(&["PROXY", "MASTERS"]);
    for m in &h.masters {
        assert!(
            masters.contains(&format!("127.0.0.1:{}", m.port)),
            "{masters}"
        );
    }
    let config = authed(&["PROXY", "CONFIG"]);
    assert!(config.contains("requirepass\n***"), "{config}");
    assert!(!config.contains("sesame"), "{config}");
    assert!(authed(&["PROXY", "NOPE"]).contains("unknown subcommand"));
}

/// A reload swaps the master list: operations go to the new set, the master
/// that stayed keeps its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_masters_and_the_lock_patterns_live() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let fourth = RedisServer::start();
    let kept = h.shared.engine().masters()[0]
        .stats
        .connects
        .load(std::sync::atomic::Ordering::Relaxed);
    let mut config = (*h.shared.config()).clone();
    config.redlock.masters[2] = redlock_proxy::config::RedisUrl::parse(&fourth.url()).unwrap();
    config.redlock.lock_patterns.push("mutex:*".into());
    config.server.listen = "127.0.0.1:1".into();
    let report = h.shared.reload(config);
    assert_eq!(report.changed, ["masters", "lock_patterns"]);
    assert_eq!(report.needs_restart, ["listen"]);
    h.wait_masters_up().await;
    assert_eq!(
        c.cmd_str(&["SET", "mutex:a", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    poll(|| fourth.get("mutex:a").as_deref() == Some("t")).await;
    assert_eq!(
        h.masters[2].get("mutex:a"),
        None,
        "the removed master gets nothing"
    );
    assert_eq!(h.backend.get("mutex:a"), None);
    let engine = h.shared.engine();
    assert_eq!(
        engine.masters()[0]
            .stats
            .connects
            .load(std::sync::atomic::Ordering::Relaxed),
        kept
    );
    assert_eq!(h.shared.config().server.listen, "127.0.0.1:0");
}
