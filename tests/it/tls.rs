//! TLS on both sides: clients over the TLS listener (redis-cli, redis-py),
//! mutual TLS, `rediss://` masters and backend running TLS-only
//! redis-server, and the failures: plaintext on the TLS port, stalled
//! handshakes, servers the proxy cannot verify or that refuse it.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::pki::Pki;
use crate::common::*;

/// `redis-cli --tls` against the proxy's TLS listener; `cert`: the client
/// certificate and key to present. (status ok, output).
fn tls_cli(port: u16, ca: &Path, cert: Option<(&Path, &Path)>, args: &[&str]) -> (bool, String) {
    let mut c = Command::new("redis-cli");
    c.args(["--tls", "--cacert"]).arg(ca);
    if let Some((cert, key)) = cert {
        c.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = c
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text.trim_end().to_string())
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A proxy with a TLS listener (and its plain one) over plain masters.
async fn tls_proxy(pki: &Pki, auth: &str) -> Harness {
    let (cert, key, ca) = (path(&pki.server_cert), path(&pki.server_key), path(&pki.ca));
    let auth = auth.parse().unwrap();
    Harness::start_with(3, move |c| {
        c.tls.listen = "127.0.0.1:0".into();
        c.tls.cert_file = cert;
        c.tls.key_file = key;
        c.tls.ca_cert_file = ca;
        c.tls.auth_clients = auth;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_and_redis_py_over_the_tls_listener() {
    let pki = Pki::new();
    let h = tls_proxy(&pki, "no").await;
    let port = h.tls_addr.unwrap().port();
    assert_eq!(
        tls_cli(port, &pki.ca, None, &["PING"]),
        (true, "PONG".into())
    );
    let (_, ok) = tls_cli(
        port,
        &pki.ca,
        None,
        &["SET", "lock:tls", "t", "NX", "PX", "30000"],
    );
    assert_eq!(ok, "OK");
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.get("lock:tls").as_deref() == Some("t"))
    })
    .await;
    assert_eq!(
        tls_cli(port, &pki.ca, None, &["SET", "data:tls", "v"]).1,
        "OK"
    );
    assert_eq!(h.backend.get("data:tls").as_deref(), Some("v"));
    // The plain listener serves beside it.
    let mut plain = h.client().await;
    assert_eq!(plain.cmd_str(&["GET", "data:tls"]).await, "$1\r\nv\r\n");

    // redis-py with ssl=True: a lock round trip and data.
    let py = crate::clients::client_env("py-redis8").join("bin/python");
    let code = format!(
        r#"
import redis
r = redis.Redis(host="localhost", port={port}, ssl=True, ssl_ca_certs={ca:?})
assert r.set("lock:py", "tok", nx=True, px=30000)
assert r.get("lock:py") == b"tok"
release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
assert r.eval(release, 1, "lock:py", "tok") == 1
r.set("data:py", "x")
assert r.get("data:py") == b"x"
big = "y" * 1_000_000
r.set("data:big", big)
assert r.get("data:big") == big.encode()
print("ok")
"#,
        ca = path(&pki.ca)
    );
    let out = Command::new(py).args(["-c", &code]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(h.backend.get("data:py").as_deref(), Some("x"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_checked_at_the_tls_level() {
    let pki = Pki::new();
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let rogue = Some((pki.rogue_cert.as_path(), pki.rogue_key.as_path()));
    let h = tls_proxy(&pki, "yes").await;
    let port = h.tls_addr.unwrap().port();
    assert_eq!(
        tls_cli(port, &pki.ca, client, &["PING"]),
        (true, "PONG".into())
    );
    for (who, cert) in [("none", None), ("rogue", rogue)] {
        let (_, out) = tls_cli(port, &pki.ca, cert, &["PING"]);
        assert!(
            !out.contains("PONG") && !out.contains("ERR"),
            "{who}: {out}"
        );
    }
    drop(h);
    let h = tls_proxy(&pki, "optional").await;
    let port = h.tls_addr.unwrap().port();
    assert_eq!(tls_cli(port, &pki.ca, None, &["PING"]).1, "PONG");
    assert_eq!(tls_cli(port, &pki.ca, client, &["PING"]).1, "PONG");
    assert!(!tls_cli(port, &pki.ca, rogue, &["PING"]).1.contains("PONG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_and_stalled_handshakes_on_the_tls_port() {
    let pki = Pki::new();
    let (cert, key) = (path(&pki.server_cert), path(&pki.server_key));
    let h = Harness::start_with(3, move |c| {
        c.tls.listen = "127.0.0.1:0".into();
        c.tls.cert_file = cert;
        c.tls.key_file = key;
        c.tls.handshake_timeout = Duration::from_millis(500);
    })
    .await;
    let tls = h.tls_addr.unwrap();
    // Plaintext RESP: closed, with no RESP reply (at most a TLS alert).
    let mut plain = std::net::TcpStream::connect(tls).unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    plain.write_all(b"*1\r\n$4\r\nPING\r\n").unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"+") && !got.starts_with(b"-"), "{got:?}");
    // A client that stalls mid-handshake delays nobody, and is closed.
    let mut staller = std::net::TcpStream::connect(tls).unwrap();
    let opened = Instant::now();
    let (ok, out) = tls_cli(tls.port(), &pki.ca, None, &["PING"]);
    assert!(ok && out == "PONG", "{out}");
    staller.set_read_timeout(Some(WAIT)).unwrap();
    let n = staller.read(&mut [0u8; 16]).unwrap_or(0);
    assert_eq!(n, 0, "closed without a byte");
    assert!(opened.elapsed() >= Duration::from_millis(500));
    // Counted just after the socket closes, on the proxy's side.
    poll(|| {
        h.shared
            .metrics()
            .tls_handshake_failures
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_masters_and_backend() {
    let pki = Pki::new();
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_tls(&pki, false))
        .collect();
    let backend = RedisServer::start_tls(&pki, false);
    let ca = path(&pki.ca);
    let h = Harness::around(masters, backend, move |c| c.tls.ca_cert_file = ca).await;
    h.wait_masters_up().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:up", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.tls_cli(&["GET", "lock:up"]) == "t")
    })
    .await;
    assert_eq!(c.cmd_str(&["SET", "data:up", "v"]).await, "+OK\r\n");
    assert_eq!(h.backend.tls_cli(&["GET", "data:up"]), "v");
    assert_eq!(h.backend.tls_cli(&["GET", "lock:up"]), "");
    // A large reply through TLS on both legs.
    let big = "z".repeat(2_000_000);
    assert_eq!(c.cmd_str(&["SET", "data:big", &big]).await, "+OK\r\n");
    let reply = c.cmd(&["GET", "data:big"]).await;
    assert_eq!(reply.len(), big.len() + 12);
    assert_eq!(
        c.cmd_str(&["EVAL", RELEASE, "1", "lock:up", "t"]).await,
        ":1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masters_that_require_or_fail_verification() {
    logs();
    let pki = Pki::new();
    // Masters that require a client certificate the proxy does not present,
    // and a proxy that trusts another CA: both are unreachable masters.
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_tls(&pki, true)).collect();
    let port = masters[0].port;
    let ca = path(&pki.ca);
    let h = Harness::around(masters, RedisServer::start(), move |c| {
        c.tls.ca_cert_file = ca;
        c.redlock.op_timeout = PATIENT;
    })
    .await;
    // Refused within the node timeout, as for unreachable masters.
    let mut c = h.client().await;
    let start = Instant::now();
    assert_eq!(
        c.cmd_str(&["SET", "lock:mtls", "t", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    assert!(start.elapsed() < WAIT);
    poll(|| !log_lines("master unavailable", port).is_empty()).await;
    let line = log_lines("master unavailable", port).remove(0);
    assert!(
        line.contains("TLS") && line.contains("CertificateRequired"),
        "{line}"
    );
    drop(c);
    drop(h);

    // With its client certificate it is let in.
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_tls(&pki, true)).collect();
    let (ca, cert, key) = (path(&pki.ca), path(&pki.client_cert), path(&pki.client_key));
    let h = Harness::around(masters, RedisServer::start(), move |c| {
        c.tls.ca_cert_file = ca;
        c.tls.client_cert_file = cert;
        c.tls.client_key_file = key;
    })
    .await;
    h.wait_masters_up().await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:mtls", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    drop(c);
    drop(h);

    // A CA that did not sign the masters' certificates: unknown issuer.
    let masters: Vec<RedisServer> = (0..3)
        .map(|_| RedisServer::start_tls(&pki, false))
        .collect();
    let port = masters[0].port;
    let rogue = path(&pki.rogue_ca);
    let h = Harness::around(masters, RedisServer::start(), move |c| {
        c.tls.ca_cert_file = rogue
    })
    .await;
    let mut c = h.client().await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:ca", "t", "NX", "PX", "30000"])
            .await,
        "$-1\r\n"
    );
    poll(|| !log_lines("master unavailable", port).is_empty()).await;
    let line = log_lines("master unavailable", port).remove(0);
    assert!(
        line.contains("TLS") && line.contains("UnknownIssuer"),
        "{line}"
    );
}

/// A reload re-reads the certificate files: rotated in place, the new
/// certificate serves new connections; a broken file keeps the running one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_rereads_the_certificates() {
    let pki = Pki::new();
    let next = Pki::new();
    let h = tls_proxy(&pki, "no").await;
    let port = h.tls_addr.unwrap().port();
    assert_eq!(tls_cli(port, &pki.ca, None, &["PING"]).1, "PONG");
    std::fs::copy(&next.server_cert, &pki.server_cert).unwrap();
    std::fs::copy(&next.server_key, &pki.server_key).unwrap();
    let config = (*h.shared.config()).clone();
    h.shared.reload(config.clone());
    assert_eq!(tls_cli(port, &next.ca, None, &["PING"]).1, "PONG");
    assert!(!tls_cli(port, &pki.ca, None, &["PING"]).1.contains("PONG"));
    // Half-written files: the running certificate stays.
    std::fs::write(&pki.server_key, "garbage").unwrap();
    h.shared.reload(config);
    assert_eq!(tls_cli(port, &next.ca, None, &["PING"]).1, "PONG");
}
