//! redlock-proxy: a RESP proxy that runs lock operations as RedLock quorum
//! operations across independent Redis masters, and passes everything else
//! through to a normal Redis backend.
//!
//! # Layers
//!
//! Bottom up; a module uses only modules of lower layers (`tests/it/layers.rs`
//! checks it).
//!
//! 1. The wire and small self-contained pieces: [`protocol`] (request framing
//!    with Redis's limits, reply scanning without decoding, encoding the proxy's
//!    own replies, integers as Redis parses them); `stream` (a socket, plain or
//!    TLS); [`tls`] (certificates and keys into rustls configurations); `inbox`
//!    (the small queue that gathers replies for one task); `auth`
//!    (`requirepass` and `[[users]]` as configured); [`metrics`] (counters and histograms);
//!    [`warnings`] (the last warnings logged, for the status page).
//! 2. `errors` (every error text a client can get from the proxy itself) and
//!    [`config`] (defaults < file < environment < flags, parsed into typed
//!    values once).
//! 3. `backend`: every outbound connection — connect, handshake, write what the
//!    socket takes, find where replies end.
//! 4. [`redlock`]: the lock engine — quorum arithmetic, lock scripts, vote
//!    aggregation, the masters' connections; it runs typed [`redlock::op::LockOp`]s.
//! 5. [`command`]: classification — each request becomes a typed
//!    [`command::Command`] once (forwarded, answered locally, a lock operation,
//!    or refused); lock requests are parsed into `LockOp`s here.
//! 6. [`acl`]: users and their permissions in Redis's ACL language, compiled
//!    against the command table; the check of a request, `ACL LOG`, the
//!    failed-login limit.
//! 7. [`server`]: the listeners (plain and TLS), shutdown, live reload, the
//!    operations endpoint (metrics, health), `INFO`/`PROXY`, multiplexed
//!    backend connections, the Redis Cluster router (slot routing, redirections,
//!    split commands), and the per-connection state machine that keeps every
//!    reply in request order (its invariant is written in
//!    `server/connection/mod.rs`).
//! 8. [`dev`] (`redlock-proxy dev`: local redis-server children), `fuzzing`
//!    (entry points for `fuzz/`), and the binary, `main.rs`.

pub mod acl;
mod auth;
mod backend;
pub mod command;
pub mod config;
pub mod dev;
mod errors;
#[doc(hidden)]
pub mod fuzzing;
mod inbox;
pub mod metrics;
pub mod protocol;
pub mod redlock;
pub mod server;
mod stream;
pub mod tls;
pub mod warnings;

pub use config::Config;
pub use server::Proxy;
