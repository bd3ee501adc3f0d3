//! The binary: configuration errors, graceful shutdown, and dev mode's children.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_redlock-proxy");

/// The binary with a clean environment (no REDLOCK_PROXY_* from the caller).
fn proxy_cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("REDLOCK_PROXY_") {
            c.env_remove(k);
        }
    }
    c.env("RUST_LOG", "warn");
    c
}

/// Runs the binary to completion and returns (exit code, stderr).
fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .expect("run redlock-proxy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_config_error(cmd: &mut Command, option: &str) {
    let (code, stderr) = run(cmd);
    assert_eq!(code, 2, "exit code for {option}: stderr {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].contains(option), "{option} not named in: {stderr}");
    assert!(
        lines[0].starts_with("redlock-proxy: invalid configuration"),
        "{stderr}"
    );
}

#[test]
fn configuration_errors_name_the_option_and_exit_2() {
    let ok_master = "redis://127.0.0.1:6379";
    assert_config_error(
        proxy_cmd().args(["--master", "not-a-url"]),
        "redlock.masters",
    );
    assert_config_error(
        proxy_cmd().args(["--master", "http://h:1"]),
        "redlock.masters",
    );
    assert_config_error(&mut proxy_cmd(), "redlock.masters");
    assert_config_error(
        proxy_cmd()
            .args(["--master", ok_master])
            .env("REDLOCK_PROXY_NODE_TIMEOUT", "fast"),
        "redlock.node_timeout",
    );
    assert_config_error(
        proxy_cmd()
            .args(["--master", ok_master])
            .env("REDLOCK_PROXY_MAX_CLIENTS", "0"),
        "server.max_clients",
    );
    assert_config_error(
        proxy_cmd()
            .args(["--master", ok_master])
            .env("REDLOCK_PROXY_BOGUS", "1"),
        "REDLOCK_PROXY_BOGUS",
    );
    assert_config_error(
        proxy_cmd().args(["--master", ok_master, "--listen", "nonsense"]),
        "server.listen",
    );
    assert_config_error(
        proxy_cmd().args(["--master", ok_master, "--passthrough", "redis://h:1/x"]),
        "passthrough.url",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad_syntax = dir.path().join("syntax.toml");
    std::fs::write(&bad_syntax, "[server]\nlisten = \n").unwrap();
    assert_config_error(proxy_cmd().arg("--config").arg(&bad_syntax), "syntax.toml");
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[server]\nlistne = \"127.0.0.1:1\"\n").unwrap();
    assert_config_error(proxy_cmd().arg("--config").arg(&typo), "server.listne");
    let wrong_type = dir.path().join("type.toml");
    std::fs::write(&wrong_type, "[redlock]\ndrift_factor = \"a lot\"\n").unwrap();
    assert_config_error(
        proxy_cmd().arg("--config").arg(&wrong_type),
        "redlock.drift_factor",
    );
    assert_config_error(
        proxy_cmd().args(["--config", "/nonexistent.toml"]),
        "--config",
    );
    // Clap's own errors use exit code 2 as well.
    let (code, _) = run(proxy_cmd().args(["--master", ok_master, "--log-format", "xml"]));
    assert_eq!(code, 2);
}

fn wait_for_port(addr: &str, child: &mut Child) {
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("proxy exited early: {status}");
        }
        assert!(Instant::now() < deadline, "proxy did not listen on {addr}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the child to exit, failing after `within`.
fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work_and_exits_0() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = proxy_cmd();
    cmd.args(["--listen", &addr, "--passthrough", &backend.url()]);
    for m in &masters {
        cmd.args(["--master", &m.url()]);
    }
    let mut child = cmd
        .env("REDLOCK_PROXY_SHUTDOWN_TIMEOUT", "2s")
        .env("REDLOCK_PROXY_NODE_TIMEOUT", "1s")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(&addr, &mut child);
    let sock: std::net::SocketAddr = addr.parse().unwrap();
    let mut idle = RawClient::connect(sock).await;
    assert_eq!(idle.cmd_str(&["PING"]).await, "+PONG\r\n");
    let mut blocked = RawClient::connect(sock).await;
    blocked.send(&enc(&["BLPOP", "never", "0"])).await;
    // A lock operation that will take a while: two masters are paused.
    masters[0].pause();
    masters[1].pause();
    let mut locking = RawClient::connect(sock).await;
    locking
        .send(&enc(&["SET", "lock:term", "t", "NX", "PX", "30000"]))
        .await;
    poll(|| masters[2].get("lock:term").is_some()).await;
    let sent = Instant::now();
    signal(child.id(), libc::SIGTERM);
    // The lock operation is finished, not cut: the client gets its answer.
    assert_eq!(text(&locking.read().await), "$-1\r\n");
    let status = wait_exit(&mut child, Duration::from_secs(2) + Duration::from_secs(3));
    assert!(status.success(), "{status}");
    let took = sent.elapsed();
    assert!(idle.closed().await);
    assert!(blocked.closed().await);
    assert!(
        took >= Duration::from_millis(900),
        "exited before the operation finished: {took:?}"
    );
    masters[0].resume();
    masters[1].resume();
    // The refused acquisition was cleaned up on the paused masters too.
    poll(|| masters.iter().all(|m| m.get("lock:term").is_none())).await;
}

/// Redis servers whose working directory is under `root` (dev mode's children).
fn redis_children_under(root: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'));
        if cwd.starts_with(root) && !zombie {
            pids.push(pid);
        }
    }
    pids
}

struct Dev {
    child: Child,
    tmp: tempfile::TempDir,
    addr: String,
    /// What it printed before `Ready`.
    banner: String,
    /// Its log.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

fn start_dev(extra: &[&str]) -> Dev {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = proxy_cmd()
        .args(["dev", "--listen", &addr])
        .args(extra)
        .env("TMPDIR", tmp.path())
        // What a newcomer sees: dev mode's own log level.
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_stderr(&mut child);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // A hang guard: cluster voters take seconds of gossip to form (15 s at
    // most each, all at once), on a loaded host more.
    let deadline = Instant::now() + 6 * WAIT;
    let mut banner = String::new();
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("dev mode prints Ready");
        if line.contains("Ready") {
            assert!(line.contains(&format!("redis-cli -p {port}")), "{line}");
            break;
        }
        banner.push_str(&line);
        banner.push('\n');
    }
    Dev {
        child,
        tmp,
        addr,
        banner,
        log,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_and_leaves_no_orphans_on_sigterm() {
    let mut dev = start_dev(&["--masters", "3"]);
    let children = redis_children_under(dev.tmp.path());
    assert_eq!(children.len(), 4, "3 masters and a passthrough backend");
    let mut c = RawClient::connect(dev.addr.parse().unwrap()).await;
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    assert_eq!(
        c.cmd_str(&["SET", "lock:dev", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["SET", "k", "v"]).await, "+OK\r\n");
    // Its masters run without persistence, by choice: said once, not warned
    // about per master.
    assert!(dev.banner.contains("without persistence"), "{}", dev.banner);
    poll(|| dev.log.lock().unwrap().matches("as in dev mode").count() == 3).await;
    assert!(
        !dev.log.lock().unwrap().contains("WARN"),
        "{}",
        dev.log.lock().unwrap()
    );
    signal(dev.child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut dev.child, WAIT).success());
    poll(|| redis_children_under(dev.tmp.path()).is_empty()).await;
}

/// `dev --cluster-masters`: each voter a small Redis Cluster, started and
/// formed by the proxy itself; locks are voted on the shard of each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_with_cluster_voters() {
    let mut dev = start_dev(&["--masters", "3", "--cluster-masters"]);
    assert_eq!(
        redis_children_under(dev.tmp.path()).len(),
        10,
        "3 voters of 3 shards, and a passthrough backend"
    );
    let mut c = RawClient::connect(dev.addr.parse().unwrap()).await;
    for i in 0..10 {
        let key = format!("lock:dev{i}");
        assert_eq!(
            c.cmd_str(&["SET", &key, "t", "NX", "PX", "10000"]).await,
            "+OK\r\n",
            "{key}"
        );
    }
    let info = c.cmd_str(&["INFO", "proxy"]).await;
    assert!(
        info.contains("master2:cluster=") && info.contains("shards=3"),
        "{info}"
    );
    signal(dev.child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut dev.child, WAIT).success());
    poll(|| redis_children_under(dev.tmp.path()).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_children_die_with_a_killed_proxy() {
    let mut dev = start_dev(&["--masters", "1"]);
    assert_eq!(redis_children_under(dev.tmp.path()).len(), 2);
    signal(dev.child.id(), libc::SIGKILL);
    let _ = wait_exit(&mut dev.child, WAIT);
    poll(|| redis_children_under(dev.tmp.path()).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_stops_its_children_when_the_proxy_cannot_start() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (code, stderr) = run(proxy_cmd()
        .args(["dev", "--listen", &addr])
        .env("TMPDIR", tmp.path()));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot listen"), "{stderr}");
    poll(|| redis_children_under(tmp.path()).is_empty()).await;
}

#[test]
fn dev_mode_explains_how_to_install_redis_server() {
    let empty = tempfile::tempdir().unwrap();
    let (code, stderr) = run(proxy_cmd()
        .arg("dev")
        .env("PATH", empty.path())
        .env_remove("REDIS_SERVER"));
    assert_eq!(code, 1);
    assert!(stderr.contains("apt-get install redis-server"), "{stderr}");
    let missing = PathBuf::from("/nonexistent/redis-server");
    let (code, stderr) = run(proxy_cmd().arg("dev").env("REDIS_SERVER", &missing));
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/redis-server"), "{stderr}");
}

/// The binary's stderr, collected line by line as it runs.
fn collect_stderr(child: &mut Child) -> std::sync::Arc<std::sync::Mutex<String>> {
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = std::sync::Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let mut l = sink.lock().unwrap();
            l.push_str(&line);
            l.push('\n');
        }
    });
    log
}

fn config_file(
    listen: &str,
    masters: &[RedisServer],
    backend: &RedisServer,
    patterns: &[&str],
) -> String {
    let masters: Vec<String> = masters.iter().map(|m| format!("{:?}", m.url())).collect();
    let patterns: Vec<String> = patterns.iter().map(|p| format!("{p:?}")).collect();
    format!(
        "[server]\nlisten = {listen:?}\n[passthrough]\nurl = {:?}\n[redlock]\nmasters = [{}]\nlock_patterns = [{}]\n",
        backend.url(),
        masters.join(", "),
        patterns.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_changes_the_lock_patterns_while_clients_stay_connected() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, config_file(&addr, &masters, &backend, &["lock:*"])).unwrap();
    let mut child = proxy_cmd()
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = collect_stderr(&mut child);
    wait_for_port(&addr, &mut child);
    let mut c = RawClient::connect(addr.parse().unwrap()).await;
    // Not a lock key yet: it goes to the backend.
    assert_eq!(
        c.cmd_str(&["SET", "mutex:a", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(backend.get("mutex:a").as_deref(), Some("t"));

    let reloaded = config_file(&addr, &masters, &backend, &["lock:*", "mutex:*"]);
    std::fs::write(&file, reloaded).unwrap();
    signal(child.id(), libc::SIGHUP);
    poll(|| log.lock().unwrap().contains("configuration reloaded")).await;
    // The same connection: now a lock key, run on the masters.
    assert_eq!(
        c.cmd_str(&["SET", "mutex:b", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&masters, "mutex:b", "t") == masters.len()).await;
    assert_eq!(backend.get("mutex:b"), None);

    // A broken file keeps the running configuration.
    std::fs::write(&file, "[redlock]\nnode_timeout = \"soon\"\n").unwrap();
    signal(child.id(), libc::SIGHUP);
    poll(|| log.lock().unwrap().contains("keeping the running one")).await;
    assert!(log.lock().unwrap().contains("redlock.node_timeout"));
    assert_eq!(
        c.cmd_str(&["SET", "mutex:c", "t", "NX", "PX", "10000"])
            .await,
        "+OK\r\n"
    );
    poll(|| holders_on(&masters, "mutex:c", "t") == masters.len()).await;
    assert_eq!(c.cmd_str(&["PING"]).await, "+PONG\r\n");
    signal(child.id(), libc::SIGTERM);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    // Logs to a pipe carry no terminal colour codes.
    assert!(
        !log.lock().unwrap().contains('\x1b'),
        "colour codes in a piped log"
    );
}

/// `ENV`, `COPY`, `EXPOSE`, `USER`, `HEALTHCHECK` and `ENTRYPOINT` of the
/// Dockerfile, as (instruction, rest) with continuation lines joined.
fn dockerfile() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    joined
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(' '))
        .map(|(i, rest)| (i.to_string(), rest.trim().to_string()))
        .collect()
}

/// What a container engine would run, checked without one: the paths exist in
/// the image, the environment names are the binary's, the health check works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_files_match_the_binary() {
    let lines = dockerfile();
    let get = |i: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(k, _)| k == i)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let copies = get("COPY");
    let entry = get("ENTRYPOINT");
    assert_eq!(entry, [r#"["/usr/local/bin/redlock-proxy"]"#]);
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with("/redlock-proxy /usr/local/bin/redlock-proxy"))
    );
    let user = get("USER");
    assert!(user.len() == 1 && user[0] != "root" && user[0] != "0");
    // Every ENV is an option the binary reads; the config file is in the image.
    let env: Vec<(String, String)> = get("ENV")
        .join(" ")
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let known: Vec<&str> = redlock_proxy::config::env_names().collect();
    for (k, v) in &env {
        let name = k.strip_prefix("REDLOCK_PROXY_").unwrap();
        assert!(
            name == "CONFIG" || known.contains(&name),
            "{k} is not an option"
        );
        if name == "CONFIG" {
            assert!(
                copies.iter().any(|c| c.ends_with(&format!(" {v}"))),
                "{v} not copied"
            );
        }
    }
    let port_of = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.rsplit_once(':'))
            .map(|(_, p)| p.to_string())
            .unwrap()
    };
    let expose = get("EXPOSE").join(" ");
    for name in ["REDLOCK_PROXY_LISTEN", "REDLOCK_PROXY_METRICS_LISTEN"] {
        assert!(
            expose.split_whitespace().any(|p| p == port_of(name)),
            "{name} not exposed"
        );
    }
    // The image's environment, with the repository's config file, is valid.
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/redlock-proxy.toml");
    let mut check = proxy_cmd();
    for (k, v) in &env {
        check.env(k, v);
    }
    check
        .env("REDLOCK_PROXY_CONFIG", &config)
        .env(
            "REDLOCK_PROXY_MASTERS",
            "redis://a:1,redis://b:1,redis://c:1",
        )
        .arg("check-config");
    let out = check.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("metrics_listen=0.0.0.0:9121"));

    // The health check command, against a running proxy's endpoint.
    let health = get("HEALTHCHECK").join(" ");
    let cmd = health.split_once("CMD").unwrap().1.trim();
    let args: Vec<String> = cmd
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|a| a.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(args[0], "/usr/local/bin/redlock-proxy");
    let ops = free_port();
    let h = Harness::start_with(3, |c| c.server.metrics_listen = format!("127.0.0.1:{ops}")).await;
    let url = args[3].replace("127.0.0.1:9121", &format!("127.0.0.1:{ops}"));
    let status = proxy_cmd().args(&args[1..3]).arg(&url).status().unwrap();
    assert!(status.success());
    let nothing = format!("http://127.0.0.1:{}/healthz", free_port());
    let status = proxy_cmd()
        .args(&args[1..3])
        .arg(&nothing)
        .status()
        .unwrap();
    assert!(!status.success());
    drop(h);

    // The compose file, parsed by a YAML library, passes known options only.
    let py = crate::clients::client_env("py-ops").join("bin/python");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python/compose_check.py");
    let compose = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/compose.yaml");
    let out = std::process::Command::new(py)
        .arg(script)
        .arg(&compose)
        .env("ENV_NAMES", known.join(","))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and what it passes is a valid configuration.
    let mut check = proxy_cmd();
    for kv in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let (k, v) = kv.split_once('=').unwrap();
        check.env(k, v);
    }
    let out = check.arg("check-config").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// TLS files are read and checked at start: each problem stops the proxy with
/// exit code 2 and one line naming the option.
#[test]
fn tls_configuration_errors_name_the_option() {
    let pki = crate::common::pki::Pki::new();
    let garbage = pki.file(
        "garbage.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    let text = pki.file("text.pem", "hello\n");
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let base = || {
        let mut c = proxy_cmd();
        c.args([
            "--master",
            "redis://127.0.0.1:6379",
            "--tls-listen",
            "127.0.0.1:0",
        ]);
        c
    };
    let with = |args: &[String]| {
        let mut c = base();
        c.args(args);
        c
    };
    let (cert, key, ca) = (p(&pki.server_cert), p(&pki.server_key), p(&pki.ca));
    let s = |v: &str| v.to_string();
    // --tls-listen without a certificate and key.
    assert_config_error(&mut base(), "tls.cert_file");
    assert_config_error(
        &mut with(&[s("--tls-cert-file"), cert.clone()]),
        "tls.key_file",
    );
    // A missing file, a garbage certificate, a file without a key, a key that
    // is not the certificate's: (certificate, key, the option at fault).
    let bad_pairs = [
        (s("/nonexistent.pem"), key.clone(), "tls.cert_file"),
        (p(&garbage), key.clone(), "tls.cert_file"),
        (cert.clone(), p(&text), "tls.key_file"),
        (cert.clone(), p(&pki.client_key), "tls.key_file"),
    ];
    for (c, k, option) in bad_pairs {
        assert_config_error(
            &mut with(&[s("--tls-cert-file"), c, s("--tls-key-file"), k]),
            option,
        );
    }
    // Client authentication without a CA; a client certificate without its key.
    let ok = [
        s("--tls-cert-file"),
        cert.clone(),
        s("--tls-key-file"),
        key.clone(),
    ];
    let mut args = ok.to_vec();
    args.extend([s("--tls-auth-clients"), s("yes")]);
    assert_config_error(&mut with(&args), "tls.auth_clients");
    let mut args = ok.to_vec();
    args.extend([s("--tls-client-cert-file"), p(&pki.client_cert)]);
    assert_config_error(&mut with(&args), "tls.client_key_file");
    let mut args = ok.to_vec();
    args.extend([s("--tls-ca-cert-file"), p(&text)]);
    assert_config_error(&mut with(&args), "tls.ca_cert_file");
    // From the environment, the error says where the value came from.
    let (code, stderr) = run(base()
        .env("REDLOCK_PROXY_TLS_CERT_FILE", "/nonexistent.pem")
        .env("REDLOCK_PROXY_TLS_KEY_FILE", &key));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("tls.cert_file (from REDLOCK_PROXY_TLS_CERT_FILE)"),
        "{stderr}"
    );
    // The plain listener off needs the TLS one.
    assert_config_error(
        proxy_cmd().args(["--master", "redis://127.0.0.1:6379", "--listen", ""]),
        "server.listen",
    );

    // Good files pass; so do RSA (PKCS#1) and EC (SEC1) keys made by openssl.
    let mut args = ok.to_vec();
    args.extend([
        s("--tls-ca-cert-file"),
        ca,
        s("--tls-auth-clients"),
        s("optional"),
        s("check-config"),
    ]);
    let (code, stderr) = run(&mut with(&args));
    assert_eq!(code, 0, "{stderr}");
    for (name, genkey) in [
        ("rsa", vec!["genrsa", "-traditional", "-out", "KEY", "2048"]),
        (
            "ec",
            vec![
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "KEY",
            ],
        ),
    ] {
        let key = pki.dir.path().join(format!("{name}.key"));
        let cert = pki.dir.path().join(format!("{name}.pem"));
        let args: Vec<String> = genkey.iter().map(|a| a.replace("KEY", &p(&key))).collect();
        assert!(
            Command::new("openssl")
                .args(&args)
                .status()
                .unwrap()
                .success()
        );
        let first = std::fs::read_to_string(&key).unwrap();
        let header = if name == "rsa" {
            "BEGIN RSA PRIVATE KEY"
        } else {
            "BEGIN EC PRIVATE KEY"
        };
        assert!(first.contains(header), "{first}");
        let status = Command::new("openssl")
            .args([
                "req",
                "-new",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-key",
            ])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .status()
            .unwrap();
        assert!(status.success());
        let (code, stderr) = run(&mut with(&[
            s("--tls-cert-file"),
            p(&cert),
            s("--tls-key-file"),
            p(&key),
            s("check-config"),
        ]));
        assert_eq!(code, 0, "{name}: {stderr}");
    }
}
