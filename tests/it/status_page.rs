//! The status page (`GET /` on the operations endpoint), loaded in a real
//! browser: headless Chromium (Debian's, which the test script installs)
//! against the proxy binary with one master down and one quarantined. The
//! test reads the page's DOM as the browser built it, and takes a screenshot.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_redlock-proxy");

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Chromium's output for `url` with `args` (`--dump-dom`, `--screenshot=...`).
fn chromium(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("chromium (scripts/test.sh installs it)");
    assert!(out.status.success(), "chromium {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_a_master_down_and_one_quarantined() {
    let mut masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    let (port, ops) = (free_port(), free_port());
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{ops}")])
        .args(["--passthrough", &backend.url()]);
    for m in &masters {
        cmd.args(["--master", &m.url()]);
    }
    let _proxy = Proxy(
        cmd.env("RUST_LOG", "warn")
            .env("REDLOCK_PROXY_MAX_TTL", "120s")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(ops, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the proxy never got ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut c = RawClient::connect(([127, 0, 0, 1], port).into()).await;
    assert_eq!(
        c.cmd_str(&["SET", "lock:page", "t", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    // Master 0 goes down; master 1 restarts (a new run_id): quarantined.
    let addr = |m: &RedisServer| format!("127.0.0.1:{}", m.port);
    let (down, quarantined, up) = (addr(&masters[0]), addr(&masters[1]), addr(&masters[2]));
    masters[0].kill();
    masters[1].restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info = c.cmd_str(&["INFO", "proxy"]).await;
        let line = |i: usize| {
            let start = format!("master{i}:");
            info.lines()
                .find(|l| l.starts_with(&start))
                .unwrap_or_default()
                .to_string()
        };
        if line(0).contains("state=down") && line(1).contains("quarantined=1") {
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let url = format!("http://127.0.0.1:{ops}/");
    let dom = chromium(&url, &["--dump-dom"]);
    let row = |addr: &str| {
        dom.split("<tr")
            .find(|r| r.contains(&format!(">{addr}<")))
            .unwrap_or_else(|| panic!("no row for {addr} in {dom}"))
            .to_string()
    };
    assert!(row(&down).contains("data-state=\"down\""), "{}", row(&down));
    let q = row(&quarantined);
    assert!(
        q.contains("data-state=\"quarantined\"") && q.contains("restarted"),
        "{q}"
    );
    assert!(row(&up).contains("data-state=\"up\""), "{dom}");
    // The backend, the clients, the operations, and the warnings logged.
    assert!(dom.contains(&format!(">{}<", backend.url())), "{dom}");
    assert!(dom.contains("<span id=\"clients\">1</span>"), "{dom}");
    assert!(dom.contains("id=\"ops\""), "{dom}");
    let warnings = dom.split("id=\"warnings\"").nth(1).unwrap_or_default();
    assert!(warnings.contains("master quarantined"), "{dom}");
    // Readable on a phone: it scales to the screen's width.
    assert!(dom.contains("name=\"viewport\""), "{dom}");

    let shot: PathBuf = std::env::temp_dir().join(format!("status-{ops}.png"));
    chromium(
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1100,760",
        ],
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if std::env::var_os("UPDATE_STATUS_SCREENSHOT").is_some() {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/src/status-page.png");
        std::fs::copy(&shot, docs).unwrap();
    }
    let _ = std::fs::remove_file(shot);
}
