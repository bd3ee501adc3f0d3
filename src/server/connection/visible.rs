//! What other connections see of this one: the profile, state and last
//! command `CLIENT LIST` shows (published once per turn of the loop, and
//! the profile only when it changed), and the `MONITOR` feed it reads.

use std::sync::atomic::Ordering;

use super::queue::Slot;
use super::{Close, State, client_state};
use crate::protocol::Reply;
use crate::redlock::Outcome;

/// What changed since the last [`State::publish`].
#[derive(Debug, Default)]
pub(super) struct Changed {
    /// The last command's name.
    pub(super) cmd: bool,
    /// What the session shows in `CLIENT LIST`.
    pub(super) profile: bool,
}

impl State {
    /// Notes the command being handled, for `cmd=`: its name in the command
    /// table (a pointer compared and stored; unknown commands leave it).
    #[inline]
    pub(super) fn note_command(&mut self, name: Option<&'static str>) {
        if let Some(name) = name {
            if !std::ptr::eq(name, self.last_cmd) {
                self.last_cmd = name;
                self.changed.cmd = true;
            }
        }
    }

    /// Publishes what changed this turn; moves monitor lines to the output.
    /// Once per turn of the loop: nothing but a few compares when nothing
    /// changed.
    #[inline]
    pub(super) fn publish(&mut self) {
        let s = &self.session;
        let mut bits = 0;
        if s.monitor {
            bits |= client_state::MONITOR;
        } else if !self.counting.counted() {
            bits |= client_state::PUBSUB;
        }
        if s.transaction.in_multi() {
            bits |= client_state::MULTI;
        }
        if self.queue.oldest_backend_patient() == Some(true) {
            bits |= client_state::BLOCKED;
        }
        if bits != self.published_state {
            self.published_state = bits;
            self.me.state.store(bits, Ordering::Relaxed);
        }
        if self.changed.cmd || self.changed.profile || self.feed.is_some() {
            self.publish_changes();
        }
    }

    fn publish_changes(&mut self) {
        self.publish_cmd();
        if std::mem::take(&mut self.changed.profile) {
            self.publish_profile();
        }
        self.read_feed();
    }

    /// Publishes the last command's name, if it changed (at once for the
    /// client's own `CLIENT LIST`, which shows what it runs).
    pub(super) fn publish_cmd(&mut self) {
        if std::mem::take(&mut self.changed.cmd) {
            if let Ok(mut c) = self.me.cmd.lock() {
                *c = self.last_cmd;
            }
        }
    }

    fn publish_profile(&self) {
        let s = &self.session;
        let Ok(mut p) = self.me.profile.lock() else {
            return;
        };
        p.name.clone_from(&s.name);
        p.lib_name.clone_from(&s.lib_name);
        p.lib_ver.clone_from(&s.lib_ver);
        p.db = s.db;
        p.resp = s.proto.version();
        p.user = s
            .user
            .clone()
            .unwrap_or_else(|| bytes::Bytes::from_static(crate::auth::DEFAULT_USER.as_bytes()));
        p.backend_id = self.backend.server_id();
    }

    /// `MONITOR`: starts the feed; `+OK` once the relay of the backend's
    /// script commands monitors too (a cluster's are not relayed), so
    /// every command after the reply shows.
    pub(super) fn start_monitor(&mut self) {
        let backend = self
            .shared
            .cluster
            .is_none()
            .then_some(&self.shared.backend);
        let me = (self.session.id, std::sync::Arc::clone(&self.me));
        let (feed, relaying) = self.shared.monitors.subscribe(me, backend);
        self.feed = Some(feed);
        self.session.monitor = true;
        let Some(mut relaying) = relaying else {
            self.reply(Reply::OK);
            return;
        };
        let silent = self.session.take_silent();
        let seq = (!silent).then(|| self.queue.push(Slot::Pending));
        let proto = self.session.proto;
        // Not past the backend's connect timeout: without the relay, the
        // client's commands still show.
        let wait = self.shared.backend.connect_timeout();
        self.ops.push(Box::pin(async move {
            let _ = tokio::time::timeout(wait, relaying.wait_for(|on| *on)).await;
            (seq, proto, Outcome::from(Reply::OK))
        }));
    }

    /// Moves the feed's lines to the output while the client takes them;
    /// ends the feed once the session left `MONITOR` (`RESET`).
    fn read_feed(&mut self) {
        let Some(feed) = &self.feed else {
            return;
        };
        if !self.session.monitor {
            self.feed = None;
            self.shared.monitors.unsubscribe(self.session.id);
            return;
        }
        if feed.overflowed.load(Ordering::Relaxed) {
            tracing::info!(
                id = self.session.id,
                "monitor closed: it fell more than 64 MiB of lines behind"
            );
            self.close = Close::Abandon;
            return;
        }
        if self.buffered() < self.settings.output_high_water {
            let mut lines = bytes::BytesMut::new();
            feed.drain_into(&mut lines);
            if !lines.is_empty() {
                self.output.push(&lines);
            }
        }
    }
}
