//! What goes out to the client: the output buffer, the leased replies in it
//! not yet written (a grant is released, and its reply replaced, if it goes
//! stale first — or if the client vanishes), and the hooks that turn a backend
//! reply into what the client gets.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::queue::{Hook, Revocable};
use crate::protocol::{Proto, Reply};
use crate::redlock::Grant;
use crate::server::session::Session;
use crate::stream::READ_CHUNK;

/// What [`Output::revoke_stale`] replaced.
#[derive(Debug, Default)]
pub(super) struct Revoked {
    /// Replies replaced.
    pub(super) count: usize,
    /// Their grants, to release.
    pub(super) grants: Vec<Grant>,
}

/// A leased reply in the output, by position (in bytes ever queued).
#[derive(Debug)]
struct Leased {
    start: u64,
    end: u64,
    lease: Revocable,
}

/// Replies waiting to be written to the client.
#[derive(Debug, Default)]
pub(super) struct Output {
    buf: BytesMut,
    /// The size the buffer grows to at most while it can (the high watermark
    /// and a read chunk): it is allocated exactly, not doubled past it.
    cap: usize,
    /// Bytes written to the client so far.
    flushed: u64,
    /// Leased replies in `buf`, in order.
    leased: VecDeque<Leased>,
}

impl Output {
    /// An empty output that grows to `cap` bytes without doubling past it.
    pub(super) fn with_cap(cap: usize) -> Self {
        Output {
            cap,
            ..Output::default()
        }
    }

    /// Appends bytes.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        self.room_for(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    /// Makes room for `n` more bytes. A buffer that doubles keeps up to twice
    /// what it holds, and the allocator keeps the ones it left: small, it
    /// doubles; past a read chunk (a large reply streaming through) it goes
    /// straight to `cap`, allocated once and exactly.
    fn room_for(&mut self, n: usize) {
        let need = self.buf.len() + n;
        if need <= self.buf.capacity() || need > self.cap {
            return;
        }
        let target = if need > READ_CHUNK {
            self.cap
        } else {
            (self.buf.capacity() * 2).clamp(need, self.cap)
        };
        let mut grown = BytesMut::with_capacity(target);
        grown.extend_from_slice(&self.buf);
        self.buf = grown;
    }

    /// Appends a reply that is true only for a while.
    pub(super) fn push_leased(&mut self, bytes: &[u8], lease: Revocable) {
        let start = self.flushed + self.buf.len() as u64;
        self.push(bytes);
        let end = start + bytes.len() as u64;
        self.leased.push_back(Leased { start, end, lease });
    }

    /// Appends a reply the proxy made (small: no growth policy needed).
    pub(super) fn encode(&mut self, reply: &Reply, proto: Proto) {
        reply.encode(proto, &mut self.buf);
    }

    /// Bytes waiting.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Nothing waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes to write; the writer removes what it wrote and then calls
    /// [`written`](Self::written).
    pub(super) fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// `n` bytes were written: leased replies that are out are settled.
    /// Bytes written to the client so far.
    pub(super) fn flushed(&self) -> u64 {
        self.flushed
    }

    pub(super) fn written(&mut self, n: usize) {
        self.flushed += n as u64;
        let flushed = self.flushed;
        while self.leased.front().is_some_and(|l| l.end <= flushed) {
            self.leased.pop_front();
        }
        if self.buf.is_empty() && self.buf.capacity() > 4 * READ_CHUNK {
            // A burst is over: give its memory back.
            self.buf = BytesMut::new();
        }
    }

    /// When the first leased reply waiting here goes stale.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.leased.iter().filter_map(|l| l.lease.valid_until).min()
    }

    /// Replaces every leased reply that went stale before any of it was
    /// written (a client that does not read) with what the client gets
    /// instead; returns how many, and their grants, to release.
    pub(super) fn revoke_stale(&mut self, now: Instant, ttl_less_unreleasable: bool) -> Revoked {
        let mut grants = Vec::new();
        let mut count = 0;
        let mut shift: i64 = 0;
        let mut kept = VecDeque::with_capacity(self.leased.len());
        for mut l in std::mem::take(&mut self.leased) {
            l.start = (l.start as i64 + shift) as u64;
            l.end = (l.end as i64 + shift) as u64;
            let stale = l.lease.stale(now, ttl_less_unreleasable);
            match stale {
                // Partly written already: it stands, as Redis's own would.
                Some(why) if l.start >= self.flushed => {
                    let off = (l.start - self.flushed) as usize;
                    let len = (l.end - l.start) as usize;
                    let instead = why.reply(&l.lease);
                    let tail = self.buf.split_off(off + len);
                    self.buf.truncate(off);
                    self.buf.extend_from_slice(&instead);
                    self.buf.extend_from_slice(&tail);
                    shift += instead.len() as i64 - len as i64;
                    count += 1;
                    grants.extend(l.lease.grant);
                }
                _ => kept.push_back(l),
            }
        }
        self.leased = kept;
        Revoked { count, grants }
    }

    /// The grants whose reply was never written (the connection is over).
    pub(super) fn take_unwritten_grants(&mut self) -> impl Iterator<Item = Grant> + '_ {
        self.leased.drain(..).filter_map(|l| l.lease.grant)
    }
}

/// The proxy-wide facts a hook needs.
#[derive(Debug, Clone, Copy)]
pub(super) struct HookContext {
    /// The database a reset session returns to.
    pub(super) default_db: u32,
    /// Whether a reset session must authenticate again.
    pub(super) auth_required: bool,
    /// `passthrough.identity = client`: a login the backend refuses logs the
    /// client out of the proxy too (the proxy had let it in already).
    pub(super) client_identity: bool,
}

/// The backend refused a login the proxy accepted (`passthrough.identity =
/// client` with users that differ): the client is no one's again, and its
/// connection stays its own, never the proxy's identity.
fn identity_refused(session: &mut Session, ctx: HookContext) {
    if ctx.client_identity {
        session.authenticated = !ctx.auth_required;
        session.user = None;
        session.perms = None;
    }
}

/// Applies a slot's hook to the backend reply `frame`, updating the session,
/// and writes the result (nothing for a silent slot).
pub(super) fn apply_hook(
    hook: Hook,
    silent: bool,
    frame: &[u8],
    session: &mut Session,
    out: &mut Output,
    ctx: HookContext,
) {
    let mut write = |bytes: &[u8]| {
        if !silent {
            out.push(bytes);
        }
    };
    match hook {
        Hook::None => write(frame),
        Hook::Swallow => {}
        Hook::Replace(b) => write(&b),
        Hook::Select(db) => {
            if frame.first() == Some(&b'+') {
                session.db = db;
            }
            write(frame);
        }
        Hook::Auth(user, pass) => {
            if frame.first() == Some(&b'+') {
                session.user.clone_from(&user);
                session.backend_auth = Some((user, pass));
            } else {
                identity_refused(session, ctx);
            }
            write(frame);
        }
        Hook::HelloAuth {
            user,
            pass,
            proto,
            setname,
            reply,
        } => {
            if frame.first() == Some(&b'-') {
                identity_refused(session, ctx);
                write(frame);
            } else {
                session.user = Some(user.clone());
                session.backend_auth = Some((Some(user), pass));
                session.proto = proto;
                if let Some(name) = setname {
                    session.name = (!name.is_empty()).then_some(name);
                }
                write(&reply);
            }
        }
        Hook::Reset => {
            if frame == b"+RESET\r\n" {
                session.reset(ctx.default_db, ctx.auth_required);
            }
            write(frame);
        }
        // Translated by the caller, which knows the clients.
        Hook::ToProxyId => write(frame),
        Hook::ScriptExists(_) | Hook::AppendInfo(_) => match rewrite(&hook, frame, session.proto) {
            Some(b) => write(&b),
            None => write(frame),
        },
    }
}

/// The reply the client gets for `frame` under a hook that rewrites it
/// (`ScriptExists`, `AppendInfo`); `None`: the reply as it is.
pub(super) fn rewrite(hook: &Hook, frame: &[u8], proto: Proto) -> Option<Bytes> {
    match hook {
        Hook::ScriptExists(patch) => patch_script_exists(frame, patch, proto),
        Hook::AppendInfo(section) => {
            let section = std::str::from_utf8(section).unwrap_or_default();
            crate::server::info::append_section(frame, section)
        }
        _ => None,
    }
}

/// Rewrites a `SCRIPT EXISTS` reply (an array of integers) at the given positions.
fn patch_script_exists(frame: &[u8], patch: &[(usize, bool)], proto: Proto) -> Option<Bytes> {
    use redis_protocol::resp2::types::OwnedFrame;
    let (decoded, _) = redis_protocol::resp2::decode::decode(frame).ok()??;
    let OwnedFrame::Array(items) = decoded else {
        return None;
    };
    let mut values: Vec<Reply> = items
        .iter()
        .map(|f| match f {
            OwnedFrame::Integer(i) => Some(Reply::Int(*i)),
            _ => None,
        })
        .collect::<Option<_>>()?;
    for &(i, exists) in patch {
        if let Some(v) = values.get_mut(i) {
            *v = Reply::Int(exists as i64);
        }
    }
    Some(Reply::Array(values).to_bytes(proto))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: HookContext = HookContext {
        default_db: 0,
        auth_required: false,
        client_identity: false,
    };

    #[test]
    fn the_buffer_grows_to_its_cap_exactly() {
        let mut out = Output::with_cap(100_000);
        for _ in 0..9 {
            out.push(&[b'x'; 10_000]);
        }
        assert_eq!(out.buf().capacity(), 100_000, "not doubled past the cap");
        out.push(&[b'x'; 20_000]);
        assert_eq!(out.len(), 110_000, "past the cap it grows as it must");
    }

    #[test]
    fn script_exists_patching() {
        let b = patch_script_exists(
            b"*3\r\n:0\r\n:1\r\n:0\r\n",
            &[(0, true), (2, false)],
            Proto::Resp2,
        )
        .unwrap();
        assert_eq!(&b[..], b"*3\r\n:1\r\n:1\r\n:0\r\n");
        assert!(patch_script_exists(b"-ERR x\r\n", &[(0, true)], Proto::Resp2).is_none());
    }

    #[test]
    fn select_takes_effect_only_when_the_backend_agrees() {
        let mut s = Session::new(1, 0, true);
        let mut out = Output::default();
        apply_hook(
            Hook::Select(3),
            false,
            b"-ERR DB index is out of range\r\n",
            &mut s,
            &mut out,
            CTX,
        );
        assert_eq!(s.db, 0);
        apply_hook(Hook::Select(3), false, b"+OK\r\n", &mut s, &mut out, CTX);
        assert_eq!(s.db, 3);
        assert_eq!(&out.buf()[..], b"-ERR DB index is out of range\r\n+OK\r\n");
    }

    #[test]
    fn silent_and_swallowed_replies_write_nothing_and_replacements_stand_in() {
        let mut s = Session::new(1, 0, true);
        let mut out = Output::default();
        apply_hook(Hook::None, true, b"+OK\r\n", &mut s, &mut out, CTX);
        apply_hook(Hook::Swallow, false, b"+OK\r\n", &mut s, &mut out, CTX);
        assert!(out.is_empty());
        let hello = Bytes::from_static(b"%1\r\n+proto\r\n:3\r\n");
        apply_hook(
            Hook::Replace(hello.clone()),
            false,
            b"%7\r\n",
            &mut s,
            &mut out,
            CTX,
        );
        assert_eq!(&out.buf()[..], &hello[..]);
    }

    fn lease(valid_ms: u64, ttl: Option<u64>) -> Revocable {
        Revocable {
            valid_until: ttl.map(|_| Instant::now() + std::time::Duration::from_millis(valid_ms)),
            grant: Some(Grant::for_test(
                "lock:x",
                "t",
                ttl.map(std::time::Duration::from_millis),
            )),
            instead: Bytes::from_static(b"_\r\n"),
            again: None,
        }
    }

    #[test]
    fn a_stale_reply_nothing_of_which_was_written_is_replaced_in_place() {
        let mut out = Output::default();
        out.push(b"$5\r\nhello\r\n");
        out.push_leased(b"+OK\r\n", lease(0, Some(100)));
        out.push(b":1\r\n");
        out.push_leased(b"+OK\r\n", lease(60_000, Some(60_000)));
        // Half of the first reply went out; the first grant is already stale.
        let _ = out.buf().split_to(5);
        out.written(5);
        let later = Instant::now() + std::time::Duration::from_millis(1);
        let revoked = out.revoke_stale(later, false);
        assert_eq!((revoked.count, revoked.grants.len()), (1, 1));
        assert_eq!(&out.buf()[..], b"ello\r\n_\r\n:1\r\n+OK\r\n");
        // The second lease kept its place after the shift: once written, it is settled.
        assert!(out.next_deadline().is_some());
        let n = out.len();
        let _ = out.buf().split_to(n);
        out.written(n);
        assert!(out.next_deadline().is_none());
    }

    #[test]
    fn a_reply_partly_written_stands_and_a_lock_without_expiry_goes_when_the_client_does() {
        let mut out = Output::default();
        out.push_leased(b"+OK\r\n", lease(0, Some(100)));
        out.push_leased(b"+OK\r\n", lease(0, None));
        let _ = out.buf().split_to(2);
        out.written(2);
        let later = Instant::now() + std::time::Duration::from_millis(1);
        // The first is partly out: it stands. The second has no expiry: it
        // stands while the client can still release it.
        assert_eq!(out.revoke_stale(later, false).count, 0);
        let revoked = out.revoke_stale(later, true);
        assert_eq!(revoked.count, 1);
        assert!(
            out.buf().ends_with(b"could never release it\r\n"),
            "{:?}",
            out.buf()
        );
    }

    #[test]
    fn a_reset_reply_resets_the_session() {
        let mut s = Session::new(1, 0, true);
        s.db = 5;
        s.name = Some(Bytes::from_static(b"n"));
        let mut out = Output::default();
        apply_hook(
            Hook::Reset,
            false,
            b"+RESET\r\n",
            &mut s,
            &mut out,
            HookContext {
                default_db: 2,
                auth_required: true,
                client_identity: false,
            },
        );
        assert_eq!((s.db, s.name.is_none(), s.authenticated), (2, true, false));
    }
}
