//! Replies the proxy builds from its own state.

use bytes::Bytes;

use super::Shared;
use super::session::Session;
use crate::protocol::{Proto, Reply};

/// The `HELLO` reply: what Redis reports, with the backend's version.
pub fn hello(shared: &Shared, session: &Session, proto: Proto) -> Reply {
    let version = shared
        .backend_version
        .read()
        .map(|v| v.clone())
        .unwrap_or_else(|_| "7.0.0".into());
    let kv = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
    Reply::Map(vec![
        kv("server", Reply::bulk_static("redis")),
        kv("version", Reply::Bulk(Bytes::from(version))),
        kv("proto", Reply::Int(proto.version())),
        kv("id", Reply::Int(session.id as i64)),
        kv("mode", Reply::bulk_static("standalone")),
        kv("role", Reply::bulk_static("master")),
        kv("modules", Reply::Array(Vec::new())),
    ])
}
