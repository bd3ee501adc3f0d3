//! The proxy as a process of its own (the binary cargo built for the tests),
//! so its resident memory can be measured apart from the test's.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{RedisServer, WAIT, free_port};

/// A running `redlock-proxy` process; killed on drop.
pub struct ProxyProcess {
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    child: Child,
}

impl ProxyProcess {
    /// Starts the proxy in front of `masters` and `backend`, with the extra
    /// `REDLOCK_PROXY_*` settings in `env`, and waits until it answers PING.
    pub fn start(
        masters: &[RedisServer],
        backend: &RedisServer,
        env: &[(&str, &str)],
    ) -> ProxyProcess {
        let port = free_port();
        let metrics = free_port();
        // REDLOCK_TEST_BIN runs the tests against another build (to show
        // what an older one did).
        let bin = std::env::var("REDLOCK_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_redlock-proxy").to_string());
        let mut cmd = Command::new(bin);
        cmd.args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(["--passthrough", &backend.url()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for m in masters {
            cmd.args(["--master", &m.url()]);
        }
        for (k, v) in env {
            cmd.env(format!("REDLOCK_PROXY_{k}"), v);
        }
        let child = cmd.spawn().expect("spawn redlock-proxy");
        let p = ProxyProcess {
            addr: ([127, 0, 0, 1], port).into(),
            metrics: ([127, 0, 0, 1], metrics).into(),
            child,
        };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(p.addr) {
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                    return p;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the proxy process, in bytes.
    pub fn rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kib: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap();
        kib * 1024
    }

    /// One value of the Prometheus endpoint: the first sample line starting with `name`.
    pub fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the metrics"))
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
