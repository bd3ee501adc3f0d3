//! Replies leave in order: ready slots go to the output, backend replies are
//! routed to their slots as they come off the connection, and a failed backend
//! turns every slot still waiting for it into an error.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::backend::Event;
use super::queue::{Hook, Revocable, Slot, Stale};
use super::replies::{HookContext, apply_hook};
use super::resync::Counting;
use super::{Close, State};
use crate::backend::BackendError;

/// A reply streams through once this much of it is in (smaller ones are
/// passed on whole, in one piece).
const STREAM_FROM: usize = 16 * 1024;

impl State {
    /// Moves ready replies to the output, routing backend replies to their slots.
    pub(super) fn advance(&mut self) {
        loop {
            match self.queue.front() {
                Some(Slot::Ready(_, Some(lease))) => {
                    let stale = lease.stale(Instant::now(), self.ttl_less_unreleasable());
                    let seq = self.queue.front_seq();
                    let Some(Slot::Ready(b, Some(lease))) = self.queue.pop() else {
                        return;
                    };
                    match stale {
                        None => {
                            if let Some(grant) = &lease.grant {
                                self.bind(grant);
                            }
                            self.output.push_leased(&b, *lease);
                        }
                        Some(why) => {
                            if !self.revoked_at_front(seq, why, *lease) {
                                return;
                            }
                        }
                    }
                }
                Some(Slot::Ready(_, None)) => {
                    if let Some(Slot::Ready(b, _)) = self.queue.pop() {
                        self.output.push(&b);
                    }
                }
                Some(Slot::Close) => {
                    self.queue.pop();
                    self.close = Close::AfterWrite;
                    return;
                }
                Some(Slot::Pending) => return,
                Some(Slot::Backend { .. } | Slot::Resync) | None => {
                    match self.backend.next_reply() {
                        Ok(Some(info)) => self.route_reply(info.len, info.is_push()),
                        Ok(None) => {
                            self.stream_partial();
                            return;
                        }
                        Err(e) => {
                            // The slots it failed are ready now: go on with them
                            // (no event would bring the loop back here).
                            self.fail_backend(e);
                        }
                    }
                }
            }
        }
    }

    /// A leased reply reached the front of the queue no longer true (it waited
    /// behind a slow or blocking reply): its grant is released, and the client
    /// gets what Redis would have answered at this point — the acquisition runs
    /// again now, in its slot. Returns false when the slot is pending again.
    fn revoked_at_front(&mut self, seq: u64, why: Stale, lease: Revocable) -> bool {
        self.shared
            .metrics
            .leases_revoked
            .fetch_add(1, Ordering::Relaxed);
        let engine = Arc::clone(&self.live.engine);
        if let Some(grant) = &lease.grant {
            engine.release_grant(grant);
        }
        let instead = why.reply(&lease);
        if let (Stale::Expired, Some(op)) = (why, lease.again) {
            // The slot was popped: put a pending one back in its place.
            self.queue.push_front_pending(seq);
            self.run_lock(op, Some(seq), self.session.proto);
            return false;
        }
        self.output.push(&instead);
        true
    }

    /// Leased replies in the output that went stale before the client read any
    /// of them are replaced, and their grants released.
    pub(super) fn revoke_stale_output(&mut self) {
        let revoked = self
            .output
            .revoke_stale(Instant::now(), self.ttl_less_unreleasable());
        self.shared
            .metrics
            .leases_revoked
            .fetch_add(revoked.count as u64, Ordering::Relaxed);
        for grant in &revoked.grants {
            self.live.engine.release_grant(grant);
        }
    }

    /// A large reply whose slot is at the front streams through: the part in is
    /// passed on now, so the reply is never held whole. Only plain forwards
    /// stream (a hook needs the whole reply; a resynchronisation must see its
    /// marker), and only once enough has come to be worth it.
    fn stream_partial(&mut self) {
        let streams = match self.queue.front() {
            Some(Slot::Backend {
                hook: Hook::None, ..
            }) => true,
            // Unsolicited: pub/sub messages, pushes.
            None => !self.counting.paused(),
            _ => false,
        };
        let partial = self.backend.partial();
        if !streams || partial.is_empty() {
            return;
        }
        if !self.backend.mid_reply() && partial.len() < STREAM_FROM {
            return;
        }
        let silent = matches!(self.queue.front(), Some(Slot::Backend { silent: true, .. }));
        if !silent {
            self.output.push(partial);
        }
        self.backend.consume_partial();
    }

    /// Routes one complete backend reply of `len` bytes.
    fn route_reply(&mut self, len: usize, push: bool) {
        let frame = self.backend.frame(len);
        let ctx = HookContext {
            default_db: self.settings.default_db,
            auth_required: self.settings.auth_required,
            client_identity: self.settings.client_identity,
        };
        match self.queue.front() {
            Some(Slot::Backend { .. }) if !push => {
                if let Some(Slot::Backend { hook, silent, .. }) = self.queue.pop() {
                    self.changed.profile |= matches!(
                        hook,
                        Hook::Select(_) | Hook::Auth(..) | Hook::Reset | Hook::HelloAuth { .. }
                    );
                    let hook = match hook {
                        Hook::ToProxyId => Hook::Replace(self.proxy_id_reply(frame)),
                        hook => hook,
                    };
                    apply_hook(
                        hook,
                        silent,
                        frame,
                        &mut self.session,
                        &mut self.output,
                        ctx,
                    );
                }
            }
            Some(Slot::Resync) => match self.counting.marker_reply(frame) {
                Some(still_subscribed) => {
                    self.queue.pop();
                    self.counting = if still_subscribed {
                        Counting::Uncounted { synced: true }
                    } else {
                        Counting::Counted
                    };
                    self.wake = true;
                }
                None => self.output.push(frame),
            },
            _ => {
                // Unsolicited: a push, a pub/sub message, a MONITOR line.
                if self.session.resets_pending > 0 && frame == b"+RESET\r\n" {
                    self.session.resets_pending -= 1;
                    if self.session.resets_pending == 0 {
                        self.changed.profile = true;
                        self.session.reset(ctx.default_db, ctx.auth_required);
                        self.counting = Counting::Counted;
                    }
                }
                self.output.push(frame);
            }
        }
        self.backend.consume(len);
    }

    /// `CLIENT GETREDIR`'s or `TRACKINGINFO`'s answer with the proxy's id
    /// of the client whose backend connection it names as the redirect
    /// target (0, "gone", if none; -1 and errors as they are).
    fn proxy_id_reply(&self, frame: &[u8]) -> bytes::Bytes {
        let Some((at, len)) = crate::server::client_list::redirect_span(frame) else {
            return bytes::Bytes::copy_from_slice(frame);
        };
        let id = std::str::from_utf8(&frame[at..at + len])
            .ok()
            .and_then(|d| d.parse::<i64>().ok());
        match id {
            Some(id) if id > 0 => {
                let mine = self.shared.registry.by_backend_id(id as u64).unwrap_or(0);
                let mut out = Vec::with_capacity(frame.len());
                out.extend_from_slice(&frame[..at]);
                out.extend_from_slice(mine.to_string().as_bytes());
                out.extend_from_slice(&frame[at + len..]);
                bytes::Bytes::from(out)
            }
            _ => bytes::Bytes::copy_from_slice(frame),
        }
    }

    /// Something happened on the backend connection.
    pub(super) fn on_backend(&mut self, ev: Event) {
        if let Event::Connected(_) = ev {
            // Its id on the backend, for `CLIENT LIST` and `CLIENT UNBLOCK`.
            self.changed.profile = true;
        }
        match ev {
            Event::Connected(Ok(())) => self.flush_backend(),
            Event::Connected(Err(e)) | Event::Io(Err(e)) => self.fail_backend(e),
            Event::Io(Ok(())) => {}
        }
    }

    /// Writes to the backend what its socket takes now.
    pub(super) fn flush_backend(&mut self) {
        if let Err(e) = self.backend.flush() {
            self.fail_backend(e);
        }
    }

    /// The backend connection failed: every reply still expected from it becomes
    /// an error, in place; state the backend held is marked lost. A client that
    /// had part of a reply already can only be closed: nothing can follow it.
    pub(super) fn fail_backend(&mut self, e: BackendError) {
        if self.backend.ending() {
            // The client left and the backend dropped what it had not
            // answered (a blocked command): nothing is written for those,
            // as nothing would be by Redis; the rest goes out as it completes.
            tracing::debug!(
                id = self.session.id,
                "backend connection ended after the client"
            );
            self.queue.fail_backend(&bytes::Bytes::new());
            self.backend.reset();
            self.backend.end_writes();
            self.counting = Counting::Counted;
            return;
        }
        if self.backend.mid_reply() {
            tracing::debug!(id = self.session.id, error = %e, "backend connection failed in the middle of a reply");
            self.close = Close::Abandon;
        }
        self.shared
            .metrics
            .backend_errors
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(id = self.session.id, error = %e, "backend connection failed");
        let err = e.reply().to_bytes(self.session.proto);
        self.queue.fail_backend(&err);
        self.backend.reset();
        self.changed.profile = true;
        self.wake |= self.counting.paused();
        let was_uncounted = !self.counting.counted();
        self.counting = Counting::Counted;
        let s = &mut self.session;
        s.transaction.backend_lost();
        // Tracking was the lost connection's.
        s.tracking = false;
        s.resets_pending = 0;
        if was_uncounted {
            // Subscriptions died with the connection; a client can only
            // learn that by losing its own connection, and will resubscribe.
            self.finish();
        }
    }
}
