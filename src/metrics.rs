//! Counters, kept where the work happens. This module imports nothing from the
//! rest of the proxy, so every layer can count; `server::metrics_endpoint`
//! renders them for Prometheus.

use std::sync::atomic::AtomicU64;

/// Connection and command counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Clients accepted.
    pub accepted: AtomicU64,
    /// Clients refused at `max_clients`.
    pub rejected: AtomicU64,
    /// Requests forwarded to the passthrough backend.
    pub forwarded: AtomicU64,
    /// Requests answered by the proxy.
    pub local: AtomicU64,
    /// Lock operations.
    pub lock_ops: AtomicU64,
    /// Requests refused with an error.
    pub refused: AtomicU64,
    /// Protocol errors (the connection was closed).
    pub protocol_errors: AtomicU64,
    /// Backend connections that failed.
    pub backend_errors: AtomicU64,
    /// Clients closed for their output buffer limit.
    pub output_limit: AtomicU64,
    /// Clients closed because all clients' buffers together passed `max_client_memory`.
    pub client_memory_evictions: AtomicU64,
    /// Failed AUTH / HELLO AUTH attempts.
    pub auth_failures: AtomicU64,
    /// Grant or extension replies not delivered because their validity ran out
    /// first (or a lock without expiry whose client had closed its connection).
    pub leases_revoked: AtomicU64,
}
