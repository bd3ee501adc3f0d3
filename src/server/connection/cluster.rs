//! Forwarding to a cluster backend: each command goes where its plan says
//! (the master of its keys' slot, split per slot, every master, one master),
//! its reply arriving in the client's mailbox like a shared connection's.

use std::sync::Arc;

use bytes::BytesMut;

use super::dispatch::with_request;
use super::route::Decision;
use super::{Flow, State};
use crate::command::Effect;
use crate::errors;
use crate::protocol::{ArgList, Args, Proto, Reply, RequestParser, encode_command};
use crate::server::cluster::{Cluster, Gather, Merge, Plan, plan, split_cursor};
use crate::server::multiplex::ReplyTo;

impl State {
    /// Sends a forwarded command to the cluster.
    pub(super) fn forward_cluster(
        &mut self,
        args: Args<'_>,
        raw: &[u8],
        inline: bool,
        effect: Effect,
    ) -> Flow {
        let Some(cluster) = self.shared.cluster.clone() else {
            return Flow::Done;
        };
        match effect {
            Effect::Select(0) => {
                self.reply(Reply::OK);
                return Flow::Done;
            }
            Effect::Select(_) => {
                self.reply(errors::select_in_cluster());
                return Flow::Done;
            }
            Effect::Multi
            | Effect::Exec
            | Effect::Discard
            | Effect::Watch
            | Effect::Unwatch
            | Effect::Subscribe
            | Effect::Monitor
            | Effect::Reset
            | Effect::Plain { shareable: false } => {
                self.reply(errors::not_through_cluster(args.arg(0)));
                return Flow::Done;
            }
            _ => {}
        }
        let name = args.arg(0).to_ascii_uppercase();
        let plan = plan(&name, &args);
        if let Plan::Refuse(reply) = plan {
            self.session.transaction.refused();
            self.reply(reply);
            return Flow::Done;
        }
        let proto = self.session.proto;
        match self.route.decide(true, proto) {
            Decision::Wait => return Flow::Retry,
            Decision::Shared | Decision::Dedicated => {}
        }
        let Some((to, preload)) = self.shared_slot(&effect) else {
            return Flow::Done;
        };
        let preload = preload.as_ref().map(|(s, t)| (s, t));
        let c = &cluster;
        match plan {
            Plan::Slot(slot) => with_request(&args, raw, inline, |r| {
                c.send_slot(proto, slot, r, to, preload);
            }),
            Plan::Any => with_request(&args, raw, inline, |r| {
                c.send_master(proto, 0, r, to, preload);
            }),
            Plan::All(merge) => with_request(&args, raw, inline, |r| {
                fan_out(c, proto, merge, r, to);
            }),
            Plan::Split(split) => {
                let gather = Arc::new(Gather::new(split.merge, split.parts.len(), to));
                let mut sub = BytesMut::new();
                for (i, (slot, indices)) in split.parts.into_iter().enumerate() {
                    sub.clear();
                    let parts = std::iter::once(0).chain(indices).map(|j| args.arg(j));
                    encode_command(&mut sub, parts.collect::<Vec<_>>().into_iter());
                    c.send_slot(
                        proto,
                        slot,
                        &sub,
                        ReplyTo::Part(Arc::clone(&gather), i),
                        None,
                    );
                }
            }
            Plan::Scan => scan(c, proto, &args, to),
            Plan::Refuse(_) => {}
        }
        self.counting.forwarded();
        Flow::Done
    }
}

/// Sends `request` to every master; the merge of their replies goes to `to`.
fn fan_out(cluster: &Cluster, proto: Proto, merge: Merge, request: &[u8], to: ReplyTo) {
    let n = cluster.masters();
    if n == 0 {
        // No topology yet: the error says so.
        return cluster.send_master(proto, 0, request, to, None);
    }
    let gather = Arc::new(Gather::new(merge, n, to));
    for i in 0..n {
        let part = ReplyTo::Part(Arc::clone(&gather), i);
        cluster.send_master(proto, i, request, part, None);
    }
}

/// `SCAN cursor ...`: the cursor names a master and that master's cursor.
fn scan(cluster: &Cluster, proto: Proto, args: &Args<'_>, to: ReplyTo) {
    let n = cluster.masters();
    let cursor = std::str::from_utf8(args.arg(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok());
    let Some(cursor) = cursor.filter(|_| n > 0) else {
        // The node explains an invalid cursor (or the missing topology).
        let mut b = BytesMut::new();
        encode_command(&mut b, args.iter());
        return cluster.send_master(proto, 0, &b, to, None);
    };
    let (index, node_cursor) = split_cursor(cursor, n);
    let node_cursor = node_cursor.to_string();
    let mut b = BytesMut::new();
    let rewritten = args
        .iter()
        .enumerate()
        .map(|(i, a)| if i == 1 { node_cursor.as_bytes() } else { a });
    encode_command(&mut b, rewritten.collect::<Vec<_>>().into_iter());
    let gather = Arc::new(Gather::new(Merge::Scan { index, n }, 1, to));
    cluster.send_master(proto, index, &b, ReplyTo::Part(gather, 0), None);
}

/// The hash slot of a request the proxy sends itself (a split script's data
/// part), `None` if it has no keys.
pub(super) fn request_slot(request: &[u8]) -> Option<u16> {
    let mut parser = RequestParser::new(crate::protocol::FrameLimits::default());
    parser.parse(request).ok()??;
    let args = parser.args(request);
    let name = args.get(0)?.to_ascii_uppercase();
    match plan(&name, &args) {
        Plan::Slot(slot) => Some(slot),
        _ => None,
    }
}
