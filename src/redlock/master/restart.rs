//! The restart guard at work on one master: identifying it at every connect,
//! probing it every `health_interval`, quarantining it when its `run_id`
//! changes, and saying so in the logs (the pure parts are in `identity.rs`).

use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;

use super::Master;
use super::identity::{
    Change, Durability, Identity, compare, identify_commands, identity, info_field,
    marker_commands, marker_left, marker_pttl_command,
};
use crate::backend::{BackendError, Connection, ErrorKind};

/// What the probe writes next.
pub(super) enum ProbeNext {
    /// The quarantine marker's two commands (their replies do not matter).
    WriteMarker(Bytes),
    /// `PTTL` of the marker, for [`Master::marker_probed`].
    ReadMarker(Bytes),
}

/// Sends `cmds` and reads `n` decoded replies.
async fn query(
    conn: &mut Connection,
    cmds: &[u8],
    n: usize,
) -> Result<Vec<BytesFrame>, BackendError> {
    conn.out().extend_from_slice(cmds);
    let mut frames = Vec::with_capacity(n);
    for _ in 0..n {
        let mut bytes = conn.read_reply().await?;
        let frame = redis_protocol::resp2::decode::decode_bytes_mut(&mut bytes)
            .ok()
            .flatten()
            .map(|(f, _, _)| f)
            .ok_or_else(|| {
                BackendError::new(ErrorKind::Protocol, conn.peer(), "undecodable reply")
            })?;
        frames.push(frame);
    }
    Ok(frames)
}

impl Master {
    /// Whether this master's votes are not trusted now (it restarted recently).
    pub fn quarantined(&self) -> bool {
        self.quarantine.active(&self.guard)
    }

    /// How long its quarantine still lasts (zero when none).
    pub fn quarantine_left(&self) -> Duration {
        if self.quarantined() {
            self.quarantine.left(&self.guard)
        } else {
            Duration::ZERO
        }
    }

    /// A quarantine under way lasts at least `ttl` (and the drift) more.
    pub(crate) fn quarantine_at_least(&self, ttl: Duration) {
        if self.quarantined() {
            let drift = ttl.mul_f64(self.guard.cfg.drift_factor.clamp(0.0, 1.0));
            self.quarantine.at_least(&self.guard, ttl + drift);
        }
    }

    /// What names its quarantine marker: the `run_id`, behind the hash tag
    /// of one of its slots on a cluster shard (a key it serves itself).
    fn marker_id(&self, run_id: &str) -> String {
        match self.marker_tag() {
            Some(tag) => format!("{{{}}}:{run_id}", String::from_utf8_lossy(&tag)),
            None => run_id.to_string(),
        }
    }

    /// Its `run_id`, once known.
    pub fn run_id(&self) -> Option<String> {
        self.guard_state.lock().ok()?.run_id.clone()
    }

    /// Its `redis_version`, once known.
    pub fn version(&self) -> Option<String> {
        self.guard_state.lock().ok()?.version.clone()
    }

    /// How well it keeps locks across a crash, once known.
    pub fn durability(&self) -> Option<Durability> {
        self.guard_state.lock().ok()?.durability
    }

    /// Right after connecting: who the master is now, and what that means.
    pub(super) async fn identify(&self, conn: &mut Connection) -> Result<(), BackendError> {
        // The clock guard's first reading on this connection.
        let sent = tokio::time::Instant::now();
        let time = query(conn, super::clock_guard::TIME, 1).await?;
        self.clock_read(&time[0], sent, tokio::time::Instant::now());
        let frames = query(conn, &identify_commands(), 3).await?;
        let id = identity(&frames[0], &frames[1], &frames[2]);
        let Some(run_id) = id.run_id.clone() else {
            if self.remember(&id, None) == Change::FirstSeen {
                tracing::warn!(master = %self.url, "restart guard off for this master: INFO server is not allowed");
            }
            return Ok(());
        };
        let marker = query(conn, &marker_pttl_command(&self.marker_id(&run_id)), 1).await?;
        let change = self.remember(&id, Some(&run_id));
        if change == Change::FirstSeen {
            self.report_durability(id.durability, id.version.as_deref().unwrap_or("unknown"));
        }
        let written = self.identified(change, &run_id, marker_left(&marker[0]));
        if let Some(cmds) = written {
            // Best effort: an old server without PEXPIRE GT keeps the first marker.
            query(conn, &cmds, 2).await?;
        }
        Ok(())
    }

    /// Stores what was seen; returns what changed.
    fn remember(&self, id: &Identity, run_id: Option<&str>) -> Change {
        let Ok(mut st) = self.guard_state.lock() else {
            return Change::Same;
        };
        let change = match run_id {
            Some(r) => compare(st.run_id.as_deref(), r),
            None if st.durability.is_none() => Change::FirstSeen,
            None => Change::Same,
        };
        if let Some(r) = run_id {
            st.run_id = Some(r.to_string());
        }
        st.durability = Some(id.durability);
        st.version.clone_from(&id.version);
        change
    }

    /// Acts on a change of identity; returns the marker commands to write.
    fn identified(&self, change: Change, run_id: &str, marker: Option<Duration>) -> Option<Bytes> {
        let cfg = &self.guard.cfg;
        match change {
            Change::Restarted => return self.restarted(run_id, marker),
            Change::FirstSeen if marker.is_none() && cfg.quarantine_on_start => {
                if let Some(d) = self.guard.max_ttl() {
                    self.quarantine_for(
                        d,
                        run_id,
                        "quarantine_on_start: trusted only after max_ttl",
                    );
                }
            }
            Change::FirstSeen | Change::Same => {}
        }
        if let Some(d) = marker {
            self.quarantine_for(d, run_id, "a quarantine set by a proxy is in force");
        }
        None
    }

    /// The master restarted: quarantined for the longest TTL a lock can have
    /// (or longer, if another proxy's marker says so).
    fn restarted(&self, run_id: &str, marker: Option<Duration>) -> Option<Bytes> {
        self.stats
            .restarts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some(d) = self.guard.quarantine() else {
            if let Some(m) = marker {
                self.quarantine_for(
                    m,
                    run_id,
                    "restarted; a quarantine set by a proxy is in force",
                );
            } else {
                tracing::warn!(
                    master = %self.url,
                    run_id,
                    "master restarted; not quarantined: max_ttl is not set and this proxy has granted no lock with a TTL (locks from other proxies, or without TTL, are not covered)"
                );
            }
            return None;
        };
        self.quarantine_for(d.max(marker.unwrap_or_default()), run_id, "restarted (its run_id changed): its votes do not count until every lock it may have forgotten has expired");
        self.marker_owed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Some(marker_commands(&self.marker_id(run_id), d))
    }

    /// Quarantines for at least `d` from now; logs and counts it when that
    /// starts a quarantine or lengthens one by more than a second (markers
    /// read at each probe repeat one a few milliseconds longer).
    pub(super) fn quarantine_for(&self, d: Duration, run_id: &str, why: &str) {
        let before = self.quarantine_left();
        self.quarantine.at_least(&self.guard, d);
        if d > before + Duration::from_secs(1) {
            if let Ok(mut w) = self.stats.quarantine_why.lock() {
                *w = why.to_string();
            }
            self.stats
                .quarantines
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                master = %self.url,
                run_id,
                seconds = self.quarantine.left(&self.guard).as_secs_f64().round(),
                "master quarantined: {why}"
            );
        }
    }

    /// The start line of each master: its version and whether it keeps locks.
    fn report_durability(&self, d: Durability, version: &str) {
        match d {
            Durability::Always => {
                tracing::info!(master = %self.url, version, "master keeps locks across a crash (appendonly yes, appendfsync always)");
            }
            Durability::Lossy => tracing::warn!(
                master = %self.url,
                version,
                "master fsyncs its AOF only every second: a crash can lose the last locks and fencing counters (appendfsync always keeps them)"
            ),
            Durability::None if self.guard.cfg.volatile_expected => tracing::info!(
                master = %self.url,
                version,
                "master does not persist locks (appendonly no), as in dev mode"
            ),
            Durability::None => tracing::warn!(
                master = %self.url,
                version,
                "master does not persist locks (appendonly no): a restart forgets its locks and fencing counters; the restart guard quarantines it after a restart, and fencing tokens need appendonly yes"
            ),
            Durability::Unknown => tracing::info!(
                master = %self.url,
                version,
                "master persistence unknown (CONFIG GET appendfsync is not allowed)"
            ),
        }
    }

    /// The probe's `INFO server` reply: a change of `run_id` without a
    /// reconnect is a restart too. Returns what to write next.
    pub(super) fn probed(&self, info: &BytesFrame) -> Option<ProbeNext> {
        if self.quarantine.ended(&self.guard) {
            tracing::info!(master = %self.url, "master quarantine over: its votes count again");
        }
        let run_id = info_field(info, "run_id")?.to_string();
        let change = {
            let mut st = self.guard_state.lock().ok()?;
            let change = compare(st.run_id.as_deref(), &run_id);
            st.run_id = Some(run_id.clone());
            change
        };
        match change {
            Change::Restarted => self.restarted(&run_id, None).map(ProbeNext::WriteMarker),
            Change::FirstSeen | Change::Same => Some(ProbeNext::ReadMarker(marker_pttl_command(
                &self.marker_id(&run_id),
            ))),
        }
    }

    /// The probe's `PTTL` of the marker: another proxy's quarantine is kept;
    /// a quarantine of this proxy's own whose marker is missing (the master
    /// refused it when it was written: a cluster node that had just
    /// restarted answers `CLUSTERDOWN` for a moment) gets it written now.
    /// Returns what to write.
    pub(super) fn marker_probed(&self, reply: &BytesFrame) -> Option<Bytes> {
        let run_id = self.run_id()?;
        let owed = &self.marker_owed;
        match marker_left(reply) {
            Some(d) => {
                owed.store(false, std::sync::atomic::Ordering::Relaxed);
                self.quarantine_for(d, &run_id, "a quarantine set by a proxy is in force");
                None
            }
            None if self.quarantined() && owed.load(std::sync::atomic::Ordering::Relaxed) => Some(
                marker_commands(&self.marker_id(&run_id), self.quarantine_left()),
            ),
            None => None,
        }
    }
}
