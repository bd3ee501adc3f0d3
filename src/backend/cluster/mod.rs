//! What every user of a Redis Cluster needs, whatever it sends: which slot a
//! key hashes to (`slot.rs`), which master serves each slot as a node reports
//! it (`topology.rs`), and the redirections a node answers with instead
//! (`redirect.rs`); and reading the topology from a node.
//!
//! Both the passthrough backend's router (`server/cluster/`) and a RedLock
//! voter that is a cluster (`redlock/voter/`) build on these. Nothing here
//! routes: where a request goes, and what happens to its reply, is theirs.

mod redirect;
mod slot;
mod topology;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

pub(crate) use self::redirect::Redirect;
pub(crate) use self::slot::{SLOTS, hash_tag, key_slot};
pub(crate) use self::topology::{NodeAddr, Topology, UNOWNED};
use super::{Endpoint, Handshake};
use crate::protocol::encode_command;

/// Asks the node at `endpoint` (which is `addr`) for the cluster's topology:
/// `CLUSTER SHARDS`, or `CLUSTER SLOTS` before Redis 7; `tls` picks the
/// nodes' TLS ports. `None` when it cannot tell (down, not a cluster node,
/// a reply that does not parse).
pub(crate) async fn ask_topology(
    endpoint: &Endpoint,
    addr: &NodeAddr,
    tls: bool,
) -> Option<Topology> {
    let mut conn = endpoint.connect(&Handshake::new()).await.ok()?;
    encode_command(conn.out(), [&b"CLUSTER"[..], b"SHARDS"].into_iter());
    let reply = conn.read_reply().await.ok()?;
    let (value, _) = decode(&reply).ok()??;
    if let OwnedFrame::Error(_) = value {
        // Before Redis 7.
        encode_command(conn.out(), [&b"CLUSTER"[..], b"SLOTS"].into_iter());
        let reply = conn.read_reply().await.ok()?;
        return Topology::from_slots(&decode(&reply).ok()??.0, addr);
    }
    Topology::from_shards(&value, addr, tls)
}
