//! One open connection to a master: requests pipelined in the order received,
//! replies matched to them in that order, scripts loaded ahead of their
//! `EVALSHA`, owed releases sent once their turn has come.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::clock_guard::TIME;
use super::owed::Id;
use super::restart::ProbeNext;
use super::{Backlog, Master, Message, Preload, Request, Role};
use crate::backend::cluster::Redirect;
use crate::backend::{BackendError, Connection, ErrorKind};
use crate::redlock::vote::NoReply;

/// New requests are taken only while less than this much is waiting to be written.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// ... and while fewer than this many written ones wait for their reply: a
/// stalled master's socket buffers could otherwise take a hundred thousand.
const MAX_PENDING: usize = 10_000;

/// `INFO server`, encoded.
const PROBE: &[u8] = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n";
/// `ASKING`, encoded.
const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";

/// A written request waiting for its reply.
#[derive(Debug)]
enum Awaiting {
    /// An operation's request, kept whole: sent again after a `NOSCRIPT`
    /// (once), or elsewhere after a cluster's redirection.
    Op {
        req: Request,
        /// When it was written (for the latency histogram).
        sent: Instant,
        /// It was sent again after a `NOSCRIPT` already.
        resent: bool,
    },
    /// A `SCRIPT LOAD` of the connection's own; its reply is dropped.
    Load,
    /// A command of the restart guard whose reply does not matter.
    Ignored,
    /// The probe's `INFO server`.
    ProbeInfo,
    /// The probe's `PTTL` of the quarantine marker.
    ProbeMarker,
    /// An owed release.
    Owed(Id),
    /// The clock guard's `TIME`, written at `sent` (see `clock_guard.rs`).
    Time { sent: Instant },
}

/// An open connection to one master.
pub(super) struct MasterConnection {
    conn: Connection,
    master: Arc<Master>,
    pending: VecDeque<Awaiting>,
    /// Scripts loaded on this connection.
    loaded: HashSet<Bytes>,
    /// `TIME`s written whose reply has not come.
    times_pending: usize,
    /// Answers that count only once the `TIME` behind them shows the
    /// master's clock did not run ahead.
    held: Vec<(Request, BytesFrame)>,
}

fn is_noscript(f: &BytesFrame) -> bool {
    matches!(f, BytesFrame::Error(e) if e.starts_with("NOSCRIPT"))
}

impl MasterConnection {
    pub(super) fn new(conn: Connection, master: Arc<Master>) -> Self {
        MasterConnection {
            conn,
            master,
            pending: VecDeque::new(),
            loaded: HashSet::new(),
            times_pending: 0,
            held: Vec::new(),
        }
    }

    /// Writes the clock guard's `TIME`: the answers written before it wait
    /// for its reply.
    fn write_time(&mut self, sent: Instant) {
        if self.master.clock_guarded() {
            self.conn.out().extend_from_slice(TIME);
            self.pending.push_back(Awaiting::Time { sent });
            self.times_pending += 1;
        }
    }

    /// Hands an answer to its operation: not trusted from a master
    /// distrusted now (the restart and clock guards).
    fn answer(&self, req: Request, frame: BytesFrame) {
        let answer = if self.master.quarantined() {
            Err(NoReply::Quarantined)
        } else {
            Ok(frame)
        };
        req.reply_to.push((self.master.index, answer));
    }

    /// Writes a request: after `ASKING` when a migrating slot's node is
    /// asked, and after its script's load if this connection has not.
    fn write_request(&mut self, req: &Request) {
        if req.route.asking {
            self.conn.out().extend_from_slice(ASKING);
            self.pending.push_back(Awaiting::Ignored);
        }
        self.write(&req.cmd, req.script.as_ref());
    }

    /// Writes `cmd`, loading `script` first if this connection has not.
    fn write(&mut self, cmd: &[u8], script: Option<&Arc<Preload>>) {
        if let Some(p) = script {
            if !self.loaded.contains(&p.sha) {
                self.conn.out().extend_from_slice(&p.load);
                self.pending.push_back(Awaiting::Load);
                self.loaded.insert(p.sha.clone());
            }
        }
        self.conn.out().extend_from_slice(cmd);
        self.master.stats.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves requests from the backlog to the output while there is room, then
    /// the owed releases whose turn has come.
    fn fill(&mut self, backlog: &mut Backlog) {
        // The time only matters for requests that may have expired, and debts.
        let now = if backlog.ops.is_empty() && backlog.owed.next_due().is_none() {
            return self.master.publish_owed(backlog);
        } else {
            Instant::now()
        };
        let mut granting = false;
        while self.conn.out().len() < WRITE_HIGH_WATER && self.pending.len() < MAX_PENDING {
            let Some((seq, req)) = backlog.ops.pop_front() else {
                break;
            };
            self.master.dequeued(backlog, 1);
            if let (Role::Acquires(lock), false) = (&req.lock, backlog.owed.len() == 0) {
                for id in lock.ids() {
                    backlog.owed.supersede(&id, seq);
                }
            }
            // Its operation has given up: sending it now would only leave work,
            // or a token, behind. What it was to release is owed instead. A
            // request whose operation decided early is still sent: a grant
            // decided by a quorum is best held by every master.
            if req.deadline <= now {
                self.master.stats.expired.fetch_add(1, Ordering::Relaxed);
                self.master.owe_now(backlog, &req.lock, now);
                // In the release's place: a later request (a new acquisition
                // of the key) finds it done, as it would have been.
                self.write_owed(backlog, now);
                continue;
            }
            self.write_request(&req);
            // What grants is checked against the clock; reads and releases
            // grant nothing.
            granting |= matches!(req.lock, Role::Acquires(_) | Role::Extends);
            self.pending.push_back(Awaiting::Op {
                req,
                sent: now,
                resent: false,
            });
        }
        if granting {
            self.write_time(now);
        }
        self.write_owed(backlog, now);
        self.master.publish_owed(backlog);
    }

    /// Writes the owed releases due by `now`.
    fn write_owed(&mut self, backlog: &mut Backlog, now: Instant) {
        if backlog.owed.next_due().is_none_or(|at| at > now) {
            return;
        }
        let cad = Arc::clone(self.master.cad());
        for (id, cmd) in backlog.owed.take_due(now) {
            self.write(&cmd, Some(&cad));
            self.pending.push_back(Awaiting::Owed(id));
        }
    }

    /// A cluster shard's redirection, with the router that follows it (a
    /// plain master's error replies are votes: `None`).
    fn redirected(&self, frame: &BytesFrame) -> Option<(Redirect, Arc<dyn super::Router>)> {
        let BytesFrame::Error(e) = frame else {
            return None;
        };
        let router = self.master.router()?;
        let mut line = bytes::BytesMut::with_capacity(e.len() + 3);
        line.extend_from_slice(b"-");
        line.extend_from_slice(e.as_bytes());
        line.extend_from_slice(b"\r\n");
        Some((Redirect::parse(&line)?, router))
    }

    fn protocol_error(&self, what: impl std::fmt::Display) -> BackendError {
        BackendError::new(ErrorKind::Protocol, self.conn.peer(), what)
    }

    /// Matches every complete reply to its request.
    fn read_replies(&mut self, backlog: &mut Backlog) -> Result<(), BackendError> {
        while let Some(info) = self.conn.next_reply()? {
            let frame = match super::frame::simple(self.conn.take(info.len)) {
                Ok(frame) => frame,
                Err(mut bytes) => {
                    let decoded = redis_protocol::resp2::decode::decode_bytes_mut(&mut bytes)
                        .map_err(|e| self.protocol_error(format_args!("{e:?}")))?;
                    let Some((frame, _, _)) = decoded else {
                        return Err(self.protocol_error("reply framing disagreement"));
                    };
                    frame
                }
            };
            let Some(awaiting) = self.pending.pop_front() else {
                return Err(self.protocol_error("a reply without a request"));
            };
            let now = Instant::now();
            match awaiting {
                Awaiting::Op {
                    req,
                    sent,
                    resent: false,
                } if req.script.is_some() && is_noscript(&frame) => {
                    // Flushed behind our back: load it again and resend, once.
                    if let Some(script) = &req.script {
                        self.loaded.remove(&script.sha);
                    }
                    self.write_request(&req);
                    self.pending.push_back(Awaiting::Op {
                        req,
                        sent,
                        resent: true,
                    });
                    self.write_time(now);
                }
                Awaiting::Op { req, sent, .. } => {
                    let took = now.saturating_duration_since(sent);
                    self.master.stats.observe_latency(took);
                    if let Some((redirect, router)) = self.redirected(&frame) {
                        // A cluster shard: the key lives elsewhere (or is
                        // moving); the router sends the request on.
                        router.redirect(redirect, req);
                        continue;
                    }
                    if let BytesFrame::Error(e) = &frame {
                        if is_noscript(&frame) {
                            self.loaded.clear();
                        }
                        tracing::debug!(master = %self.master.url, error = %e, "a lock request failed on a master");
                        self.master.owe_now(backlog, &req.lock, now);
                    }
                    if self.times_pending > 0 {
                        self.held.push((req, frame));
                    } else {
                        self.answer(req, frame);
                    }
                }
                Awaiting::Time { sent } => {
                    self.times_pending = self.times_pending.saturating_sub(1);
                    self.master.clock_read(&frame, sent, now);
                    for (req, frame) in std::mem::take(&mut self.held) {
                        self.answer(req, frame);
                    }
                }
                Awaiting::Load => {
                    if let BytesFrame::Error(e) = frame {
                        tracing::debug!(master = %self.master.url, error = %e, "SCRIPT LOAD failed on a master");
                    }
                }
                Awaiting::Ignored => {}
                Awaiting::ProbeInfo => match self.master.probed(&frame) {
                    Some(ProbeNext::WriteMarker(cmds)) => {
                        self.conn.out().extend_from_slice(&cmds);
                        self.pending.push_back(Awaiting::Ignored);
                        self.pending.push_back(Awaiting::Ignored);
                    }
                    Some(ProbeNext::ReadMarker(cmd)) => {
                        self.conn.out().extend_from_slice(&cmd);
                        self.pending.push_back(Awaiting::ProbeMarker);
                    }
                    None => {}
                },
                Awaiting::ProbeMarker => {
                    if let Some(cmds) = self.master.marker_probed(&frame) {
                        self.conn.out().extend_from_slice(&cmds);
                        self.pending.push_back(Awaiting::Ignored);
                        self.pending.push_back(Awaiting::Ignored);
                    }
                }
                Awaiting::Owed(id) => match frame {
                    // The count of keys it deleted: 0 or 1, the token is gone either way.
                    BytesFrame::Integer(_) => backlog.owed.confirmed(&id, now),
                    other if self.redirected(&other).is_some() => {
                        // The key lives on another shard now: owed there.
                        if let (Some(debt), Some(router)) =
                            (backlog.owed.take(&id), self.master.router())
                        {
                            router.rehome(debt);
                        }
                    }
                    other => {
                        if is_noscript(&other) {
                            self.loaded.remove(&self.master.cad().sha);
                        }
                        tracing::debug!(master = %self.master.url, reply = ?other, "an owed release failed; retrying later");
                        backlog.owed.failed(id, now);
                    }
                },
            }
        }
        Ok(())
    }

    /// Runs the connection until it fails, or until `Stop` (shutdown) and
    /// everything before it is delivered.
    pub(super) async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        backlog: &mut Backlog,
        shutdown: &CancellationToken,
    ) -> Result<(), BackendError> {
        self.fill(backlog);
        self.conn.flush()?;
        let every = self.master.guard.cfg.health_interval;
        let mut probe = tokio::time::interval_at(Instant::now() + every, every);
        probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let generation = self.conn.generation();
        loop {
            let retry_at = backlog.owed.next_due();
            tokio::select! {
                biased;
                msg = rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    if !self.master.receive(backlog, msg) {
                        return self.finish(rx, backlog).await;
                    }
                    // Let the connections that are ready run first: their requests
                    // join this batch, and one write carries them all.
                    tokio::task::yield_now().await;
                    while let Ok(msg) = rx.try_recv() {
                        if !self.master.receive(backlog, msg) {
                            self.fill(backlog);
                            return self.finish(rx, backlog).await;
                        }
                    }
                }
                r = self.conn.io(true) => {
                    r?;
                    self.read_replies(backlog)?;
                }
                _ = self.master.endpoint.moved(generation) => {
                    // A Sentinel switch: the reconnect reaches the new master,
                    // whose new run_id the restart guard takes for a restart.
                    return Err(BackendError::new(ErrorKind::Switched, self.conn.peer(), ""));
                }
                _ = sleep_until(retry_at) => {}
                _ = probe.tick() => self.probe(),
                _ = shutdown.cancelled() => return self.finish(rx, backlog).await,
            }
            self.fill(backlog);
            self.conn.flush()?;
        }
    }

    /// The periodic identity check: `INFO server`, in the pipeline. Skipped
    /// while a stalled master has not answered the last one.
    fn probe(&mut self) {
        if self
            .pending
            .iter()
            .any(|a| matches!(a, Awaiting::ProbeInfo | Awaiting::ProbeMarker))
        {
            return;
        }
        self.conn.out().extend_from_slice(PROBE);
        self.pending.push_back(Awaiting::ProbeInfo);
        self.write_time(Instant::now());
    }

    /// Shutdown: delivers what is queued (owed releases above all), briefly.
    async fn finish(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Message>,
        backlog: &mut Backlog,
    ) -> Result<(), BackendError> {
        while let Ok(msg) = rx.try_recv() {
            self.master.receive(backlog, msg);
        }
        let drain = async {
            loop {
                self.fill(backlog);
                if self.pending.is_empty() && !self.conn.has_output() {
                    return Ok::<(), BackendError>(());
                }
                self.conn.io(!self.pending.is_empty()).await?;
                self.read_replies(backlog)?;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
        Ok(())
    }

    /// The connection is gone: requests waiting for a reply have an unknown
    /// outcome; what they were to release, and owed releases in flight, are
    /// owed again.
    pub(super) fn lost(&mut self, backlog: &mut Backlog) {
        let index = self.master.index;
        // Answered, but the clock that would vouch for them was not read.
        for (req, _) in self.held.drain(..) {
            req.reply_to.push((index, Err(NoReply::Lost)));
            self.master.owe_now(backlog, &req.lock, Instant::now());
        }
        self.times_pending = 0;
        for awaiting in self.pending.drain(..) {
            if let Awaiting::Op { req, .. } = awaiting {
                req.reply_to.push((index, Err(NoReply::Lost)));
                self.master.owe_now(backlog, &req.lock, Instant::now());
            }
        }
        backlog.owed.connection_lost(Instant::now());
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::task::TaskTracker;

    use super::super::identity::{Guard, GuardConfig};
    use super::super::{LockRef, Replies, Request};
    use super::*;
    use crate::backend::Endpoint;
    use crate::config::RedisUrl;
    use crate::protocol::encode_command;

    fn request(args: &[&[u8]], deadline: Instant, lock: Role) -> Request {
        let mut cmd = bytes::BytesMut::new();
        encode_command(&mut cmd, args.iter().copied());
        Request {
            cmd: cmd.freeze(),
            script: None,
            deadline,
            reply_to: Arc::new(Replies::with_capacity(1)),
            lock,
            route: Default::default(),
        }
    }

    fn at(out: &[u8], what: &[u8]) -> usize {
        out.windows(what.len())
            .position(|w| w == what)
            .unwrap_or_else(|| panic!("{:?} not written", String::from_utf8_lossy(what)))
    }

    /// A release given up in the backlog is owed instead, and the owed
    /// release goes out in its place: a later acquisition of the key, in the
    /// same batch, finds it done on this master as it would have been.
    #[tokio::test]
    async fn a_release_given_up_is_owed_in_its_place() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let url = RedisUrl::parse("redis://127.0.0.1:1").unwrap();
        let guard = Arc::new(Guard::new(GuardConfig {
            max_ttl: None,
            quarantine_on_start: false,
            health_interval: Duration::from_secs(60),
            drift_factor: 0.01,
            drift_floor: Duration::from_millis(2),
            volatile_expected: false,
        }));
        let cad = Preload::new(Bytes::from_static(b"cadsha"), b"return 1");
        let endpoint = Endpoint::new(url, Duration::from_millis(50), 16);
        let master = Master::spawn(0, endpoint, cad, guard, shutdown.clone(), &tracker);
        let (pipe, _server) = tokio::io::duplex(1 << 16);
        let mut conn = MasterConnection::new(Connection::in_memory(pipe), Arc::clone(&master));

        let key = Bytes::from_static(b"lock:a");
        let now = Instant::now();
        let old = LockRef::new(vec![key.clone()], Bytes::from_static(b"old"), None);
        let new = LockRef::new(vec![key.clone()], Bytes::from_static(b"new"), None);
        let release = request(&[b"DEL", &key], now, Role::Releases(old));
        let set = &[&b"SET"[..], &key, b"new", b"NX"];
        let acquire = request(set, now + Duration::from_secs(60), Role::Acquires(new));
        let mut backlog = Backlog::default();
        backlog.ops.extend([(1, release), (2, acquire)]);
        backlog.received = 2;
        master.queued.store(2, Ordering::Relaxed);

        conn.fill(&mut backlog);
        let out = conn.conn.out().to_vec();
        assert!(
            !out.windows(3).any(|w| w == b"DEL"),
            "the given-up release is not sent"
        );
        let owed = at(
            &out,
            b"EVALSHA\r\n$6\r\ncadsha\r\n$1\r\n1\r\n$6\r\nlock:a\r\n$3\r\nold",
        );
        let acquired = at(&out, b"SET\r\n$6\r\nlock:a\r\n$3\r\nnew");
        assert!(owed < acquired, "{}", String::from_utf8_lossy(&out));
        shutdown.cancel();
    }
}
