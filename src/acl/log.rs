//! `ACL LOG`: the proxy's own refusals and failed logins, kept and grouped
//! as Redis keeps them (`addACLLogEntry`): newest first, at most 128, and a
//! refusal like one of the last 10 within a minute counts on that entry.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::protocol::Reply;

/// Redis's `acllog-max-len` default.
const MAX_LEN: usize = 128;
/// How many recent entries a new one may join.
const SCAN: usize = 10;
/// Within how long of the last one it may join them.
const GROUPING: Duration = Duration::from_secs(60);

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// A command.
    Command,
    /// A key.
    Key,
    /// A channel.
    Channel,
    /// A login.
    Auth,
}

/// Where it was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    /// An ordinary request.
    Toplevel,
    /// A command queued in `MULTI`.
    Multi,
}

/// One entry.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    count: u64,
    reason: Reason,
    context: Context,
    object: Bytes,
    username: Bytes,
    at: Instant,
    client_info: String,
}

/// The log.
#[derive(Debug, Default)]
pub(crate) struct AclLog {
    entries: VecDeque<Entry>,
}

impl AclLog {
    /// Records a refusal: `object` is the command's full name, the key or
    /// channel, or for a login the command that tried (`AUTH`);
    /// `client_info` is the client's `CLIENT INFO` line.
    pub(crate) fn add(
        &mut self,
        (reason, context): (Reason, Context),
        object: &[u8],
        username: &[u8],
        client_info: String,
        now: Instant,
    ) {
        let same = self.entries.iter().take(SCAN).position(|e| {
            e.reason == reason
                && e.context == context
                && now.saturating_duration_since(e.at) <= GROUPING
                && e.object == object
                && e.username == username
        });
        if let Some(e) = same.and_then(|i| self.entries.remove(i)) {
            self.entries.push_front(Entry {
                count: e.count + 1,
                at: now,
                client_info,
                ..e
            });
            return;
        }
        self.entries.push_front(Entry {
            count: 1,
            reason,
            context,
            object: Bytes::copy_from_slice(object),
            username: Bytes::copy_from_slice(username),
            at: now,
            client_info,
        });
        self.entries.truncate(MAX_LEN);
    }

    /// Empties it (`ACL LOG RESET`).
    pub(crate) fn reset(&mut self) {
        self.entries.clear();
    }

    /// How many entries it holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// `ACL LOG [count]`: the newest `count` entries, as Redis lists them.
    pub(crate) fn reply(&self, count: usize, now: Instant) -> Reply {
        let kv = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
        Reply::Array(
            self.entries
                .iter()
                .take(count)
                .map(|e| {
                    let age = now.saturating_duration_since(e.at).as_millis() as f64 / 1000.0;
                    Reply::Map(vec![
                        kv("count", Reply::Int(e.count as i64)),
                        kv("reason", Reply::bulk_static(e.reason.word())),
                        kv("context", Reply::bulk_static(e.context.word())),
                        kv("object", Reply::Bulk(e.object.clone())),
                        kv("username", Reply::Bulk(e.username.clone())),
                        kv("age-seconds", Reply::Double(age)),
                        kv(
                            "client-info",
                            Reply::Bulk(Bytes::from(e.client_info.clone())),
                        ),
                    ])
                })
                .collect(),
        )
    }
}

impl Reason {
    fn word(self) -> &'static str {
        match self {
            Reason::Command => "command",
            Reason::Key => "key",
            Reason::Channel => "channel",
            Reason::Auth => "auth",
        }
    }
}

impl Context {
    fn word(self) -> &'static str {
        match self {
            Context::Toplevel => "toplevel",
            Context::Multi => "multi",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_like_redis_and_stays_bounded() {
        let mut log = AclLog::default();
        let t = Instant::now();
        let top = (Reason::Key, Context::Toplevel);
        log.add(top, b"k", b"u", "a".into(), t);
        log.add(
            (Reason::Command, Context::Toplevel),
            b"get",
            b"u",
            "b".into(),
            t,
        );
        log.add(top, b"k", b"u", "c".into(), t + Duration::from_secs(1));
        assert_eq!(log.len(), 2);
        assert_eq!(log.entries[0].count, 2);
        assert_eq!(log.entries[0].client_info, "c");
        // Over a minute later, a new entry.
        log.add(top, b"k", b"u", "d".into(), t + Duration::from_secs(62));
        assert_eq!(log.len(), 3);
        for i in 0..300u32 {
            log.add(top, &i.to_be_bytes(), b"u", String::new(), t);
        }
        assert_eq!(log.len(), MAX_LEN);
        let Reply::Array(v) = log.reply(10, t) else {
            panic!("an array")
        };
        assert_eq!(v.len(), 10);
        log.reset();
        assert_eq!(log.len(), 0);
    }
}
