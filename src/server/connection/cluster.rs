//! Forwarding to a cluster backend: each command goes where its plan says
//! (the master of its keys' slot, split per slot, every master, one master),
//! its reply arriving in the client's mailbox like a shared connection's.

use std::sync::Arc;

use bytes::BytesMut;

use super::queue::{Hook, Slot};
use super::request::Outgoing;
use super::route::Decision;
use super::{Flow, State};
use crate::command::{Effect, flags, lookup};
use crate::errors;
use crate::protocol::{ArgList, Args, Reply, encode_command};
use crate::server::cluster::{
    Cluster, Conduit, Gather, Merge, Plan, key_slot, plan, split_cursor, upper,
};
use crate::server::multiplex::{Parts, ReplyTo};

/// Which connection a command takes with a cluster backend.
#[derive(Debug)]
enum Via {
    /// The client's own connection, to the master it is pinned to.
    Link,
    /// The shared connections, routed by the command's plan.
    Shared,
    /// Not yet: the other side's replies must arrive first.
    Wait,
    /// Answered by the proxy.
    Reply(Reply),
    /// Held with the transaction whose master is not known yet, answered by
    /// the proxy (`+OK` to `MULTI`, `+QUEUED`).
    Hold(Reply),
    /// The held transaction ends without reaching a node, with this reply.
    Drop(Reply),
}

impl State {
    /// Sends a forwarded command to the cluster.
    ///
    /// Stateless commands take the shared connections. A transaction, a
    /// `WATCH`, a blocking command or a subscription takes the client's own
    /// connection, opened to the master of the slot its keys hash to (a
    /// transaction's first key names it); while it lasts, commands that
    /// belong there follow it. Moving between the two waits for the replies
    /// on the side left, so a node runs each client's commands in order.
    pub(super) fn forward_cluster(&mut self, req: &Outgoing<'_>, effect: Effect) -> Flow {
        let args = req.args;
        let Some(cluster) = self.shared.cluster.clone() else {
            return Flow::Done;
        };
        let mut buf = [0u8; 24];
        let spec = lookup(&args);
        let plan = plan(upper(args.arg(0), &mut buf), spec, &args);
        let blocking = spec.is_some_and(|s| s.has(flags::BLOCKING));
        match self.cluster_via(&cluster, &args, (&effect, blocking), &plan) {
            Via::Wait => Flow::Retry,
            Via::Reply(reply) => {
                self.session.transaction.refused();
                self.reply(reply);
                Flow::Done
            }
            Via::Link => {
                self.forward(req, effect);
                Flow::Done
            }
            Via::Hold(reply) => {
                if let Effect::Multi = effect {
                    self.session.transaction.begin();
                }
                let held = self.tx_held.get_or_insert_with(Default::default);
                req.write_to(&mut held.0);
                held.1 += 1;
                self.reply(reply);
                Flow::Done
            }
            Via::Drop(reply) => {
                self.tx_held = None;
                self.session.transaction.end();
                self.reply(reply);
                Flow::Done
            }
            Via::Shared => self.forward_routed(&cluster, req, &effect, plan),
        }
    }

    fn cluster_via(
        &mut self,
        cluster: &Cluster,
        args: &Args<'_>,
        (effect, blocking): (&Effect, bool),
        plan: &Plan,
    ) -> Via {
        let t = &self.session.transaction;
        let (in_multi, watching) = (t.in_multi(), t.watching());
        if !in_multi {
            self.tx_held = None;
        }
        if !in_multi && !watching {
            self.tx_slot = None;
            if !self.backend.attached() {
                // The connection closed (or failed): the next one may go elsewhere.
                self.pin = None;
            }
        }
        // Subscribed: the node answers, in the pub/sub shape.
        if !self.counting.counted() {
            return self.via_link();
        }
        match effect {
            Effect::Select(db) if !in_multi => {
                return Via::Reply(if *db == 0 {
                    Reply::OK
                } else {
                    errors::select_in_cluster()
                });
            }
            Effect::ClientId => return Via::Reply(Reply::Int(self.session.id as i64)),
            // Which master's connection: one a blocked client is pinned to
            // is not tracked.
            Effect::ClientRef { .. } | Effect::ClientGetRedir | Effect::Tracking(_) => {
                return Via::Reply(errors::not_through_cluster(args.arg(1)));
            }
            Effect::Auth(..) | Effect::HelloAuth { .. } => {
                return Via::Reply(errors::auth_through_cluster());
            }
            // Its master is the one of its first key, not known yet.
            Effect::Multi if !in_multi && !watching => return Via::Hold(Reply::OK),
            Effect::Reset => return self.via_link(),
            Effect::Exec | Effect::Discard if self.tx_held.is_some() => {
                if let Effect::Discard = effect {
                    return Via::Drop(Reply::OK);
                }
                if let Some(reply) = self.session.transaction.doomed_exec() {
                    return Via::Drop(reply);
                }
                return self.link_now(cluster);
            }
            Effect::Exec | Effect::Discard if self.pin.is_none() => {
                // EXEC without MULTI: any master explains.
                if let Some(v) = self.pin_slot(cluster, None) {
                    return v;
                }
                return self.via_link();
            }
            Effect::Multi | Effect::Exec | Effect::Discard => return self.link_now(cluster),
            Effect::Watch if !in_multi => {
                let slot = match plan {
                    Plan::Slot(s) => Some(*s),
                    Plan::Refuse(r) => return Via::Reply(r.clone()),
                    // The node explains what is wrong with it.
                    _ => None,
                };
                if let (Some(s), Some(t)) = (slot, self.tx_slot) {
                    if s != t {
                        return Via::Reply(errors::crossslot());
                    }
                }
                if let Some(v) = self.pin_slot(cluster, slot) {
                    return v;
                }
                self.tx_slot = slot.or(self.tx_slot);
                return self.via_link();
            }
            Effect::Unwatch if !in_multi && !watching => return Via::Shared,
            Effect::Watch | Effect::Unwatch => return self.link_now(cluster),
            Effect::Subscribe => {
                // A shard channel lives on its slot's master; other messages
                // reach every node, so that one serves as well as any.
                let slot = args.get(1).map(key_slot);
                if let Some(v) = self.pin_slot(cluster, slot) {
                    return v;
                }
                return self.via_link();
            }
            _ => {}
        }
        if let (false, Plan::Refuse(r)) = (in_multi, plan) {
            return Via::Reply(r.clone());
        }
        if in_multi {
            return match plan {
                Plan::Slot(s) => {
                    if self.tx_slot.is_some_and(|t| t != *s) {
                        return Via::Reply(errors::crossslot());
                    }
                    if self.tx_held.is_some() || self.pin.is_none() {
                        if let Some(v) = self.pin_slot(cluster, Some(*s)) {
                            return v;
                        }
                        self.release_held();
                    }
                    self.tx_slot = Some(*s);
                    self.via_link()
                }
                Plan::Split(_) => Via::Reply(errors::crossslot()),
                Plan::Refuse(r) => Via::Reply(r.clone()),
                // Keyless: held until a key names the master (when Redis would
                // queue it: a known command of the right arity; anything else
                // goes to a master now, which answers for it).
                _ if self.tx_held.is_some() && queueable(args) => {
                    Via::Hold(Reply::Simple("QUEUED"))
                }
                Plan::Any | Plan::All(_) | Plan::Scan => self.link_now(cluster),
            };
        }
        if let (true, Plan::Slot(s)) = (blocking, plan) {
            if let Some(v) = self.pin_slot(cluster, Some(*s)) {
                return v;
            }
            return self.via_link();
        }
        if watching {
            let here = match plan {
                Plan::Slot(s) => cluster
                    .pin(Some(*s))
                    .is_ok_and(|p| self.pin.as_ref().is_some_and(|q| q.addr == p.addr)),
                Plan::Any => true,
                _ => false,
            };
            if here {
                return self.via_link();
            }
        }
        if self.queue.backend_waiting() > 0 {
            self.link_barrier = true;
            return Via::Wait;
        }
        Via::Shared
    }

    /// The client's own connection, for a command that needs a master now: a
    /// held transaction goes to the one already pinned, or the first.
    fn link_now(&mut self, cluster: &Cluster) -> Via {
        if self.tx_held.is_some() {
            if self.pin.is_none() {
                if let Some(v) = self.pin_slot(cluster, None) {
                    return v;
                }
            }
            self.release_held();
        }
        self.via_link()
    }

    /// Sends the held transaction to the pinned master; the proxy answered
    /// for it, so the master's replies are dropped.
    fn release_held(&mut self) {
        let Some((bytes, n)) = self.tx_held.take() else {
            return;
        };
        self.attach();
        self.backend.out().extend_from_slice(&bytes);
        for _ in 0..n {
            self.queue.push(Slot::Backend {
                hook: Hook::Swallow,
                silent: true,
                patient: false,
            });
        }
        self.counting.forwarded();
    }

    /// The client's own connection, once the shared replies are in.
    fn via_link(&mut self) -> Via {
        if self.route.must_wait() {
            Via::Wait
        } else {
            Via::Link
        }
    }

    /// Pins the client's own connection to the master of `slot` (the first
    /// master for `None`), closing one open elsewhere once it has answered
    /// everything. `Some` when the command cannot go now.
    fn pin_slot(&mut self, cluster: &Cluster, slot: Option<u16>) -> Option<Via> {
        let pin = match cluster.pin(slot) {
            Ok(p) => p,
            Err(e) => return Some(Via::Reply(e)),
        };
        if self.pin.as_ref().is_some_and(|p| p.addr == pin.addr) {
            return None;
        }
        if self.backend.attached() {
            if self.queue.backend_waiting() > 0 {
                self.link_barrier = true;
                return Some(Via::Wait);
            }
            self.backend.reset();
            self.changed.profile = true;
        }
        self.pin = Some(pin);
        None
    }

    /// Sends a command over the shared connections, as its plan says.
    fn forward_routed(
        &mut self,
        cluster: &Cluster,
        req: &Outgoing<'_>,
        effect: &Effect,
        plan: Plan,
    ) -> Flow {
        let args = req.args;
        let proto = self.session.proto;
        let class = self.class(&args, effect);
        match self.route.decide(true, proto, class) {
            Decision::Wait => return Flow::Retry,
            Decision::Shared | Decision::Dedicated => {}
        }
        // The lane: chosen on the first master the command goes to, and kept
        // on every master while the client has requests in flight.
        let first = match &plan {
            Plan::Slot(slot) => Ok(*slot),
            Plan::Split(split) => split.parts.first().map_or(Err(0), |p| Ok(p.0)),
            _ => Err(0),
        };
        let lane = cluster.lane(first, proto, self.route.lane(class), self.now);
        let Some(to) = self.shared_slot(effect, lane) else {
            return Flow::Done;
        };
        let c = cluster;
        let proto = (proto, lane, self.own_conns.as_ref());
        match plan {
            Plan::Slot(slot) => req.with_bytes(|r| c.send_slot(proto, slot, r, to)),
            Plan::Any => req.with_bytes(|r| c.send_master(proto, 0, r, to)),
            Plan::All(merge) => req.with_bytes(|r| fan_out(c, proto, merge, r, to)),
            Plan::Split(split) => {
                let gather: Arc<dyn Parts> =
                    Arc::new(Gather::new(split.merge, split.parts.len(), to));
                let mut sub = BytesMut::new();
                for (i, (slot, indices)) in split.parts.into_iter().enumerate() {
                    sub.clear();
                    let parts = std::iter::once(0).chain(indices).map(|j| args.arg(j));
                    encode_command(&mut sub, parts.collect::<Vec<_>>().into_iter());
                    c.send_slot(proto, slot, &sub, ReplyTo::Part(Arc::clone(&gather), i));
                }
            }
            Plan::Scan => scan(c, proto, &args, to),
            Plan::Refuse(_) => {}
        }
        self.counting.forwarded();
        Flow::Done
    }
}

/// Whether Redis would queue this command in a transaction: known, of the
/// right arity (anything else is left for a master to answer).
fn queueable(args: &Args<'_>) -> bool {
    let Some(spec) = lookup(args) else {
        return false;
    };
    let n = args.len() as i64;
    let arity = i64::from(spec.arity);
    let container = !spec.subcommands.is_empty();
    !container && if arity >= 0 { n == arity } else { n >= -arity }
}

/// Sends `request` to every master; the merge of their replies goes to `to`.
fn fan_out(cluster: &Cluster, proto: Conduit<'_>, merge: Merge, request: &[u8], to: ReplyTo) {
    let n = cluster.masters();
    if n == 0 {
        // No topology yet: the error says so.
        return cluster.send_master(proto, 0, request, to);
    }
    let gather: Arc<dyn Parts> = Arc::new(Gather::new(merge, n, to));
    for i in 0..n {
        let part = ReplyTo::Part(Arc::clone(&gather), i);
        cluster.send_master(proto, i, request, part);
    }
}

/// `SCAN cursor ...`: the cursor names a master and that master's cursor.
fn scan(cluster: &Cluster, proto: Conduit<'_>, args: &Args<'_>, to: ReplyTo) {
    let n = cluster.masters();
    let cursor = std::str::from_utf8(args.arg(1))
        .ok()
        .and_then(|c| c.parse::<u64>().ok());
    let Some(cursor) = cursor.filter(|_| n > 0) else {
        // The node explains an invalid cursor (or the missing topology).
        let mut b = BytesMut::new();
        encode_command(&mut b, args.iter());
        return cluster.send_master(proto, 0, &b, to);
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
    cluster.send_master(proto, index, &b, ReplyTo::Part(gather, 0));
}
