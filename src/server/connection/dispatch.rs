//! Each request, classified once, goes where it belongs: forwarded (over the
//! client's own backend connection or a shared one), answered by the proxy, or
//! run as a lock operation; every path takes its slot in the reply queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::queue::{Hook, Revocable, Slot};
use super::request::Outgoing;
use super::resync::Counting;
use super::route::{Class, Decision, Route};
use super::{Flow, Input, State};
use crate::command::{Command, Context, Effect, Local, Multi};
use crate::errors;
use crate::protocol::{ArgList, Args, Proto, ProtocolError, Reply, encode_command};
use crate::redlock::Outcome;
use crate::redlock::op::LockOp;
use crate::server::multiplex::ReplyTo;

impl State {
    /// The connection state classification depends on.
    fn context(&self) -> Context {
        let t = &self.session.transaction;
        Context {
            multi: match (t.in_multi(), t.lost()) {
                (false, _) => Multi::Off,
                (true, false) => Multi::Queueing,
                (true, true) => Multi::Lost,
            },
            uncounted: !self.counting.counted(),
            attached: self.backend.attached(),
            authenticated: self.session.authenticated,
            proxy_auth: self.settings.proxy_auth,
        }
    }

    /// Handles one request (`raw`: its bytes as received; `inline`: an inline
    /// command, re-encoded as RESP before forwarding).
    pub(super) fn handle(&mut self, args: Args<'_>, raw: &[u8], inline: bool) -> Flow {
        let (mut cmd, spec) = self.live.classifier.classify_spec_of(&args, self.context());
        let denied = self.permitted(&args, &cmd, spec).err();
        // A refused EXEC still ends the transaction, as in Redis: it goes
        // on as a doomed one (the backend's half discarded).
        let exec = matches!(cmd, Command::Forward(Effect::Exec));
        if denied.is_some() && !exec {
            cmd = Command::Refuse(Reply::Nil);
        }
        if self.counting.must_resync() && self.needs_slot(&cmd) {
            if !self.backend.attached() {
                // The subscriptions died with the connection: counting again.
                self.counting = Counting::Counted;
            } else {
                self.start_resync();
                return Flow::Retry;
            }
        }
        self.note_command(spec.map(|s| s.name));
        if let Some(r) = &denied {
            let reply = self.refused_by_acl(&args, r);
            match (exec, reply) {
                (true, _) if self.session.transaction.in_multi() => {
                    self.session.transaction.exec_denied();
                }
                // Redis answers any refused EXEC so, in MULTI or not.
                (true, Reply::Error(e)) => {
                    cmd = Command::Refuse(errors::with_code(
                        "EXECABORT",
                        format_args!("Transaction discarded because of: {e}"),
                    ));
                }
                (_, reply) => cmd = Command::Refuse(reply),
            }
        }
        let cmd = self.login_through(&args, cmd);
        // A monitor may not touch keys (Redis refuses it, as to a replica).
        let monitor_refused =
            self.session.monitor && matches!(cmd, Command::Forward(_)) && touches_keys(&args);
        if self.shared.monitors.active() && !matches!(cmd, Command::Refuse(_)) && !monitor_refused {
            self.shared
                .monitors
                .feed(self.session.db, &self.origin, &args);
        }
        let m = &self.shared.metrics;
        match cmd {
            Command::Forward(_) if monitor_refused => {
                self.reply(errors::err("Replica can't interact with the keyspace"));
            }
            Command::Forward(effect) => {
                m.forwarded.fetch_add(1, Ordering::Relaxed);
                let text = match &effect {
                    Effect::EvalText(text) => Some(text.clone()),
                    _ => None,
                };
                let mut swap = None;
                if let (Effect::ClientRef { at, id, tracking }, None) =
                    (&effect, &self.shared.cluster)
                {
                    match self.shared.registry.backend_id(*id) {
                        Some(Some(there)) => swap = Some((*at, Bytes::from(there.to_string()))),
                        // Not blocked: it has no connection to block on.
                        _ if tracking.is_none() => {
                            self.reply(Reply::Int(0));
                            return Flow::Done;
                        }
                        Some(None) => {
                            self.reply(errors::redirect_without_connection(*id));
                            return Flow::Done;
                        }
                        None => {
                            self.reply(errors::err(
                                "The client ID you want redirect to does not exist",
                            ));
                            return Flow::Done;
                        }
                    }
                }
                let req = Outgoing::new(args, raw, inline)
                    .sent_as_eval(text)
                    .with_arg(swap);
                if self.shared.cluster.is_some() {
                    return self.forward_cluster(&req, effect);
                }
                let shareable =
                    !matches!(self.route, Route::Dedicated) && self.shareable(&args, &effect);
                let class = self.class(&args, &effect);
                match self.route.decide(shareable, self.session.proto, class) {
                    Decision::Wait => return Flow::Retry,
                    Decision::Shared => self.forward_shared(&req, &effect, class),
                    Decision::Dedicated => self.forward(&req, effect),
                }
            }
            Command::Local(local) => {
                m.local.fetch_add(1, Ordering::Relaxed);
                if !self.counting.counted()
                    && !matches!(local, Local::Quit)
                    && !self.session.monitor
                {
                    self.reply(errors::pubsub_context(args.arg(0)));
                } else {
                    self.local(local);
                }
            }
            Command::Lock(op) => {
                m.lock_ops.fetch_add(1, Ordering::Relaxed);
                if self.session.monitor {
                    self.reply(errors::err("Replica can't interact with the keyspace"));
                } else if !self.counting.counted() {
                    self.reply(errors::pubsub_context(args.arg(0)));
                } else {
                    self.lock(op);
                }
            }
            Command::Refuse(reply) => {
                m.refused.fetch_add(1, Ordering::Relaxed);
                self.session.transaction.refused();
                self.reply(reply);
            }
        }
        Flow::Done
    }

    /// Whether handling `cmd` while replies are not counted needs a slot (so a
    /// resynchronisation first).
    fn needs_slot(&self, cmd: &Command) -> bool {
        match cmd {
            Command::Forward(Effect::ScriptExists(_)) => true,
            Command::Forward(Effect::Exec) => self.session.transaction.doomed_exec().is_some(),
            // With a cluster, whether the client is still subscribed decides
            // which connection the command takes.
            Command::Forward(Effect::Subscribe) => false,
            Command::Forward(_) => self.shared.cluster.is_some(),
            _ => true,
        }
    }

    fn start_resync(&mut self) {
        let marker = self.counting.resync(self.shared.nonce, self.session.id);
        encode_command(self.backend.out(), [&b"PING"[..], &marker].into_iter());
        self.queue.push(Slot::Resync);
    }

    /// Opens the client's own backend connection if there is none: to the
    /// backend, or with a cluster to the master it is pinned to (none yet: the
    /// requests wait in the link's queue until the transaction's first key
    /// names it).
    pub(super) fn attach(&mut self) {
        if self.backend.attached() {
            return;
        }
        let to = match (&self.shared.cluster, &self.pin) {
            (None, _) => &self.shared.backend,
            (Some(_), Some(pin)) => &pin.endpoint,
            (Some(_), None) => return,
        };
        let handshake = self.session.handshake();
        if let Some(warm) = &self.shared.warm {
            // A ready connection, when the session differs from it only in
            // steps that can follow as ordinary commands.
            let base = crate::server::warm::Warm::handshake(self.session.proto);
            if let Some((rest, n)) = handshake.rest_after(&base, warm.backend().url()) {
                if let Some(conn) = warm.take(self.session.proto) {
                    self.backend.attach_open(warm.backend(), conn);
                    self.changed.profile = true;
                    self.backend.out().extend_from_slice(&rest);
                    for _ in 0..n {
                        self.queue.push(Slot::Backend {
                            hook: Hook::Swallow,
                            silent: true,
                            patient: false,
                        });
                    }
                    return;
                }
            }
        }
        self.backend.attach(to, handshake);
    }

    /// Sends a command of the proxy's own to the backend (if attached and
    /// counting), whose reply is dropped. Returns whether it was sent.
    pub(super) fn send_internal(&mut self, args: &[&[u8]]) -> bool {
        if !self.backend.attached() || !self.counting.counted() {
            return false;
        }
        encode_command(self.backend.out(), args.iter().copied());
        self.queue.push(Slot::Backend {
            hook: Hook::Swallow,
            silent: true,
            patient: false,
        });
        true
    }

    /// Whether a command can go over a shared connection: no connection state in
    /// the command or the session.
    fn shareable(&self, args: &Args<'_>, effect: &Effect) -> bool {
        let s = &self.session;
        let command_ok = match effect {
            Effect::Plain { shareable, .. } => *shareable,
            Effect::None
            | Effect::EvalText(_)
            | Effect::Control
            | Effect::ScriptFlush
            | Effect::InfoWithProxy => crate::command::shareable(args),
            _ => false,
        };
        command_ok
            && s.backend_auth.is_none()
            && !s.tracking
            && !s.transaction.in_multi()
            && !s.transaction.watching()
            && self.counting.counted()
            && s.db == self.settings.default_db
    }

    /// Which lanes of the shared connections a command may take: scripts,
    /// functions and writes during a pause the backend may hold for long,
    /// so they go where they hold nobody else (see `multiplex/lanes.rs`).
    pub(super) fn class(&self, args: &Args<'_>, effect: &Effect) -> Class {
        match effect {
            Effect::Control => Class::Control,
            Effect::EvalText(_) | Effect::Plain { script: true, .. } => Class::Held,
            _ if self.shared.writes_paused() && crate::command::held_by_write_pause(args) => {
                Class::Held
            }
            _ => Class::Main,
        }
    }

    /// Sends a command over the shared connections of the session's
    /// protocol, on the lane the route says (see `multiplex/lanes.rs`).
    fn forward_shared(&mut self, req: &Outgoing<'_>, effect: &Effect, class: Class) {
        let proto = self.session.proto;
        let Some(pool) = &self.shared.multiplex else {
            return;
        };
        let lane = pool.lanes(proto).resolve(self.route.lane(class), self.now);
        let Some(to) = self.shared_slot(effect, lane) else {
            return;
        };
        if let Some(pool) = &self.shared.multiplex {
            let conn = pool.lanes(proto).get(lane);
            req.with_bytes(|request| conn.send(request, to));
        }
        self.counting.forwarded();
    }

    /// The bookkeeping of a request sent over lane `lane` of the shared
    /// connections (or a cluster's): its slot in the reply queue, and where
    /// its reply goes.
    pub(super) fn shared_slot(&mut self, effect: &Effect, lane: usize) -> Option<ReplyTo> {
        if let Effect::ScriptFlush = effect {
            self.live.classifier.scripts.flush();
        }
        let seq = (!self.session.take_silent()).then(|| self.queue.push(Slot::Pending));
        match (effect, seq) {
            (Effect::InfoWithProxy, Some(seq)) => {
                let section = crate::server::info::proxy_section(&self.shared);
                let hook = Hook::AppendInfo(Bytes::from(section));
                self.shared_hooks.push((seq, hook));
            }
            (Effect::ScriptExists(patch), Some(seq)) => {
                let hook = Hook::ScriptExists(patch.clone());
                self.shared_hooks.push((seq, hook));
            }
            _ => {}
        }
        let mailbox = self.route.sent(self.session.proto, lane)?;
        Some(ReplyTo::Client(mailbox, seq))
    }

    /// Replies from a shared connection: this one, and any others already in
    /// (they come in bursts, taken together). The last one lifts a barrier.
    pub(super) fn shared_replies(&mut self, seq: Option<u64>, reply: bytes::Bytes) {
        let mut arrived = std::mem::take(&mut self.arrived);
        arrived.push((seq, reply));
        loop {
            for (seq, reply) in arrived.drain(..) {
                self.shared_reply(seq, reply);
            }
            if !self.route.take_arrived(&mut arrived) {
                break;
            }
        }
        self.arrived = arrived;
    }

    fn shared_reply(&mut self, seq: Option<u64>, reply: bytes::Bytes) {
        // A client that reads large values would hold everyone's small
        // replies behind each of them on the shared connection: its next
        // commands take a connection of its own.
        if reply.len() >= self.settings.output_high_water {
            self.route.too_heavy();
        }
        // No sequence number: the client silenced this reply.
        if let Some(seq) = seq {
            let reply = match self.shared_hooks.iter().position(|(s, _)| *s == seq) {
                Some(i) => {
                    let (_, hook) = self.shared_hooks.swap_remove(i);
                    super::replies::rewrite(&hook, &reply, self.session.proto).unwrap_or(reply)
                }
                None => reply,
            };
            self.queue.complete(seq, reply, None);
        }
        self.wake |= self.route.received();
    }

    /// Sends a command over the client's own backend connection.
    pub(super) fn forward(&mut self, req: &Outgoing<'_>, effect: Effect) {
        let mut hook = Hook::None;
        // (Un)subscribe and MONITOR replies cannot be counted: from here on, and
        // for the command itself, nothing is (see `resync.rs`).
        let counted = self.counting.counted() && !matches!(effect, Effect::Subscribe);
        // No reply timeout for what may wait on purpose: what cannot share a
        // connection (a blocking command, `WAIT`, a module's command), and
        // what shared connections give lanes of their own (see `class`).
        let patient = matches!(
            effect,
            Effect::Plain {
                shareable: false,
                ..
            }
        ) || self.class(&req.args, &effect) == Class::Held;
        let s = &mut self.session;
        match effect {
            Effect::Exec => {
                if let Some(reply) = s.transaction.doomed_exec() {
                    // Redis would abort this transaction: make the backend drop it too.
                    let bytes = reply.to_bytes(s.proto);
                    s.transaction.end();
                    self.attach();
                    encode_command(self.backend.out(), [&b"DISCARD"[..]].into_iter());
                    let silent = self.session.take_silent();
                    self.queue.push(Slot::Backend {
                        hook: Hook::Replace(bytes),
                        silent,
                        patient: false,
                    });
                    self.counting.forwarded();
                    return;
                }
                s.transaction.end();
            }
            Effect::Discard => s.transaction.end(),
            Effect::Multi => s.transaction.begin(),
            Effect::Watch => s.transaction.watch(),
            Effect::Unwatch => s.transaction.unwatch(),
            Effect::Select(db) if !s.transaction.in_multi() => hook = Hook::Select(db),
            Effect::Auth(user, pass) => hook = Hook::Auth(user, pass),
            Effect::HelloAuth {
                proto,
                user,
                pass,
                setname,
            } => {
                let proto = proto.unwrap_or(s.proto);
                let reply = self.hello_reply(proto).to_bytes(proto);
                hook = Hook::HelloAuth {
                    user,
                    pass,
                    proto,
                    setname,
                    reply,
                };
            }
            Effect::Subscribe => self.counting = Counting::Uncounted { synced: false },
            Effect::ClientId => {
                let id = Reply::Int(s.id as i64).to_bytes(s.proto);
                hook = Hook::Replace(id);
            }
            Effect::ClientGetRedir => hook = Hook::ToProxyId,
            Effect::Tracking(on) => s.tracking = on,
            Effect::ClientRef {
                tracking: Some(on), ..
            } => s.tracking = on,
            Effect::Reset if counted => hook = Hook::Reset,
            Effect::Reset => s.resets_pending += 1,
            Effect::ScriptFlush => self.live.classifier.scripts.flush(),
            Effect::ScriptExists(patch) => hook = Hook::ScriptExists(patch),
            Effect::InfoWithProxy => {
                let section = crate::server::info::proxy_section(&self.shared);
                hook = Hook::AppendInfo(bytes::Bytes::from(section));
            }
            Effect::PauseWrites(ms) => self.shared.pause_writes(ms),
            Effect::Select(_)
            | Effect::None
            | Effect::ClientRef { tracking: None, .. }
            | Effect::Plain { .. }
            | Effect::EvalText(_)
            | Effect::Control => {}
        }
        self.attach();
        req.write_to(self.backend.out());
        self.counting.forwarded();
        let silent = self.session.take_silent();
        if counted {
            self.queue.push(Slot::Backend {
                hook,
                silent,
                patient,
            });
        }
    }

    /// Starts a lock operation; its reply fills its slot when it finishes.
    fn lock(&mut self, op: LockOp) {
        self.bound.retain(|g| !g.released_by(&op));
        let silent = self.session.take_silent();
        let seq = (!silent).then(|| self.queue.push(Slot::Pending));
        self.run_lock(op, seq, self.session.proto);
    }

    /// Runs a lock operation whose reply goes to slot `seq` (none: silenced).
    pub(super) fn run_lock(&mut self, mut op: LockOp, seq: Option<u64>, proto: Proto) {
        let engine = Arc::clone(&self.live.engine);
        // A split script's data part goes to the backend after the vote.
        let data_part = match &mut op {
            LockOp::Script(s) => s.data_part.take(),
            _ => None,
        };
        let shared = data_part.as_ref().map(|_| Arc::clone(&self.shared));
        // In the client's database (the proxy's own connection is in the default one).
        let (db, default_db) = (self.session.db, self.settings.default_db);
        self.ops.push(Box::pin(async move {
            let outcome = engine.run(op).await;
            if let (Some(d), Some(shared)) = (data_part, shared) {
                if d.runs_after(&outcome.reply) {
                    send_data_part(&shared, &d.request, db, default_db);
                }
            }
            (seq, proto, outcome)
        }));
    }

    /// A lock operation finished.
    pub(super) fn complete(&mut self, seq: Option<u64>, proto: Proto, outcome: Outcome) {
        // Without a sequence number the reply was silenced (CLIENT REPLY OFF); the
        // client holds the lock as it would on a real Redis.
        let Some(seq) = seq else {
            if let Some(grant) = outcome.lease.and_then(|l| l.grant) {
                self.bind(&grant);
            }
            return;
        };
        {
            let lease = outcome.lease.map(|l| Box::new(Revocable::new(l, proto)));
            self.queue
                .complete(seq, outcome.reply.to_bytes(proto), lease);
        }
    }

    /// Queues a reply made by the proxy (or drops it under CLIENT REPLY OFF/SKIP).
    pub(super) fn reply(&mut self, reply: Reply) {
        if !self.session.take_silent() {
            self.reply_now(reply);
        }
    }

    /// A reply that bypasses CLIENT REPLY (protocol errors, limits): straight
    /// into the output when nothing is ahead of it, else in its slot.
    pub(super) fn reply_now(&mut self, reply: Reply) {
        if self.queue.is_empty() {
            self.output.encode(&reply, self.session.proto);
        } else {
            self.queue
                .push(Slot::Ready(reply.to_bytes(self.session.proto), None));
        }
    }

    /// Handles no more requests; the connection closes once every earlier reply
    /// is written.
    pub(super) fn finish(&mut self) {
        self.input = Input::Refused;
        self.queue.push(Slot::Close);
    }

    /// A framing error: Redis's error text, then close.
    pub(super) fn protocol_error(&mut self, e: &ProtocolError) {
        self.shared
            .metrics
            .protocol_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = self.session.id, error = %e, "protocol error");
        self.reply_now(errors::protocol(e));
        self.finish();
    }

    /// The connection is over: releases locks granted to this client that it
    /// never heard of (its reply was not written), once their operations finish.
    pub(super) async fn abandon(&mut self) {
        // Closed first: the backend cancels what the client left blocked
        // there before anything else is awaited.
        self.backend.reset();
        self.changed.profile = true;
        self.route.close();
        let engine = Arc::clone(&self.live.engine);
        // However the connection ended (EOF, reset, eviction, a limit, idle
        // timeout, shutdown), locks bound to it go with it.
        for grant in self.bound.drain(..) {
            engine.release_grant(&grant);
        }
        for grant in self.output.take_unwritten_grants() {
            engine.release_grant(&grant);
        }
        for grant in self.queue.drain_grants() {
            engine.release_grant(&grant);
        }
        while let Some((_, _, outcome)) = futures_util::StreamExt::next(&mut self.ops).await {
            if let Some(grant) = outcome.lease.and_then(|l| l.grant) {
                engine.release_grant(&grant);
            }
        }
    }
}

/// Sends a split script's data part on the proxy's own backend connection, in
/// database `db` (switching there and back around it when it is not the
/// connection's `default_db`).
fn send_data_part(shared: &crate::server::Shared, request: &[u8], db: u32, default_db: u32) {
    if let Some(cluster) = &shared.cluster {
        // Database 0 only; the master of the data keys' slot.
        if let Some(slot) = super::request::request_slot(request) {
            cluster.send_unanswered(slot, request, 1);
        }
        return;
    }
    if db == default_db {
        shared.side.conn(Proto::Resp2).send_unanswered(request, 1);
        return;
    }
    let mut all = BytesMut::with_capacity(request.len() + 64);
    let (to, back) = (db.to_string(), default_db.to_string());
    encode_command(&mut all, [&b"SELECT"[..], to.as_bytes()].into_iter());
    all.extend_from_slice(request);
    encode_command(&mut all, [&b"SELECT"[..], back.as_bytes()].into_iter());
    shared.side.conn(Proto::Resp2).send_unanswered(&all, 3);
}

/// Whether a command reads or writes keys: a client in `MONITOR` may not
/// (Redis refuses it to a monitor, as to a replica).
fn touches_keys(args: &Args<'_>) -> bool {
    use crate::command::{flags, lookup};
    lookup(args).is_some_and(|s| s.has(flags::READONLY) || s.has(flags::WRITE))
}
