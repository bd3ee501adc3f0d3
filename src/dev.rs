//! `redlock-proxy dev`: real `redis-server` children (N masters and one
//! passthrough backend) on free loopback ports, without persistence, in a
//! temporary directory, for trying the proxy out. With `--cluster-masters`
//! each voter is a small Redis Cluster of [`SHARDS`] masters instead, formed
//! here (slots assigned, nodes introduced) without `redis-cli`.
//!
//! No child outlives the proxy: children are killed on drop, they get SIGKILL
//! from the kernel if the proxy dies (`PR_SET_PDEATHSIG`), and they run in their
//! own process group so a terminal's Ctrl-C reaches only the proxy, which then
//! drains and stops them in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::config::RedisUrl;

/// Shards of each cluster voter `dev --cluster-masters` starts.
pub const SHARDS: usize = 3;

/// The redis-server processes of a dev setup.
pub struct DevCluster {
    children: Vec<(u16, Child)>,
    _dir: tempfile::TempDir,
    /// The masters' URLs (plain voters).
    pub masters: Vec<RedisUrl>,
    /// The cluster voters' seed URLs (`--cluster-masters`).
    pub cluster_voters: Vec<RedisUrl>,
    /// The backend's URL.
    pub backend: RedisUrl,
}

/// Finds `redis-server`: `$REDIS_SERVER`, else the `PATH`.
pub fn find_redis_server(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("redis-server not found at {}", p.display()))
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "redis-server is not installed (not on PATH). Install it: `sudo apt-get install redis-server` on Debian/Ubuntu, `brew install redis` on macOS, or point REDIS_SERVER at the binary.".to_string()
        })
}

/// Arguments for a throwaway redis-server on loopback `port`: no persistence,
/// working in `dir`, logging warnings to `dir/redis.log`.
pub fn redis_server_args(port: u16, dir: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
        "--dir",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(dir.into());
    args.push("--logfile".into());
    args.push(dir.join("redis.log").into());
    args
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl DevCluster {
    /// Starts `masters` masters and a passthrough backend, and waits until each answers PING.
    pub async fn start(masters: usize, redis_server: &Path) -> Result<DevCluster, String> {
        DevCluster::start_with(masters, false, redis_server).await
    }

    /// [`start`](Self::start); with `clusters`, each of the `masters` voters
    /// is a Redis Cluster of [`SHARDS`] masters.
    pub async fn start_with(
        masters: usize,
        clusters: bool,
        redis_server: &Path,
    ) -> Result<DevCluster, String> {
        let dir = tempfile::Builder::new()
            .prefix("redlock-proxy-dev-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let mut cluster = DevCluster {
            children: Vec::new(),
            masters: Vec::new(),
            cluster_voters: Vec::new(),
            backend: RedisUrl::parse("redis://127.0.0.1:6379").map_err(|e| e.to_string())?,
            _dir: dir,
        };
        if clusters {
            let mut nodes = Vec::new();
            for _ in 0..masters {
                nodes.push(cluster.spawn_voter_nodes(redis_server).await?);
            }
            // Each takes a few seconds of gossip to agree: all at once.
            let formed = nodes
                .iter()
                .map(|(ports, buses)| form_cluster(ports, buses));
            cluster.cluster_voters = futures_util::future::try_join_all(formed).await?;
            let port = cluster.spawn_one(redis_server, &[]).await?;
            cluster.backend =
                RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
            return Ok(cluster);
        }
        for i in 0..=masters {
            let port = cluster.spawn_one(redis_server, &[]).await?;
            let url =
                RedisUrl::parse(&format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
            if i < masters {
                cluster.masters.push(url);
            } else {
                cluster.backend = url;
            }
        }
        Ok(cluster)
    }

    /// Starts [`SHARDS`] cluster nodes for one voter; returns their ports
    /// and cluster bus ports.
    async fn spawn_voter_nodes(
        &mut self,
        redis_server: &Path,
    ) -> Result<(Vec<u16>, Vec<u16>), String> {
        let (mut ports, mut buses) = (Vec::new(), Vec::new());
        for _ in 0..SHARDS {
            let bus = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
            let extra = [
                "--cluster-enabled".to_string(),
                "yes".into(),
                "--cluster-port".into(),
                bus.to_string(),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ];
            ports.push(self.spawn_one(redis_server, &extra).await?);
            buses.push(bus);
        }
        Ok((ports, buses))
    }

    async fn spawn_one(&mut self, redis_server: &Path, extra: &[String]) -> Result<u16, String> {
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
            let dir = self._dir.path().join(format!("redis-{port}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let mut cmd = Command::new(redis_server);
            cmd.args(redis_server_args(port, &dir))
                .args(extra)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .process_group(0);
            // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
            #[allow(unsafe_code, reason = "PR_SET_PDEATHSIG: children die with the proxy")]
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let mut child = cmd
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", redis_server.display()))?;
            match wait_ready(port, &mut child).await {
                Ok(()) => {
                    self.children.push((port, child));
                    return Ok(port);
                }
                Err(e) => {
                    let _ = child.kill().await;
                    let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                    last_error =
                        format!("{e}; its log: {}", log.lines().last().unwrap_or("(empty)"));
                }
            }
        }
        Err(format!("redis-server did not start: {last_error}"))
    }

    /// The ports of every child, masters first.
    pub fn ports(&self) -> Vec<u16> {
        self.children.iter().map(|(p, _)| *p).collect()
    }

    /// Process ids of the children.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|(_, c)| c.id()).collect()
    }

    /// Stops every child and waits for it.
    pub async fn stop(mut self) {
        for (_, child) in &mut self.children {
            if let Some(pid) = child.id() {
                // SAFETY: sending a signal to our own child.
                #[allow(unsafe_code, reason = "SIGTERM to a child, for an orderly stop")]
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        for (_, child) in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(2), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Gives each node of one voter its share of the slots, introduces them,
/// and waits until the cluster is ok; returns the seed.
async fn form_cluster(ports: &[u16], buses: &[u16]) -> Result<RedisUrl, String> {
    let per = crate::backend::cluster::SLOTS / SHARDS;
    for (i, port) in ports.iter().enumerate() {
        let start = i * per;
        let end = if i + 1 == SHARDS {
            crate::backend::cluster::SLOTS - 1
        } else {
            start + per - 1
        };
        let (s, e) = (start.to_string(), end.to_string());
        command(*port, &["CLUSTER", "ADDSLOTSRANGE", &s, &e]).await?;
    }
    for (port, bus) in ports.iter().zip(buses).skip(1) {
        let (p, b) = (port.to_string(), bus.to_string());
        command(ports[0], &["CLUSTER", "MEET", "127.0.0.1", &p, &b]).await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut ok = true;
        for port in ports {
            let info = command(*port, &["CLUSTER", "INFO"]).await?;
            ok &= info.contains("cluster_state:ok")
                && info.contains(&format!("cluster_known_nodes:{SHARDS}"));
        }
        if ok {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("a dev cluster voter did not come up within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    RedisUrl::parse(&format!("redis://127.0.0.1:{}", ports[0])).map_err(|e| e.to_string())
}

async fn wait_ready(port: u16, child: &mut Child) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server on port {port} exited ({status})"));
        }
        if ping(port).await {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "redis-server on port {port} did not answer PING within 5 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One command on a fresh connection to the child on `port`: its reply as text.
async fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{port}")).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("port {port}: {e}"))?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let v: redis::Value = cmd
        .query_async(&mut conn)
        .await
        .map_err(|e| format!("{} on port {port}: {e}", args.join(" ")))?;
    Ok(match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    })
}

async fn ping(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(_))
    )
}
