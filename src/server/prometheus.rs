//! Every metric, rendered at scrape time by a `prometheus-client` collector:
//! counters and histograms from where the work happens (`crate::metrics`,
//! the engine, the masters), gauges read from the live state. Names start with
//! `redlock_proxy_`; counters end in `_total`, durations are in seconds.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Shared;
use crate::metrics::{LockKind, LockOutcome};
use crate::redlock::master::{Master, MasterState, MasterStats};

/// The registry `/metrics` renders: one collector over the shared state.
pub(crate) fn registry(shared: Arc<Shared>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProxyCollector { shared }));
    registry
}

/// Renders the registry in the OpenMetrics text format.
pub(crate) fn render(registry: &Registry) -> String {
    let mut out = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[derive(Debug)]
struct ProxyCollector {
    shared: Arc<Shared>,
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Writes metrics with less ceremony.
struct Out<'a> {
    enc: DescriptorEncoder<'a>,
}

impl Out<'_> {
    fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        let c = ConstCounter::new(v);
        c.encode(
            self.enc
                .encode_descriptor(name, help, None, c.metric_type())?,
        )
    }

    fn gauge(&mut self, name: &str, help: &str, v: i64) -> fmt::Result {
        let g = ConstGauge::new(v);
        g.encode(
            self.enc
                .encode_descriptor(name, help, None, g.metric_type())?,
        )
    }

    /// One family, a metric per master labelled `master="host:port"`.
    /// One sample per master connection: a plain master, or a cluster
    /// voter's shard (`voter`: the voter's address, a cluster's seed).
    fn per_master<M: EncodeMetric>(
        &mut self,
        masters: &[(String, Arc<Master>)],
        name: &str,
        help: &str,
        unit: Option<&Unit>,
        ty: MetricType,
        metric: impl Fn(&Master) -> M,
    ) -> fmt::Result {
        let mut family = self.enc.encode_descriptor(name, help, unit, ty)?;
        for (voter, m) in masters {
            let labels = [("master", m.addr()), ("voter", voter.as_str())];
            metric(m).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Collector for ProxyCollector {
    fn encode(&self, enc: DescriptorEncoder) -> fmt::Result {
        let s = &self.shared;
        let mut out = Out { enc };
        let m = &s.metrics;
        let engine = s.engine();
        let voters = engine.voters();
        let masters: Vec<(String, Arc<Master>)> = voters
            .iter()
            .flat_map(|v| {
                let voter = v.addr();
                v.shards().into_iter().map(move |m| (voter.clone(), m))
            })
            .collect();
        let masters = &masters[..];

        out.gauge(
            "redlock_proxy_clients",
            "Clients connected.",
            s.clients() as i64,
        )?;
        out.counter(
            "redlock_proxy_clients_accepted",
            "Clients accepted.",
            get(&m.accepted),
        )?;
        out.counter(
            "redlock_proxy_clients_rejected",
            "Clients refused at max_clients.",
            get(&m.rejected),
        )?;
        {
            let mut family = out.enc.encode_descriptor(
                "redlock_proxy_commands",
                "Requests by what the proxy did with them: passthrough (forwarded to the backend), local (answered by the proxy), lock (run on the masters), refused (an error from the proxy).",
                None,
                MetricType::Counter,
            )?;
            for (kind, v) in [
                ("passthrough", get(&m.forwarded)),
                ("local", get(&m.local)),
                ("lock", get(&m.lock_ops)),
                ("refused", get(&m.refused)),
            ] {
                ConstCounter::new(v).encode(family.encode_family(&[("kind", kind)])?)?;
            }
        }
        {
            let stats = &engine.stats.ops;
            let mut family = out.enc.encode_descriptor(
                "redlock_proxy_lock_operations",
                "Lock operations by kind and outcome: ok (granted, released, extended, answered, fenced), refused (held by another, not the caller's), error (undecided: NOQUORUM, or invalid).",
                None,
                MetricType::Counter,
            )?;
            for kind in LockKind::ALL {
                for outcome in LockOutcome::ALL {
                    let labels = [("kind", kind.label()), ("outcome", outcome.label())];
                    ConstCounter::new(stats.count(kind, outcome))
                        .encode(family.encode_family(&labels)?)?;
                }
            }
            let mut family = out.enc.encode_descriptor(
                "redlock_proxy_lock_operation_duration",
                "Lock operations from start to reply, by kind.",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            for kind in LockKind::ALL {
                stats
                    .latency(kind)
                    .encode(family.encode_family(&[("kind", kind.label())])?)?;
            }
        }
        out.counter(
            "redlock_proxy_leases_revoked",
            "Grant or extension replies not delivered because their validity ran out first.",
            get(&m.leases_revoked),
        )?;
        out.counter(
            "redlock_proxy_fences_issued",
            "Fencing tokens issued.",
            get(&engine.stats.fences),
        )?;
        out.counter(
            "redlock_proxy_protocol_errors",
            "Connections closed for a protocol error.",
            get(&m.protocol_errors),
        )?;
        out.counter(
            "redlock_proxy_backend_errors",
            "Passthrough backend connections that failed.",
            get(&m.backend_errors),
        )?;
        out.counter(
            "redlock_proxy_backend_sentinel_switches",
            "Times the sentinels switched the passthrough backend's master (redis-sentinel:// only).",
            s.backend.switches(),
        )?;
        out.gauge(
            "redlock_proxy_backend_up",
            "Whether the passthrough backend answered the last health probe.",
            s.health.backend_up() as i64,
        )?;
        let lanes = s.lane_stats();
        out.gauge(
            "redlock_proxy_shared_connections",
            "Shared (multiplexed) backend connections open.",
            lanes.open as i64,
        )?;
        out.gauge(
            "redlock_proxy_shared_connections_stalled",
            "Shared backend connections whose requests have had no reply for stall_after.",
            lanes.stalled as i64,
        )?;
        out.counter(
            "redlock_proxy_shared_stalls",
            "Stalled shared backend connections that new requests were steered around.",
            lanes.stalls,
        )?;
        out.counter(
            "redlock_proxy_backend_reply_timeouts",
            "Backend connections (shared, or a client's own) ended by passthrough.reply_timeout: silent while they owed a prompt reply.",
            lanes.timeouts + get(&m.backend_reply_timeouts),
        )?;
        if let Some(cluster) = &s.cluster {
            out.gauge(
                "redlock_proxy_cluster_masters",
                "Masters of the cluster backend serving slots, as the proxy knows them.",
                cluster.masters() as i64,
            )?;
            out.gauge(
                "redlock_proxy_cluster_slots_unserved",
                "Hash slots of the cluster backend with no master the proxy knows.",
                cluster.unserved_slots() as i64,
            )?;
            out.counter(
                "redlock_proxy_cluster_topology_refreshes",
                "Topology reads of the cluster backend that succeeded.",
                get(&cluster.stats.refreshes),
            )?;
            let st = &cluster.stats;
            let mut family = out.enc.encode_descriptor(
                "redlock_proxy_cluster_redirections",
                "Redirections of the cluster backend the proxy followed for clients, by kind.",
                None,
                MetricType::Counter,
            )?;
            for (kind, v) in [
                ("moved", &st.moved),
                ("ask", &st.ask),
                ("tryagain", &st.tryagain),
            ] {
                ConstCounter::new(get(v)).encode(family.encode_family(&[("kind", kind)])?)?;
            }
        }
        out.counter(
            "redlock_proxy_tls_handshake_failures",
            "TLS handshakes with clients that failed or timed out.",
            get(&m.tls_handshake_failures),
        )?;
        out.counter(
            "redlock_proxy_auth_failures",
            "Failed authentication attempts.",
            get(&m.auth_failures),
        )?;
        out.counter(
            "redlock_proxy_auth_throttled",
            "Authentication attempts refused unchecked: too many failures from the address (server.auth_failure_limit).",
            get(&m.auth_throttled),
        )?;
        out.counter(
            "redlock_proxy_acl_denied",
            "Requests refused by the user's ACL rules (-NOPERM).",
            get(&m.acl_denied),
        )?;
        out.counter(
            "redlock_proxy_output_limit_disconnects",
            "Clients closed for their output buffer limit.",
            get(&m.output_limit),
        )?;
        out.counter(
            "redlock_proxy_client_memory_evictions",
            "Clients closed because all clients' buffers passed max_client_memory.",
            get(&m.client_memory_evictions),
        )?;
        out.gauge(
            "redlock_proxy_client_buffer_bytes",
            "Bytes buffered for all clients (replies not yet read, backend replies held).",
            s.registry.buffered() as i64,
        )?;
        out.gauge(
            "redlock_proxy_quorum_available",
            "Whether a quorum of masters is up and trusted (not quarantined).",
            engine.quorum_available() as i64,
        )?;
        out.gauge(
            "redlock_proxy_masters",
            "Voters configured (masters, and Redis Clusters voting as one).",
            voters.len() as i64,
        )?;

        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        out.per_master(
            masters,
            "redlock_proxy_master_up",
            "Whether the master's connection is up.",
            None,
            gauge,
            |m| ConstGauge::new((m.state() == MasterState::Up) as i64),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_quarantined",
            "Whether the master's votes are distrusted: it restarted, failed over, or its clock ran ahead (the restart and clock guards).",
            None,
            gauge,
            |m| ConstGauge::new(m.quarantined() as i64),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_clock_jumps",
            "Times the master's clock was seen to run ahead of the proxy's beyond the drift allowed (the clock guard quarantines it).",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.clock_jumps)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_clock_steps_back",
            "Times the master's clock was seen to go back or run slow (its locks last longer; nothing is at risk).",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.clock_steps_back)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_clock_offset_seconds",
            "The master's wall clock minus the proxy's, at the last reading.",
            None,
            gauge,
            |m| ConstGauge::new(m.stats.clock_offset_us.load(Ordering::Relaxed) as f64 / 1e6),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_sentinel_switches",
            "Times the sentinels switched a Sentinel-managed master (its reconnect counts as a restart).",
            None,
            counter,
            |m| ConstCounter::new(m.switches()),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_restarts",
            "Restarts seen (a new run_id).",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.restarts)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_requests",
            "Requests written to the master.",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.sent)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_request_duration",
            "From writing a request to the master to reading its reply.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
            |m| m.stats.latency.clone(),
        )?;
        {
            let mut family = out.enc.encode_descriptor(
                "redlock_proxy_master_votes",
                "Votes of each master on acquisitions and extensions: yes, no (refused, or distrusted while quarantined), unknown (no answer that counts).",
                None,
                counter,
            )?;
            for voter in voters {
                let (addr, st) = (voter.addr(), voter.stats());
                for (vote, v) in [
                    ("yes", &st.votes_yes),
                    ("no", &st.votes_no),
                    ("unknown", &st.votes_unknown),
                ] {
                    let labels = [("master", addr.as_str()), ("vote", vote)];
                    ConstCounter::new(get(v)).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        for (name, help, pick) in [
            (
                "redlock_proxy_master_timeouts",
                "Requests the operation stopped waiting for before the master (voter) answered.",
                (|st| &st.timeouts) as fn(&MasterStats) -> &AtomicU64,
            ),
            (
                "redlock_proxy_master_errors",
                "Error replies from the master (voter), and requests lost with its connection.",
                |st| &st.errors,
            ),
        ] {
            let mut family = out.enc.encode_descriptor(name, help, None, counter)?;
            for voter in voters {
                let addr = voter.addr();
                let labels = [("master", addr.as_str())];
                ConstCounter::new(get(pick(voter.stats())))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        out.per_master(
            masters,
            "redlock_proxy_master_connects",
            "Connections opened to the master, the first included: closes it made (CLIENT KILL, its timeout, a middlebox) are reconnected at once and are no failure.",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.connects)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_connection_failures",
            "Connection attempts that failed, and connections that broke.",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.failures)),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_owed_releases",
            "Releases owed to the master, retried until it confirms them.",
            None,
            gauge,
            |m| ConstGauge::new(get(&m.stats.owed) as i64),
        )?;
        out.per_master(
            masters,
            "redlock_proxy_master_owed_shed",
            "Owed releases dropped because too many were owed (they expire with their TTL).",
            None,
            counter,
            |m| ConstCounter::new(get(&m.stats.owed_shed)),
        )?;
        Ok(())
    }
}
