//! Test harness: real `redis-server` processes on free ports, the proxy
//! in-process on port 0, and a raw RESP client. Everything is torn down on drop,
//! so a failing test leaves no process behind.

pub mod cluster;
pub mod fake_clock;
pub mod pki;
pub mod relay;
pub mod sentinel;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use bytes::BytesMut;
use redlock_proxy::config::RedisUrl;
use redlock_proxy::protocol::ReplyScanner;
use redlock_proxy::{Config, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// A timeout no test waits out: a test that sets `node_timeout` or
/// `op_timeout` to it and gets its answer within [`WAIT`] has proved that the
/// operation did not wait for that timeout, on however loaded a machine —
/// where a bound like "under 300 ms" would only measure the machine.
pub const PATIENT: Duration = Duration::from_secs(120);

/// A TTL whose node-timeout cap (a tenth of it) is above [`PATIENT`].
pub const LONG_TTL: &str = "1200000";

/// Acquisitions wait [`PATIENT`] for votes, and other operations for a decision.
pub fn patient(c: &mut Config) {
    c.redlock.node_timeout = PATIENT;
    c.redlock.op_timeout = PATIENT;
}

/// The compare-and-delete release script, as the common client libraries send it.
pub const RELEASE: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;
/// SHA1 of [`RELEASE`], for EVALSHA.
pub const RELEASE_SHA: &str = "b70c2384248f88e6b75b9f89241a180f856ad852";
/// The extend script: compare, then PEXPIRE.
pub const EXTEND: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("pexpire",KEYS[1],ARGV[2]) else return 0 end"#;

/// The redis-server binary.
pub fn redis_server_bin() -> PathBuf {
    redlock_proxy::dev::find_redis_server(
        std::env::var_os("REDIS_SERVER")
            .map(PathBuf::from)
            .as_deref(),
    )
    .unwrap_or_else(|e| panic!("{e} (scripts/test.sh installs it)"))
}

/// A free loopback port, never one handed out before in this process: the
/// tests count log lines that name a server's port, and a port an earlier
/// test's server had would bring that test's lines along.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN
            .lock()
            .unwrap()
            .get_or_insert_with(Default::default)
            .insert(port)
        {
            return port;
        }
    }
}

/// A redis-server child process.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    extra: Vec<String>,
    /// Environment of the process (a fake clock's preload).
    env: Vec<(String, String)>,
    /// TLS only (`--port 0 --tls-port`): the CA, and the client certificate
    /// the test presents.
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl RedisServer {
    /// Starts a redis-server on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a redis-server with extra `--option value` arguments.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_with_env(extra, Vec::new())
    }

    /// Starts a redis-server whose wall clock `clock` sets.
    pub fn start_with_clock(clock: &fake_clock::FakeClock) -> RedisServer {
        Self::start_with_env(&[], clock.env())
    }

    fn start_with_env(extra: &[&str], env: Vec<(String, String)>) -> RedisServer {
        for _ in 0..5 {
            let mut s = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                env: env.clone(),
                tls: None,
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server did not start");
    }

    /// A TLS-only redis-server with the test PKI's server certificate;
    /// `auth_clients`: it requires client certificates signed by the CA.
    pub fn start_tls(pki: &pki::Pki, auth_clients: bool) -> RedisServer {
        Self::start_tls_with(pki, auth_clients, &[])
    }

    /// [`start_tls`](Self::start_tls) with extra `--option value` arguments.
    pub fn start_tls_with(pki: &pki::Pki, auth_clients: bool, more: &[&str]) -> RedisServer {
        let files = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let mut extra = vec![
            "--tls-cert-file".to_string(),
            files(&pki.server_cert),
            "--tls-key-file".into(),
            files(&pki.server_key),
            "--tls-ca-cert-file".into(),
            files(&pki.ca),
            "--tls-auth-clients".into(),
            if auth_clients { "yes" } else { "no" }.into(),
        ];
        extra.extend(more.iter().map(|s| s.to_string()));
        for _ in 0..5 {
            let mut s = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().unwrap(),
                extra: extra.to_vec(),
                env: Vec::new(),
                tls: Some((
                    pki.ca.clone(),
                    pki.client_cert.clone(),
                    pki.client_key.clone(),
                )),
            };
            if s.spawn() {
                return s;
            }
        }
        panic!("redis-server (TLS) did not start");
    }

    /// `redis-cli` over TLS to this server (a TLS-only one), its output.
    pub fn tls_cli(&self, args: &[&str]) -> String {
        let (ca, cert, key) = self.tls.as_ref().expect("a TLS server");
        let out = Command::new("redis-cli")
            .args(["--tls", "--cacert"])
            .arg(ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    fn spawn(&mut self) -> bool {
        let mut ports = vec![];
        if self.tls.is_some() {
            // TLS only: the plain port closed, the TLS one where it would be.
            ports = vec![
                "--port".to_string(),
                "0".into(),
                "--tls-port".into(),
                self.port.to_string(),
            ];
        }
        let child = Command::new(redis_server_bin())
            .args(redlock_proxy::dev::redis_server_args(
                self.port,
                self.dir.path(),
            ))
            .args(&ports)
            // DEBUG SLEEP stalls a master in the tests; Redis 7 refuses DEBUG by default.
            .args(["--enable-debug-command", "local"])
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Whether something answers PING on the port (an auth error counts; a
    /// TLS port only needs to accept).
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        if self.tls.is_some() {
            return std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        }
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 64];
        s.write_all(b"PING\r\n").is_ok() && matches!(s.read(&mut buf), Ok(n) if n > 0)
    }

    /// The URL, with the password if the server has one.
    pub fn url(&self) -> String {
        let pass = self
            .extra
            .iter()
            .position(|a| a == "--requirepass")
            .and_then(|i| self.extra.get(i + 1));
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match pass {
            Some(p) => format!(
                "{scheme}://:{}@127.0.0.1:{}",
                p.replace('@', "%40"),
                self.port
            ),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// Whether the process is running (not killed by the test).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends one command with a fresh connection and returns the reply.
    pub fn try_query(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let client = redis::Client::open(self.url())?;
        let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn)
    }

    pub fn query(&self, args: &[&str]) -> redis::Value {
        self.try_query(args)
            .unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// A command's reply as text (bulk and simple strings as they are).
    pub fn query_str(&self, args: &[&str]) -> String {
        match self.query(args) {
            redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            redis::Value::SimpleString(s) => s,
            redis::Value::VerbatimString { text, .. } => text,
            other => format!("{other:?}"),
        }
    }

    /// `GET key` on this server, as a string.
    pub fn get(&self, key: &str) -> Option<String> {
        match self.query(&["GET", key]) {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            redis::Value::Nil => None,
            other => panic!("GET returned {other:?}"),
        }
    }

    pub fn pttl(&self, key: &str) -> i64 {
        match self.query(&["PTTL", key]) {
            redis::Value::Int(i) => i,
            other => panic!("PTTL returned {other:?}"),
        }
    }

    /// Kills the server (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling a child of the test.
    #[allow(unsafe_code, reason = "pausing and resuming redis-server children")]
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            signal(c.id(), libc::SIGCONT);
        }
        self.kill();
    }
}

/// Masters, a passthrough backend and the proxy in front of them.
pub struct Harness {
    pub masters: Vec<RedisServer>,
    pub backend: RedisServer,
    pub addr: SocketAddr,
    /// The TLS listener, when configured.
    pub tls_addr: Option<SocketAddr>,
    pub shared: std::sync::Arc<redlock_proxy::server::Shared>,
    shutdown: CancellationToken,
}

impl Harness {
    /// `n` masters and the default configuration.
    pub async fn start(n: usize) -> Harness {
        Self::start_with(n, |_| {}).await
    }

    /// `n` masters, with the configuration adjusted by `tweak`.
    pub async fn start_with(n: usize, tweak: impl FnOnce(&mut Config)) -> Harness {
        let masters: Vec<RedisServer> = (0..n).map(|_| RedisServer::start()).collect();
        Self::with_masters(masters, tweak).await
    }

    /// The proxy in front of `masters` (started by the test) and a new backend.
    pub async fn with_masters(
        masters: Vec<RedisServer>,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let backend = RedisServer::start();
        let h = Self::around(masters, backend, tweak).await;
        h.wait_masters_up().await;
        h
    }

    /// The proxy in front of `masters` and `backend` (both started by the
    /// test), without waiting for the masters' connections.
    pub async fn around(
        masters: Vec<RedisServer>,
        backend: RedisServer,
        tweak: impl FnOnce(&mut Config),
    ) -> Harness {
        let shutdown = CancellationToken::new();
        let (addr, tls_addr, shared) = spawn_proxy_tls(&masters, &backend, &shutdown, tweak).await;
        Harness {
            masters,
            backend,
            addr,
            tls_addr,
            shared,
            shutdown,
        }
    }

    /// Waits until the proxy's connection to every running master is up
    /// (a cluster voter: its slot map known and every shard up).
    pub async fn wait_masters_up(&self) {
        use redlock_proxy::redlock::master::MasterState;
        poll(|| {
            let engine = self.shared.engine();
            engine
                .masters()
                .iter()
                .all(|m| m.state() == MasterState::Up)
                && engine.voters().iter().all(|v| v.state() == MasterState::Up)
        })
        .await;
    }

    pub async fn client(&self) -> RawClient {
        RawClient::connect(self.addr).await
    }
}

/// A harness whose masters sit behind relays the test controls.
pub struct Relayed {
    pub h: Harness,
    pub masters: Vec<RedisServer>,
    pub relays: Vec<relay::Relay>,
}

/// 3 masters, each behind a relay, and the proxy (configured by `tweak`).
pub async fn behind_relays(tweak: impl FnOnce(&mut Config)) -> Relayed {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let mut relays = Vec::new();
    for m in &masters {
        relays.push(relay::Relay::start(m.port).await);
    }
    let urls: Vec<String> = relays.iter().map(|r| r.url()).collect();
    let h = Harness::start_with(0, move |c| {
        c.redlock.masters = urls.iter().map(|u| RedisUrl::parse(u).unwrap()).collect();
        tweak(c);
    })
    .await;
    h.wait_masters_up().await;
    Relayed { h, masters, relays }
}

/// Starts a proxy in this process on port 0, in front of `masters` and `backend`;
/// it stops when `shutdown` is cancelled.
pub async fn spawn_proxy(
    masters: &[RedisServer],
    backend: &RedisServer,
    shutdown: &CancellationToken,
    tweak: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    std::sync::Arc<redlock_proxy::server::Shared>,
    tokio::task::JoinHandle<()>,
) {
    let mut config = test_config(masters, backend);
    tweak(&mut config);
    let proxy = Proxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().unwrap();
    let shared = proxy.shared();
    let task = tokio::spawn(proxy.run(shutdown.clone()));
    (addr, shared, task)
}

/// A configuration on a free port with these masters and this backend.
fn test_config(masters: &[RedisServer], backend: &RedisServer) -> Config {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.passthrough.url = RedisUrl::parse(&backend.url()).unwrap();
    config.redlock.masters = masters
        .iter()
        .map(|m| RedisUrl::parse(&m.url()).unwrap())
        .collect();
    config
}

/// [`spawn_proxy`], also returning the TLS listener's address.
pub async fn spawn_proxy_tls(
    masters: &[RedisServer],
    backend: &RedisServer,
    shutdown: &CancellationToken,
    tweak: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    Option<SocketAddr>,
    std::sync::Arc<redlock_proxy::server::Shared>,
) {
    let mut config = test_config(masters, backend);
    tweak(&mut config);
    let proxy = Proxy::bind(config).await.expect("bind proxy");
    let addr = proxy.local_addr().unwrap();
    let tls = proxy.tls_addr();
    let shared = proxy.shared();
    tokio::spawn(proxy.run(shutdown.clone()));
    (addr, tls, shared)
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after [`WAIT`].
pub async fn poll(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`poll`] for a condition that must be awaited.
pub async fn poll_async<F: std::future::Future<Output = bool>>(mut cond: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the proxy's `INFO proxy` until `holds` says yes; returns that
/// reply. Panics after [`WAIT`] with the last one.
pub async fn until_info(addr: SocketAddr, holds: impl Fn(&str) -> bool) -> String {
    let mut c = RawClient::connect(addr).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let info = c.cmd_str(&["INFO", "proxy"]).await;
        if holds(&info) {
            return info;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "INFO proxy not as expected within {WAIT:?}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A client speaking raw RESP, reading replies frame by frame.
pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
    scanner: ReplyScanner,
}

/// Encodes a command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

pub fn enc(args: &[&str]) -> Vec<u8> {
    let v: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    encode(&v)
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        Self::from_stream(TcpStream::connect(addr).await.expect("connect to proxy"))
    }

    /// A client over an already connected stream.
    pub fn from_stream(stream: TcpStream) -> RawClient {
        RawClient {
            stream,
            buf: BytesMut::new(),
            scanner: ReplyScanner::new(100_000),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one reply frame (raw bytes); panics after [`WAIT`].
    pub async fn read(&mut self) -> Vec<u8> {
        self.try_read(WAIT).await.expect("a reply")
    }

    /// Reads one reply, or `None` if the connection closed or nothing came in `wait`.
    pub async fn try_read(&mut self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(info) = self.scanner.scan(&self.buf).expect("valid reply") {
                return Some(self.buf.split_to(info.len).to_vec());
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Sends a command and reads its reply.
    pub async fn cmd(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&enc(args)).await;
        self.read().await
    }

    /// Sends a command and reads its reply as text (CRLF shown as `\r\n`).
    pub async fn cmd_str(&mut self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.cmd(args).await).into_owned()
    }

    /// The bytes read and not taken as replies (after [`closed`](Self::closed):
    /// everything that came before the end).
    pub fn rest(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf).to_vec()
    }

    /// Whether the proxy closed the connection (EOF within [`WAIT`], no more data).
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Text of a reply, for assertions.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The proxy's log lines (every proxy in this test binary logs here once
/// a test has called this).
pub fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        struct Capture;
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                logs().lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let _ = tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_env_filter("info")
            .try_init();
        Mutex::new(Vec::new())
    })
}

pub fn log_lines_about(needle: &str, port: u16) -> usize {
    log_lines(needle, port).len()
}

/// The log lines that contain `needle` and name `port` (as `:port`, not a
/// longer number that starts with it).
pub fn log_lines(needle: &str, port: u16) -> Vec<String> {
    let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    let tag = format!(":{port}");
    logs.lines()
        .filter(|l| {
            l.contains(needle)
                && l.match_indices(&tag)
                    .any(|(i, _)| !l[i + tag.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_string)
        .collect()
}

/// How many running masters hold `key` with the value `token`.
pub fn holders_on(masters: &[RedisServer], key: &str, token: &str) -> usize {
    masters
        .iter()
        .filter(|m| m.is_running() && m.get(key).as_deref() == Some(token))
        .count()
}

/// How many of the harness's running masters hold `key` with the value `token`.
pub fn holders(h: &Harness, key: &str, token: &str) -> usize {
    holders_on(&h.masters, key, token)
}
