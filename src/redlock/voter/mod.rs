//! RedLock voters: each casts one independent vote on every lock key. A voter
//! is a single Redis master (`--master`), or a whole Redis Cluster
//! (`--master-cluster`), where the key's vote is cast by the shard that
//! serves its slot. The quorum is over voters: three cluster voters need two
//! to agree, whatever their shard counts.
//!
//! - `mod.rs`: [`Voter`], what the engine asks of either kind.
//! - `cluster.rs`: a cluster voter — its shards (each a [`Master`], with its
//!   own pipelined connection, owed releases and restart guard), the slot map,
//!   redirections, topology refreshes, and the quarantine of a shard that
//!   took over by failover.

mod cluster;

use std::sync::Arc;
use std::time::Duration;

pub use self::cluster::ClusterVoter;

use super::master::{LockRef, Master, MasterState, MasterStats, Request};
use crate::config::RedisUrl;

/// What a voter is made from.
#[derive(Debug, Clone)]
pub(crate) enum VoterSpec {
    /// A single master at this endpoint.
    Master(crate::backend::Endpoint),
    /// A Redis Cluster this endpoint is a seed node of.
    Cluster(crate::backend::Endpoint),
}

impl VoterSpec {
    /// The voters the configuration names: its plain masters, then its
    /// clusters (that order is their index), reached with `tls` where their
    /// URLs say `rediss://`; replies nested deeper than `max_depth` fail.
    pub(crate) fn from_config(
        r: &crate::config::RedlockConfig,
        max_depth: usize,
        tls: Option<&crate::tls::TlsClient>,
    ) -> Vec<VoterSpec> {
        let endpoint = |url: &RedisUrl| {
            crate::backend::Endpoint::new(url.clone(), super::master::CONNECT_TIMEOUT, max_depth)
                .with_tls(tls.cloned())
        };
        let masters = r.masters.iter().map(|u| VoterSpec::Master(endpoint(u)));
        let clusters = r
            .cluster_masters
            .iter()
            .map(|u| VoterSpec::Cluster(endpoint(u)));
        masters.chain(clusters).collect()
    }

    /// Whether `voter` is what this describes (same kind, same URL).
    pub(crate) fn describes(&self, voter: &Voter) -> bool {
        match (self, voter) {
            (VoterSpec::Master(e), Voter::Master(m)) => m.url == *e.url(),
            (VoterSpec::Cluster(e), Voter::Cluster(c)) => c.seed() == e.url(),
            _ => false,
        }
    }
}

/// One voter of the quorum.
#[derive(Debug, Clone)]
pub enum Voter {
    /// A single master.
    Master(Arc<Master>),
    /// A Redis Cluster: the key's shard votes.
    Cluster(Arc<ClusterVoter>),
}

impl Voter {
    /// Its position in the configuration (plain masters first, then clusters).
    pub fn index(&self) -> usize {
        match self {
            Voter::Master(m) => m.index,
            Voter::Cluster(c) => c.index(),
        }
    }

    /// Its URL (a cluster's seed node).
    pub fn url(&self) -> &RedisUrl {
        match self {
            Voter::Master(m) => &m.url,
            Voter::Cluster(c) => c.seed(),
        }
    }

    /// `host:port` (a cluster's seed).
    pub fn addr(&self) -> String {
        match self {
            Voter::Master(m) => m.addr().to_string(),
            Voter::Cluster(c) => format!("{}:{}", c.seed().host, c.seed().port),
        }
    }

    /// Whether it is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Voter::Cluster(_))
    }

    /// Queues a request (a cluster sends it to the shard of its key); the
    /// answer goes to `req.reply_to` tagged with this voter's index.
    pub(crate) fn send(&self, req: Request) {
        match self {
            Voter::Master(m) => m.send(req),
            Voter::Cluster(c) => c.send(req),
        }
    }

    /// Owes the release of `lock` (a cluster: each key to its shard).
    pub(crate) fn owe(&self, lock: Arc<LockRef>) {
        match self {
            Voter::Master(m) => m.owe(lock),
            Voter::Cluster(c) => c.owe(&lock),
        }
    }

    /// A quarantine under way (on any shard) lasts at least `ttl` more.
    pub(crate) fn quarantine_at_least(&self, ttl: Duration) {
        for m in self.shards() {
            m.quarantine_at_least(ttl);
        }
    }

    /// The connection state: a cluster is up when it knows its slot map and
    /// every shard's connection is up, down when a shard is down.
    pub fn state(&self) -> MasterState {
        match self {
            Voter::Master(m) => m.state(),
            Voter::Cluster(c) => c.state(),
        }
    }

    /// Whether its votes are distrusted now (a cluster: on any of its shards,
    /// whose slots then vote no, the others as usual).
    pub fn quarantined(&self) -> bool {
        self.shards().iter().any(|m| m.quarantined())
    }

    /// How long its (longest) quarantine still lasts.
    pub fn quarantine_left(&self) -> Duration {
        self.shards()
            .iter()
            .map(|m| m.quarantine_left())
            .max()
            .unwrap_or_default()
    }

    /// Up and trusted on every key: counts towards granting any acquisition.
    pub fn trusted(&self) -> bool {
        self.state() == MasterState::Up && !self.quarantined()
    }

    /// Counters of its votes (a single master's own counters; a cluster's
    /// shards keep their connections' counters apart, see [`shards`](Self::shards)).
    pub fn stats(&self) -> &MasterStats {
        match self {
            Voter::Master(m) => &m.stats,
            Voter::Cluster(c) => &c.stats,
        }
    }

    /// Its masters: the one, or a cluster's shards now.
    pub fn shards(&self) -> Vec<Arc<Master>> {
        match self {
            Voter::Master(m) => vec![Arc::clone(m)],
            Voter::Cluster(c) => c.shards(),
        }
    }

    /// Delivers what is queued and stops (shutdown, or a reload that drops it).
    pub fn stop(&self) {
        match self {
            Voter::Master(m) => m.stop(),
            Voter::Cluster(c) => c.stop(),
        }
    }
}
