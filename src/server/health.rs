//! Readiness: a background probe of the passthrough backend, and the masters'
//! own connection states. `/readyz` answers 200 only while a quorum of masters
//! and the backend are reachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::backend::{Connection, Handshake};

/// How often the backend is probed.
pub(crate) const PROBE_EVERY: Duration = Duration::from_secs(1);

/// What the probes found.
#[derive(Debug, Default)]
pub(crate) struct Health {
    backend_up: AtomicBool,
}

impl Health {
    /// Whether the backend answered the last probe.
    pub(crate) fn backend_up(&self) -> bool {
        self.backend_up.load(Ordering::Relaxed)
    }
}

/// Whether the proxy can serve both halves: a quorum of masters reachable
/// (connected), and the backend answering. Why not, when it cannot.
pub(crate) fn ready(shared: &Shared) -> Result<(), String> {
    let engine = shared.engine();
    let up = engine.masters_up();
    let q = engine.quorum_size();
    let mut why = Vec::new();
    if up < q {
        why.push(format!(
            "{up} of {} masters reachable, {q} needed",
            engine.voters().len()
        ));
    }
    if !shared.health.backend_up() {
        why.push("the passthrough backend does not answer".to_string());
    }
    if let Some(cluster) = &shared.cluster {
        let unserved = cluster.unserved_slots();
        if unserved > 0 {
            why.push(format!(
                "{unserved} cluster hash slots have no master the proxy knows"
            ));
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

/// Probes the backend with `PING` every [`PROBE_EVERY`] on a connection of its
/// own (with a cluster backend: whether its topology is known), until
/// `shutdown`.
pub(crate) async fn probe_backend(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut conn: Option<Connection> = None;
    let handshake = Handshake::new().ping();
    loop {
        if let Some(cluster) = &shared.cluster {
            // The masters answer the router's requests and topology reads: the
            // backend is up while a topology is known (slots without a master
            // are reported apart).
            let up = cluster.masters() > 0;
            shared.health.backend_up.store(up, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(PROBE_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        }
        let ok = tokio::time::timeout(PROBE_EVERY, async {
            if conn.as_ref().is_some_and(|c| !shared.backend.is_current(c)) {
                // The sentinels switched the master: probe the new one.
                conn = None;
            }
            if conn.is_none() {
                conn = shared.backend.connect(&handshake).await.ok();
                return conn.is_some();
            }
            let Some(c) = conn.as_mut() else {
                return false;
            };
            c.out().extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
            match c.read_reply().await {
                Ok(reply) => reply.starts_with(b"+PONG"),
                Err(_) => false,
            }
        })
        .await
        .unwrap_or(false);
        if !ok {
            conn = None;
        }
        shared.health.backend_up.store(ok, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
