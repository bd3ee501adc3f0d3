//! The outbound-connection layer: every connection the proxy opens to a Redis
//! server goes through here — a client's own backend connection, the shared
//! (multiplexed) backend connections, and the lock masters.
//!
//! - [`Endpoint`]: where a server is and how to reach it (URL, timeouts,
//!   framing limits); [`Endpoint::connect`] connects within the timeout and runs
//!   the [`Handshake`].
//! - [`Handshake`]: the commands that bring a fresh connection to the state its
//!   user needs (AUTH from the URL, HELLO, SELECT, CLIENT SETNAME/SETINFO).
//! - [`Connection`]: the open socket with its output and input buffers — write
//!   what the socket takes, read what is there, find where each reply ends.
//! - [`BackendError`]: what went wrong, classified, with the server it concerns.
//! - `cluster`: Redis Cluster's slots, topology and redirections, for every
//!   user of a cluster (the passthrough router, cluster voters).
//!
//! Nothing here knows what the bytes mean beyond reply framing: routing replies
//! to clients, voting on them, counting them, is the callers' business.

pub(crate) mod cluster;
mod connection;
mod endpoint;
mod error;
mod handshake;
mod sentinel;

pub(crate) use connection::Connection;
pub(crate) use endpoint::Endpoint;
pub(crate) use error::{BackendError, ErrorKind};
pub(crate) use handshake::Handshake;
