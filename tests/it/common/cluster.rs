//! A real Redis Cluster for the tests: `redis-server --cluster-enabled yes`
//! nodes on free ports, joined by `redis-cli --cluster create`.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{RedisServer, WAIT, free_port};

/// The nodes of a cluster (masters first as `redis-cli` assigns them, then
/// replicas); torn down on drop like every [`RedisServer`].
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

/// Options every node gets: a bus port of its own (the default, port + 10000,
/// may be past 65535 for a free port), fast failure detection, and the slots
/// of a dead master failing alone.
fn node_args(bus: &str) -> Vec<&str> {
    vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-port",
        bus,
        "--cluster-node-timeout",
        "1000",
        "--cluster-require-full-coverage",
        "no",
    ]
}

impl RedisCluster {
    /// `masters` masters with `replicas` replicas each, every slot assigned,
    /// every node agreeing.
    pub fn start(masters: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&node_args(&bus))
            })
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        let out = cmd.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster { nodes };
        c.wait_ok();
        c
    }

    /// A cluster of `masters` TLS-only masters (`--tls-cluster yes`: the bus
    /// too) with the test PKI's server certificate.
    pub fn start_tls(pki: &super::pki::Pki, masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let bus = free_port().to_string();
                let mut args = node_args(&bus);
                args.extend(["--tls-cluster", "yes"]);
                RedisServer::start_tls_with(pki, false, &args)
            })
            .collect();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--tls", "--cacert", &path(&pki.ca), "--cluster", "create"]);
        for n in &nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-yes"]);
        let out = cmd.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        until("the TLS cluster is ok", || {
            nodes
                .iter()
                .all(|n| n.tls_cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        });
        RedisCluster { nodes }
    }

    /// Waits until every running node says the cluster is ok and knows every
    /// node.
    pub fn wait_ok(&self) {
        let running = self.nodes.iter().filter(|n| n.is_running()).count();
        until("the cluster is ok", || {
            self.nodes.iter().filter(|n| n.is_running()).all(|n| {
                let info = n.query_str(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{}", self.nodes.len()))
                    && n.query_str(&["CLUSTER", "NODES"]).lines().count() >= running
            })
        });
    }

    /// The seed URL the proxy is given.
    pub fn seed(&self) -> String {
        self.nodes[0].url()
    }

    /// The running master that serves `key` (the one that answers `EXISTS`
    /// on it without a redirection, whatever the key's type).
    pub fn owner(&self, key: &str) -> &RedisServer {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .find(|n| n.try_query(&["EXISTS", key]).is_ok())
            .unwrap_or_else(|| panic!("no node serves {key}"))
    }

    /// The running masters.
    pub fn masters(&self) -> Vec<&RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .filter(|n| {
                n.query_str(&["INFO", "replication"])
                    .contains("role:master")
            })
            .collect()
    }

    /// Moves `slots` slots from `from` to `to` with `redis-cli --cluster
    /// reshard`, keys a few at a time (clients meet `ASK` while a slot
    /// migrates).
    pub fn reshard(&self, from: &RedisServer, to: &RedisServer, slots: usize) {
        let out = Command::new("redis-cli")
            .args([
                "--cluster",
                "reshard",
                &format!("127.0.0.1:{}", self.nodes[0].port),
            ])
            .args(["--cluster-from", &RedisCluster::id(from)])
            .args(["--cluster-to", &RedisCluster::id(to)])
            .args(["--cluster-slots", &slots.to_string()])
            .args(["--cluster-pipeline", "2", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster reshard");
        assert!(
            out.status.success(),
            "reshard: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The slots `node` serves now, lowest first.
    pub fn slots_of(&self, node: &RedisServer) -> Vec<u16> {
        let redis::Value::Array(ranges) = node.query(&["CLUSTER", "SLOTS"]) else {
            panic!("CLUSTER SLOTS is not an array");
        };
        let mut slots = Vec::new();
        for r in ranges {
            let redis::Value::Array(r) = r else { continue };
            let (redis::Value::Int(a), redis::Value::Int(b), redis::Value::Array(m)) =
                (&r[0], &r[1], &r[2])
            else {
                continue;
            };
            if m.get(1) == Some(&redis::Value::Int(i64::from(node.port))) {
                slots.extend(*a as u16..=*b as u16);
            }
        }
        slots.sort_unstable();
        slots
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        match self.nodes[0].query(&["CLUSTER", "KEYSLOT", key]) {
            redis::Value::Int(s) => s as u16,
            other => panic!("CLUSTER KEYSLOT: {other:?}"),
        }
    }

    /// The node id of a node.
    pub fn id(node: &RedisServer) -> String {
        node.query_str(&["CLUSTER", "MYID"])
    }
}

/// Polls `cond` (blocking: cluster setup runs outside the proxy's runtime
/// work) until it holds; a cluster's failure detection and elections take
/// seconds, so the deadline is three times [`WAIT`].
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT * 3;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {:?}",
            WAIT * 3
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
