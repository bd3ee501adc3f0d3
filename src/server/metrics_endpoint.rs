//! The Prometheus text endpoint (`--metrics-listen`): `GET /metrics` renders the
//! counters of [`crate::metrics`], the lock engine and the masters.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::redlock::master::MasterState;

/// Renders every counter in the Prometheus text format.
pub(crate) fn render(shared: &Shared) -> String {
    let mut s = String::new();
    let m = &shared.metrics;
    let mut counter = |name: &str, help: &str, v: u64| {
        let _ = writeln!(
            s,
            "# HELP redlock_proxy_{name} {help}\n# TYPE redlock_proxy_{name} counter\nredlock_proxy_{name} {v}"
        );
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    counter(
        "clients_accepted_total",
        "Clients accepted.",
        get(&m.accepted),
    );
    counter(
        "clients_rejected_total",
        "Clients refused at max_clients.",
        get(&m.rejected),
    );
    counter(
        "commands_forwarded_total",
        "Requests forwarded to the passthrough backend.",
        get(&m.forwarded),
    );
    counter(
        "commands_local_total",
        "Requests answered by the proxy.",
        get(&m.local),
    );
    counter(
        "lock_operations_total",
        "Lock operations run on the masters.",
        get(&m.lock_ops),
    );
    counter(
        "commands_refused_total",
        "Requests refused with an error.",
        get(&m.refused),
    );
    counter(
        "protocol_errors_total",
        "Connections closed for a protocol error.",
        get(&m.protocol_errors),
    );
    counter(
        "passthrough_errors_total",
        "Passthrough backend connections that failed.",
        get(&m.backend_errors),
    );
    counter(
        "output_limit_disconnects_total",
        "Clients closed for their output buffer limit.",
        get(&m.output_limit),
    );
    counter(
        "client_memory_evictions_total",
        "Clients closed because all clients' buffers passed max_client_memory.",
        get(&m.client_memory_evictions),
    );
    counter(
        "leases_revoked_total",
        "Grant or extension replies not delivered because their validity ran out first.",
        get(&m.leases_revoked),
    );
    counter(
        "auth_failures_total",
        "Failed authentication attempts.",
        get(&m.auth_failures),
    );
    let l = &shared.engine.stats;
    counter(
        "locks_granted_total",
        "Acquisitions granted.",
        get(&l.granted),
    );
    counter(
        "locks_refused_total",
        "Acquisitions refused for lack of a quorum.",
        get(&l.refused),
    );
    counter(
        "locks_expired_total",
        "Acquisitions refused for too little validity.",
        get(&l.expired),
    );
    counter("lock_releases_total", "Releases.", get(&l.releases));
    counter(
        "lock_extends_total",
        "Extensions that succeeded.",
        get(&l.extended),
    );
    counter(
        "lock_extend_failures_total",
        "Extensions that failed.",
        get(&l.extend_failed),
    );
    counter("lock_queries_total", "Reads of lock keys.", get(&l.queries));
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_clients Clients connected.\n# TYPE redlock_proxy_clients gauge\nredlock_proxy_clients {}",
        shared.clients()
    );
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_client_buffer_bytes Bytes buffered for all clients.\n# TYPE redlock_proxy_client_buffer_bytes gauge\nredlock_proxy_client_buffer_bytes {}",
        shared.registry.buffered()
    );
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_up Whether the master's connection is up.\n# TYPE redlock_proxy_master_up gauge"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_up{{master=\"{}\"}} {}",
            m.url.addr(),
            (m.state() == MasterState::Up) as u8
        );
    }
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_owed_releases Releases owed to each master, retried until confirmed.\n# TYPE redlock_proxy_master_owed_releases gauge"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_owed_releases{{master=\"{}\"}} {}",
            m.url.addr(),
            get(&m.stats.owed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_owed_shed_total Owed releases dropped because too many were owed.\n# TYPE redlock_proxy_master_owed_shed_total counter"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_owed_shed_total{{master=\"{}\"}} {}",
            m.url.addr(),
            get(&m.stats.owed_shed)
        );
    }
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_quarantined Whether the master's votes are distrusted since it restarted (the restart guard).\n# TYPE redlock_proxy_master_quarantined gauge"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_quarantined{{master=\"{}\"}} {}",
            m.url.addr(),
            m.quarantined() as u8
        );
    }
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_restarts_total Restarts seen (a new run_id).\n# TYPE redlock_proxy_master_restarts_total counter"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_restarts_total{{master=\"{}\"}} {}",
            m.url.addr(),
            get(&m.stats.restarts)
        );
    }
    let _ = writeln!(
        s,
        "# HELP redlock_proxy_master_requests_total Requests written to each master.\n# TYPE redlock_proxy_master_requests_total counter"
    );
    for m in shared.engine.masters() {
        let _ = writeln!(
            s,
            "redlock_proxy_master_requests_total{{master=\"{}\"}} {}",
            m.url.addr(),
            get(&m.stats.sent)
        );
    }
    s
}

/// Serves `GET /metrics` on `addr` until `shutdown`.
pub(crate) async fn serve(addr: String, shared: Arc<Shared>, shutdown: CancellationToken) {
    let listener = match TcpListener::bind(&addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot listen for metrics");
            return;
        }
    };
    loop {
        let (mut stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = shutdown.cancelled() => return,
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if request.starts_with("GET /metrics ") {
                ("200 OK", render(&shared))
            } else {
                ("404 Not Found", "see /metrics\n".to_string())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
