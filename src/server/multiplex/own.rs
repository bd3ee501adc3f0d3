//! A client's own connections to the nodes of a cluster backend, for
//! `passthrough.multiplex = false`: opened as it needs them (by whoever
//! routes its requests), closed when it leaves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::SharedConnection;
use crate::backend::cluster::NodeAddr;

/// One connection per node and protocol (`true`: RESP3).
#[derive(Debug, Default)]
pub(crate) struct OwnConnections {
    conns: Mutex<HashMap<(NodeAddr, bool), Arc<SharedConnection>>>,
}

impl OwnConnections {
    /// The connection to `node` in RESP3 or not, opened by `open` the first
    /// time; `None` if the map's lock is poisoned.
    pub(crate) fn get_or_open(
        &self,
        node: &NodeAddr,
        resp3: bool,
        open: impl FnOnce() -> Arc<SharedConnection>,
    ) -> Option<Arc<SharedConnection>> {
        let mut conns = self.conns.lock().ok()?;
        Some(Arc::clone(
            conns.entry((node.clone(), resp3)).or_insert_with(open),
        ))
    }
}

impl Drop for OwnConnections {
    fn drop(&mut self) {
        if let Ok(conns) = self.conns.lock() {
            conns.values().for_each(|c| c.retire());
        }
    }
}
