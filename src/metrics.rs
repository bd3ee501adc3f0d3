//! Counters and histograms, kept where the work happens. This module imports
//! nothing from the rest of the proxy, so every layer can count;
//! `server::prometheus` renders them (with the gauges read at scrape time).

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

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
    /// Clients' own backend connections ended by the reply timeout.
    pub backend_reply_timeouts: AtomicU64,
    /// Clients closed for their output buffer limit.
    pub output_limit: AtomicU64,
    /// Clients closed because all clients' buffers together passed `max_client_memory`.
    pub client_memory_evictions: AtomicU64,
    /// Failed AUTH / HELLO AUTH attempts.
    pub auth_failures: AtomicU64,
    /// AUTH / HELLO AUTH refused unchecked: too many failures from the address.
    pub auth_throttled: AtomicU64,
    /// Requests refused by the user's ACL rules (`-NOPERM`).
    pub acl_denied: AtomicU64,
    /// TLS handshakes with clients that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// Grant or extension replies not delivered because their validity ran out
    /// first (or a lock without expiry whose client had closed its connection).
    pub leases_revoked: AtomicU64,
}

/// A latency histogram in seconds, from 100 µs to about 3 s (doubling).
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

/// What a lock operation did, for `redlock_proxy_lock_operations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// An acquisition (`SET NX`, an acquire script, `LOCK.ACQUIRE`).
    Acquire,
    /// A release script.
    Release,
    /// An extend script.
    Extend,
    /// A read (`GET`, `EXISTS`, `PTTL`, `TTL`, a read script).
    Query,
    /// `DEL` / `UNLINK` of lock keys.
    Delete,
    /// `LOCK.FENCE`.
    Fence,
}

impl LockKind {
    /// Every kind, in label order.
    pub const ALL: [LockKind; 6] = [
        LockKind::Acquire,
        LockKind::Release,
        LockKind::Extend,
        LockKind::Query,
        LockKind::Delete,
        LockKind::Fence,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            LockKind::Acquire => "acquire",
            LockKind::Release => "release",
            LockKind::Extend => "extend",
            LockKind::Query => "query",
            LockKind::Delete => "delete",
            LockKind::Fence => "fence",
        }
    }
}

/// How a lock operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockOutcome {
    /// Granted, released, extended, answered, fenced.
    Ok,
    /// Refused: held by someone else, not the caller's, nothing to delete.
    Refused,
    /// An error reply (the masters' answers did not decide it, or it was invalid).
    Error,
}

impl LockOutcome {
    /// Every outcome, in label order.
    pub const ALL: [LockOutcome; 3] = [LockOutcome::Ok, LockOutcome::Refused, LockOutcome::Error];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            LockOutcome::Ok => "ok",
            LockOutcome::Refused => "refused",
            LockOutcome::Error => "error",
        }
    }
}

/// Lock operations by kind and outcome, and their latency by kind.
#[derive(Debug)]
pub struct LockMetrics {
    counts: [[AtomicU64; 3]; 6],
    latency: [Histogram; 6],
}

impl Default for LockMetrics {
    fn default() -> Self {
        LockMetrics {
            counts: Default::default(),
            latency: std::array::from_fn(|_| latency_histogram()),
        }
    }
}

impl LockMetrics {
    /// Counts one operation and its duration.
    pub fn record(&self, kind: LockKind, outcome: LockOutcome, took: std::time::Duration) {
        self.counts[kind as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency[kind as usize].observe(took.as_secs_f64());
    }

    /// Operations of `kind` that ended with `outcome`.
    pub fn count(&self, kind: LockKind, outcome: LockOutcome) -> u64 {
        self.counts[kind as usize][outcome as usize].load(Ordering::Relaxed)
    }

    /// The latency histogram of `kind`.
    pub fn latency(&self, kind: LockKind) -> &Histogram {
        &self.latency[kind as usize]
    }
}
