//! Beyond one proxy: `config/compose.ha.yaml` (two proxies behind HAProxy over
//! three voters) parses, and the same topology started with processes —
//! masters, a backend, two proxy binaries with the file's environment, and
//! `haproxy` with `config/haproxy.cfg` — serves locks through HAProxy, and
//! goes on serving new connections when one proxy stops.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_redlock-proxy");

/// Child processes, killed on drop.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The proxies' environment from the compose file (checked by a YAML
/// parser), as `(name, value)` pairs.
fn compose_env() -> Vec<(String, String)> {
    let py = crate::clients::client_env("py-ops").join("bin/python");
    let known: Vec<&str> = redlock_proxy::config::env_names().collect();
    let out = Command::new(py)
        .arg(root().join("tests/clients/python/compose_ha_check.py"))
        .arg(root().join("config/compose.ha.yaml"))
        .env("ENV_NAMES", known.join(","))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Whether something accepts connections on `port`.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_behind_haproxy_as_the_ha_compose_file_runs_them() {
    let env = compose_env();
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    // The file's service names become this machine's ports.
    let local = |v: &str| {
        let mut v = v.replace("backend:6379", &format!("127.0.0.1:{}", backend.port));
        for (i, m) in masters.iter().enumerate() {
            v = v.replace(
                &format!("master{}:6379", i + 1),
                &format!("127.0.0.1:{}", m.port),
            );
        }
        v
    };
    let mut children = Children(Vec::new());
    let mut ports = Vec::new();
    for _ in 0..2 {
        let (port, ops) = (free_port(), free_port());
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("REDLOCK_PROXY_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &env {
            cmd.env(k, local(v));
        }
        cmd.env("REDLOCK_PROXY_LISTEN", format!("127.0.0.1:{port}"))
            .env("REDLOCK_PROXY_METRICS_LISTEN", format!("127.0.0.1:{ops}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        children.0.push(cmd.spawn().unwrap());
        ports.push((port, ops));
    }
    // Each is ready (what HAProxy checks): a quorum of masters and the backend.
    for (_, ops) in &ports {
        let url = format!("http://127.0.0.1:{ops}/readyz");
        poll(|| {
            Command::new(BIN)
                .args(["healthcheck", "--url", &url])
                .status()
                .is_ok_and(|s| s.success())
        })
        .await;
    }
    // HAProxy with the repository's configuration, on this machine's ports.
    let dir = tempfile::tempdir().unwrap();
    let (front, stats) = (free_port(), free_port());
    let cfg = std::fs::read_to_string(root().join("config/haproxy.cfg")).unwrap();
    let cfg = cfg
        // Whatever this machine's file-descriptor limit.
        .replace("maxconn 8000", "maxconn 1000")
        .replace("bind :7379", &format!("bind 127.0.0.1:{front}"))
        .replace("bind :8404", &format!("bind 127.0.0.1:{stats}"))
        .lines()
        .map(|l| {
            let mut l = l.to_string();
            for (i, (port, ops)) in ports.iter().enumerate() {
                let name = format!("proxy{}", i + 1);
                if l.trim_start().starts_with(&format!("server {name} ")) {
                    l = l
                        .replace(&format!("{name}:7379"), &format!("127.0.0.1:{port}"))
                        .replace("port 9121", &format!("port {ops}"));
                }
            }
            l
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        !cfg.contains(":7379 check"),
        "every server was placed: {cfg}"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, cfg + "\n").unwrap();
    let haproxy = Command::new("haproxy")
        .arg("-f")
        .arg(&path)
        .arg("-db")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("haproxy is installed (scripts/test.sh installs it)");
    children.0.push(haproxy);
    poll(|| listening(front)).await;
    let front: std::net::SocketAddr = ([127, 0, 0, 1], front).into();
    let mut c = RawClient::connect(front).await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:ha:0", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(holders_on(&masters, "lock:ha:0", "t"), 3);
    assert_eq!(c.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    assert_eq!(backend.get("k").as_deref(), Some("v"));
    // One proxy stops (SIGTERM: it drains and exits); new connections go to
    // the other.
    signal(children.0[0].id(), libc::SIGTERM);
    let _ = children.0[0].wait();
    assert!(!listening(ports[0].0));
    for i in 1..=10 {
        let mut c = RawClient::connect(front).await;
        let key = format!("lock:ha:{i}");
        assert_eq!(
            c.cmd_str(&["SET", &key, "t", "NX", "PX", "10000"]).await,
            "+OK\r\n",
            "{key}"
        );
    }
}
