//! A Sentinel-managed master for the tests: a master, one replica, and
//! three sentinels (`redis-server --sentinel`) watching it, on free ports.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{RedisServer, free_port, redis_server_bin};

/// The master's name at the sentinels.
pub const NAME: &str = "testmaster";

/// One sentinel process, stopped on drop.
pub struct Sentinel {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A master, its replica, and three sentinels that fail over in about a
/// second.
pub struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<Sentinel>,
}

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let sentinels = (0..3).map(|_| Sentinel::start(master.port)).collect();
        let g = SentinelGroup {
            master,
            replica,
            sentinels,
        };
        g.until(|g| g.replica_in_sync() && g.master_port() == Some(g.master.port));
        g
    }

    /// `redis-sentinel://` naming this group.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis-sentinel://{}#{NAME}", hosts.join(","))
    }

    /// The master's port as the first sentinel says.
    pub fn master_port(&self) -> Option<u16> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.sentinels[0].port.to_string()])
            .args(["SENTINEL", "get-master-addr-by-name", NAME])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)?
            .trim()
            .parse()
            .ok()
    }

    fn replica_in_sync(&self) -> bool {
        self.replica
            .query_str(&["INFO", "replication"])
            .contains("master_link_status:up")
    }

    /// Fails the master over to the replica (`SENTINEL FAILOVER`), and waits
    /// until the sentinels name the replica.
    pub fn failover(&self) {
        let out = Command::new("redis-cli")
            .args(["-p", &self.sentinels[0].port.to_string()])
            .args(["SENTINEL", "FAILOVER", NAME])
            .output()
            .expect("redis-cli");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("OK"),
            "SENTINEL FAILOVER: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let replica = self.replica.port;
        self.until(|g| {
            g.master_port() == Some(replica)
                && g.replica
                    .query_str(&["INFO", "replication"])
                    .contains("role:master")
        });
    }

    fn until(&self, cond: impl Fn(&SentinelGroup) -> bool) {
        let deadline = std::time::Instant::now() + super::WAIT * 3;
        while !cond(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "sentinel group not ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Sentinel {
    fn start(master: u16) -> Sentinel {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {NAME} 1000\n\
                 sentinel failover-timeout {NAME} 3000\n\
                 sentinel parallel-syncs {NAME} 1\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let child = Command::new(redis_server_bin())
            .arg(&conf)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server --sentinel");
        let s = Sentinel {
            port,
            child,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + super::WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "sentinel did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
}
