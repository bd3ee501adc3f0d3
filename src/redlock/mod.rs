//! The RedLock side of the proxy.
//!
//! - `quorum`: the arithmetic (quorum, drift, validity, timeouts) — pure.
//! - `scripts`: which scripts are lock scripts, and the texts learned — pure
//!   apart from a shared map.
//! - `op`: the engine's input, a typed [`op::LockOp`] (parsed by `command::lock`).
//! - `vote`: per-master replies → one client reply — pure.
//! - `master`: one shared pipelined connection per master, reconnecting.
//! - `voter`: a voter of the quorum — a single master, or a Redis Cluster
//!   whose shards are masters of their own.
//! - `engine`: runs an operation on all masters and decides.

pub mod engine;
pub mod master;
pub mod op;
pub mod quorum;
pub mod scripts;
pub mod vote;
pub mod voter;

pub use engine::{Engine, EngineConfig, Grant, Lease, Outcome};
