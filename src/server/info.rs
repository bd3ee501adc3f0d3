//! What the proxy says about itself: the `# Proxy` section of `INFO`, and the
//! replies of `PROXY MASTERS`, `PROXY CONFIG` and `PROXY HELP`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::Shared;
use crate::metrics::{LockKind, LockOutcome};
use crate::protocol::Reply;
use crate::redlock::master::{Master, MasterState, identity::Durability};
use crate::redlock::voter::Voter;

fn state_name(s: MasterState) -> &'static str {
    match s {
        MasterState::Up => "up",
        MasterState::Connecting => "connecting",
        MasterState::Down => "down",
    }
}

fn durability(m: &Master) -> &'static str {
    match m.durability() {
        Some(Durability::Always) => "aof-always",
        Some(Durability::Lossy) => "aof-everysec",
        Some(Durability::None) => "none",
        Some(Durability::Unknown) | None => "unknown",
    }
}

/// The `# Proxy` section of `INFO`, in `INFO`'s own `field:value` lines.
pub(crate) fn proxy_section(shared: &Shared) -> String {
    let engine = shared.engine();
    let voters = engine.voters();
    let ops = &engine.stats.ops;
    let mut s = String::from("# Proxy\r\n");
    let mut line = |k: &str, v: &dyn std::fmt::Display| {
        let _ = write!(s, "{k}:{v}\r\n");
    };
    line("proxy_version", &env!("CARGO_PKG_VERSION"));
    line(
        "proxy_uptime_in_seconds",
        &shared.started.elapsed().as_secs(),
    );
    line("proxy_clients", &shared.clients());
    line(
        "lock_patterns",
        &shared.config().redlock.lock_patterns.join(","),
    );
    line("masters", &voters.len());
    line("masters_up", &engine.masters_up());
    line("quorum", &engine.quorum_size());
    line("quorum_available", &(engine.quorum_available() as u8));
    line("backend_up", &(shared.health.backend_up() as u8));
    line("backend_sentinel_switches", &shared.backend.switches());
    let lanes = shared.lane_stats();
    line("shared_connections", &lanes.open);
    line("shared_connections_stalled", &lanes.stalled);
    line("shared_stalls", &lanes.stalls);
    let own = shared
        .metrics
        .backend_reply_timeouts
        .load(Ordering::Relaxed);
    line("backend_reply_timeouts", &(lanes.timeouts + own));
    let ready = shared.warm.as_ref().map_or(0, |w| w.ready());
    line("backend_connections_ready", &ready);
    if let Some(cluster) = &shared.cluster {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &cluster.stats;
        line("cluster_masters", &cluster.masters());
        line("cluster_slots_unserved", &cluster.unserved_slots());
        line(
            "cluster_redirections",
            &format_args!(
                "moved={},ask={},tryagain={}",
                st.moved.load(Relaxed),
                st.ask.load(Relaxed),
                st.tryagain.load(Relaxed)
            ),
        );
    }
    let master_line = |m: &Master| {
        format!(
            "addr={},state={},quarantined={},latency_us={},version={},persistence={},owed_releases={},connects={},sentinel_switches={},clock_offset_ms={},clock_jumps={},clock_steps_back={}",
            m.addr(),
            state_name(m.state()),
            m.quarantined() as u8,
            m.stats.latency_avg_us.load(Ordering::Relaxed),
            m.version().unwrap_or_else(|| "unknown".into()),
            durability(m),
            m.stats.owed.load(Ordering::Relaxed),
            m.stats.connects.load(Ordering::Relaxed),
            m.switches(),
            m.stats.clock_offset_us.load(Ordering::Relaxed) / 1000,
            m.stats.clock_jumps.load(Ordering::Relaxed),
            m.stats.clock_steps_back.load(Ordering::Relaxed),
        )
    };
    for (i, v) in voters.iter().enumerate() {
        match v {
            Voter::Master(m) => line(&format!("master{i}"), &master_line(m)),
            Voter::Cluster(c) => {
                let shards = c.shards();
                let r = &c.redirections;
                line(
                    &format!("master{i}"),
                    &format_args!(
                        "cluster={},state={},shards={},quarantined_shards={},slots_unserved={},redirections=moved:{}/ask:{}/tryagain:{}",
                        v.addr(),
                        state_name(v.state()),
                        shards.len(),
                        shards.iter().filter(|m| m.quarantined()).count(),
                        c.unserved_slots(),
                        r.moved.load(Ordering::Relaxed),
                        r.ask.load(Ordering::Relaxed),
                        r.tryagain.load(Ordering::Relaxed),
                    ),
                );
                for (j, m) in shards.iter().enumerate() {
                    line(&format!("master{i}_shard{j}"), &master_line(m));
                }
            }
        }
    }
    for kind in LockKind::ALL {
        for outcome in LockOutcome::ALL {
            let k = format!("locks_{}_{}", kind.label(), outcome.label());
            line(&k, &ops.count(kind, outcome));
        }
    }
    line(
        "fences_issued",
        &engine.stats.fences.load(Ordering::Relaxed),
    );
    line(
        "leases_revoked",
        &shared.metrics.leases_revoked.load(Ordering::Relaxed),
    );
    s
}

/// `INFO proxy`.
pub(crate) fn info_proxy(shared: &Shared) -> Reply {
    Reply::Bulk(Bytes::from(proxy_section(shared)))
}

fn field(k: &'static str, v: Reply) -> (Reply, Reply) {
    (Reply::Simple(k), v)
}

fn text(v: String) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

/// `PROXY MASTERS`: one map per voter; a cluster voter's map lists its shards.
pub(crate) fn masters(shared: &Shared) -> Reply {
    Reply::Array(
        shared
            .engine()
            .voters()
            .iter()
            .map(|v| match v {
                Voter::Master(m) => master_map(m),
                Voter::Cluster(c) => Reply::Map(vec![
                    field("cluster", text(v.addr())),
                    field("state", Reply::Simple(state_name(v.state()))),
                    field("quarantined", Reply::Int(v.quarantined() as i64)),
                    field("slots_unserved", Reply::Int(c.unserved_slots() as i64)),
                    field(
                        "shards",
                        Reply::Array(c.shards().iter().map(|m| master_map(m)).collect()),
                    ),
                ]),
            })
            .collect(),
    )
}

/// One master's state, for `PROXY MASTERS`.
fn master_map(m: &Master) -> Reply {
    Reply::Map(vec![
        field("addr", text(m.addr().to_string())),
        field("state", Reply::Simple(state_name(m.state()))),
        field("quarantined", Reply::Int(m.quarantined() as i64)),
        field(
            "quarantine_left_ms",
            Reply::Int(m.quarantine_left().as_millis() as i64),
        ),
        field("run_id", text(m.run_id().unwrap_or_default())),
        field("version", text(m.version().unwrap_or_default())),
        field("persistence", Reply::Simple(durability(m))),
        field(
            "latency_us",
            Reply::Int(m.stats.latency_avg_us.load(Ordering::Relaxed) as i64),
        ),
        field(
            "owed_releases",
            Reply::Int(m.stats.owed.load(Ordering::Relaxed) as i64),
        ),
        field(
            "requests",
            Reply::Int(m.stats.sent.load(Ordering::Relaxed) as i64),
        ),
        field(
            "clock_offset_ms",
            Reply::Int(m.stats.clock_offset_us.load(Ordering::Relaxed) / 1000),
        ),
        field(
            "clock_jumps",
            Reply::Int(m.stats.clock_jumps.load(Ordering::Relaxed) as i64),
        ),
        field(
            "clock_steps_back",
            Reply::Int(m.stats.clock_steps_back.load(Ordering::Relaxed) as i64),
        ),
    ])
}

/// `PROXY CONFIG`: the effective configuration, option by option, passwords
/// redacted.
pub(crate) fn config(shared: &Shared) -> Reply {
    Reply::Map(
        shared
            .config()
            .pairs()
            .into_iter()
            .map(|(k, v)| (Reply::Simple(k), Reply::Bulk(Bytes::from(v))))
            .collect(),
    )
}

/// `PROXY HELP`.
pub(crate) fn help() -> Reply {
    Reply::Array(
        [
            "PROXY <subcommand> [<arg> ...]. Subcommands are:",
            "MASTERS",
            "    Each lock master: address, state, quarantine, run_id, version, persistence, latency, owed releases.",
            "CONFIG",
            "    The effective configuration, option by option (passwords redacted).",
            "HELP",
            "    Print this help.",
        ]
        .into_iter()
        .map(Reply::Simple)
        .collect(),
    )
}

/// Appends the proxy's section to the backend's `INFO` reply (a bulk string,
/// or RESP3's verbatim string); `None` if the reply is something else.
pub(crate) fn append_section(frame: &[u8], section: &str) -> Option<Bytes> {
    let (kind, rest) = frame.split_first()?;
    if !matches!(kind, b'$' | b'=') {
        return None;
    }
    let header_end = memchr::memmem::find(rest, b"\r\n")?;
    let len: usize = std::str::from_utf8(&rest[..header_end])
        .ok()?
        .parse()
        .ok()?;
    let body = rest.get(header_end + 2..header_end + 2 + len)?;
    let mut text = body.to_vec();
    if !text.ends_with(b"\r\n") && !text.is_empty() {
        text.extend_from_slice(b"\r\n");
    }
    text.extend_from_slice(b"\r\n");
    text.extend_from_slice(section.as_bytes());
    let mut out = Vec::with_capacity(text.len() + 16);
    out.push(*kind);
    out.extend_from_slice(text.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&text);
    out.extend_from_slice(b"\r\n");
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_follows_the_backends() {
        let out = append_section(b"$15\r\n# Server\r\nx:1\r\n\r\n", "# Proxy\r\ny:2\r\n").unwrap();
        assert_eq!(
            &out[..],
            b"$31\r\n# Server\r\nx:1\r\n\r\n# Proxy\r\ny:2\r\n\r\n"
        );
        // RESP3 verbatim: the "txt:" prefix stays in front.
        let out = append_section(b"=12\r\ntxt:# Server\r\n", "# Proxy\r\n").unwrap();
        assert_eq!(&out[..], b"=25\r\ntxt:# Server\r\n\r\n# Proxy\r\n\r\n");
        assert_eq!(append_section(b"-ERR no\r\n", "# Proxy\r\n"), None);
    }
}
