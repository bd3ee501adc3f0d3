//! redlock-proxy: a RESP proxy that runs lock operations as RedLock quorum
//! operations across independent Redis masters, and passes everything else
//! through to a normal Redis backend.
//!
//! Map of the modules, from the wire inwards:
//!
//! - [`protocol`]: framing only — requests (multibulk and inline) with Redis's
//!   limits, reply scanning without decoding, and encoding of the proxy's own
//!   replies in RESP2 or RESP3.
//! - [`command`]: classification — each request becomes a typed
//!   [`command::Command`] once: forwarded, answered locally, a lock operation,
//!   or refused. Includes the key specs of every Redis command.
//! - [`redlock`]: the lock engine — quorum arithmetic, lock scripts, vote
//!   aggregation, and the shared connections to the masters.
//! - [`server`]: the listener, and the per-connection loop that keeps every
//!   reply in request order (its invariant is documented in
//!   `server/connection.rs`).
//! - [`config`]: defaults < file < environment < flags, validated once.
//! - [`errors`]: every error text a client can get from the proxy itself.
//! - [`auth`]: `requirepass` and `[[users]]`, checked by `AUTH` and `HELLO AUTH`.
//! - [`inbox`]: the small queue that gathers one operation's replies from
//!   masters, or a client's replies from a shared backend connection.
//! - [`dev`]: `redlock-proxy dev`, local redis-server children for trying it out.
//! - [`metrics`]: counters and the Prometheus endpoint.
//! - `fuzzing`: entry points for `fuzz/` and the corpus replay test (hidden).

pub mod auth;
pub mod backend;
pub mod command;
pub mod config;
pub mod dev;
pub mod errors;
#[doc(hidden)]
pub mod fuzzing;
pub mod inbox;
pub mod metrics;
pub mod protocol;
pub mod redlock;
pub mod server;
pub mod stream;

pub use config::Config;
pub use server::Proxy;
