//! `MONITOR`, answered by the proxy: every command any client sends the
//! proxy, as it receives it — lock operations and the commands it answers
//! itself included, which a backend's `MONITOR` never sees — in Redis's line
//! format, to every client that asked.
//!
//! Connections check one relaxed load per request ([`Monitors::active`]);
//! only while someone monitors is a line formatted and appended to each
//! monitor's [`Feed`], which its own connection moves to its output. A monitor
//! that does not read is bounded like any client (its output limit and the
//! memory guard), and its feed stops growing at [`FEED_CAP`]: then it is
//! closed, as Redis closes a monitor past its output buffer limit.
//!
//! The commands scripts run never pass through the proxy: while anyone
//! monitors, a relay runs `MONITOR` on the backend (a single one; not a
//! cluster) and adds the lines of its scripts (`[db lua]`) to the feeds.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use bytes::BytesMut;

use super::clients::Client;
use crate::backend::{Endpoint, Handshake};
use crate::command::{flags, lookup};
use crate::protocol::{ArgList, encode_command};

/// Most bytes a monitor's feed holds before its connection moves them on.
pub(crate) const FEED_CAP: usize = 64 * 1024 * 1024;

/// The lines waiting for one monitoring client.
#[derive(Debug)]
pub(crate) struct Feed {
    buf: Mutex<BytesMut>,
    /// Lines were dropped: the monitor fell too far behind, and is closed.
    pub(crate) overflowed: AtomicBool,
    /// The monitor's connection, woken when lines come.
    client: Arc<Client>,
}

impl Feed {
    /// Moves the waiting lines to `out`.
    pub(crate) fn drain_into(&self, out: &mut BytesMut) {
        if let Ok(mut b) = self.buf.lock() {
            out.extend_from_slice(&b);
            b.clear();
        }
    }
}

/// Every monitoring client's feed.
#[derive(Debug, Default)]
pub(crate) struct Monitors {
    active: AtomicUsize,
    feeds: Mutex<Vec<(u64, Arc<Feed>)>>,
    /// Stops the backend relay (see the module's docs), if one runs; and
    /// says whether it is monitoring.
    relay: Mutex<Option<(tokio_util::sync::CancellationToken, Relaying)>>,
}

/// Whether the relay of script commands is monitoring the backend.
pub(crate) type Relaying = tokio::sync::watch::Receiver<bool>;

impl Monitors {
    /// Whether anyone monitors (checked once per request).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 0
    }

    /// Client `id` starts monitoring; the first one starts the relay of
    /// script commands from `backend`, if given (whether it is monitoring
    /// yet is returned with the feed).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        (id, client): (u64, Arc<Client>),
        backend: Option<&Endpoint>,
    ) -> (Arc<Feed>, Option<Relaying>) {
        let feed = Arc::new(Feed {
            buf: Mutex::default(),
            overflowed: AtomicBool::new(false),
            client,
        });
        if let Ok(mut f) = self.feeds.lock() {
            f.retain(|(i, _)| *i != id);
            f.push((id, Arc::clone(&feed)));
            self.active.store(f.len(), Ordering::Relaxed);
        }
        let mut relaying = None;
        if let (Some(backend), Ok(mut relay)) = (backend, self.relay.lock()) {
            let (_, rx) = relay.get_or_insert_with(|| {
                let stop = tokio_util::sync::CancellationToken::new();
                let (tx, rx) = tokio::sync::watch::channel(false);
                let task = relay_scripts(Arc::clone(self), backend.clone(), stop.clone(), tx);
                tokio::spawn(task);
                (stop, rx)
            });
            relaying = Some(rx.clone());
        }
        (feed, relaying)
    }

    /// Client `id` stops monitoring (`RESET`, or it left); the last one
    /// stops the relay.
    pub(crate) fn unsubscribe(&self, id: u64) {
        if let Ok(mut f) = self.feeds.lock() {
            f.retain(|(i, _)| *i != id);
            self.active.store(f.len(), Ordering::Relaxed);
            if f.is_empty() {
                if let Some((stop, _)) = self.relay.lock().ok().and_then(|mut r| r.take()) {
                    stop.cancel();
                }
            }
        }
    }

    /// Appends `text` (whole lines) to every feed.
    fn feed_lines(&self, text: &[u8]) {
        let Ok(feeds) = self.feeds.lock() else {
            return;
        };
        for (_, feed) in feeds.iter() {
            if let Ok(mut b) = feed.buf.lock() {
                if b.len() + text.len() > FEED_CAP {
                    feed.overflowed.store(true, Ordering::Relaxed);
                } else {
                    b.extend_from_slice(text);
                }
            }
            feed.client.lines.store(true, Ordering::Relaxed);
            feed.client.waker.wake();
        }
    }

    /// Shows a command a client (at `origin`, `ip:port`) sent in database
    /// `db` to every monitor, unless it is one Redis keeps from monitors
    /// (administrative commands).
    pub(crate) fn feed<A: ArgList + ?Sized>(&self, db: u32, origin: &str, args: &A) {
        if lookup(args).is_some_and(|s| s.has(flags::ADMIN)) {
            return;
        }
        let Ok(feeds) = self.feeds.lock() else {
            return;
        };
        drop(feeds);
        let mut text = BytesMut::new();
        line(&mut text, SystemTime::now(), db, origin, args);
        self.feed_lines(&text);
    }
}

/// Whether a backend `MONITOR` line is of a command a script ran.
fn from_script(line: &[u8]) -> bool {
    // `+<time> [<db> lua] ...`: what is between the first brackets.
    let Some(open) = line.iter().position(|&c| c == b'[') else {
        return false;
    };
    let rest = &line[open..];
    line.starts_with(b"+")
        && rest
            .iter()
            .position(|&c| c == b']')
            .is_some_and(|close| rest[..close].ends_with(b" lua"))
}

/// Runs `MONITOR` on the backend until `stop`, passing on the lines of
/// commands scripts ran (`monitoring` says when it is); reconnects after a
/// second if the connection fails.
async fn relay_scripts(
    monitors: Arc<Monitors>,
    backend: Endpoint,
    stop: tokio_util::sync::CancellationToken,
    monitoring: tokio::sync::watch::Sender<bool>,
) {
    while !stop.is_cancelled() {
        let relay = async {
            let mut conn = backend.connect(&Handshake::new()).await?;
            encode_command(conn.out(), [&b"MONITOR"[..]].into_iter());
            let ok = conn.read_reply().await?;
            monitoring.send_replace(&ok[..] == b"+OK\r\n");
            loop {
                let line = conn.read_reply().await?;
                if from_script(&line) {
                    monitors.feed_lines(&line);
                }
            }
        };
        let failed: Result<(), crate::backend::BackendError> = tokio::select! {
            r = relay => r,
            () = stop.cancelled() => return,
        };
        monitoring.send_replace(false);
        if let Err(e) = failed {
            tracing::debug!(error = %e, "MONITOR relay of script commands failed");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// One monitor line, as Redis writes it: `+<unix time with µs> [<db> <client
/// address>] "arg" "arg"...`, each argument quoted and escaped; the
/// credentials of `AUTH` and `HELLO ... AUTH` shown as `(redacted)`.
pub(crate) fn line<A: ArgList + ?Sized>(
    out: &mut BytesMut,
    at: SystemTime,
    db: u32,
    origin: &str,
    args: &A,
) {
    let t = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut head = Vec::with_capacity(48);
    let _ = write!(
        head,
        "+{}.{:06} [{db} {origin}]",
        t.as_secs(),
        t.subsec_micros()
    );
    out.extend_from_slice(&head);
    let name = args.arg(0);
    let mut redact_from = usize::MAX;
    if name.eq_ignore_ascii_case(b"AUTH") {
        redact_from = 1;
    }
    for i in 0..args.len() {
        out.extend_from_slice(b" ");
        let a = args.arg(i);
        if name.eq_ignore_ascii_case(b"HELLO") && i >= 2 {
            let prev = args.arg(i - 1);
            // HELLO proto AUTH user pass: both redacted.
            let after_auth = prev.eq_ignore_ascii_case(b"AUTH")
                || (i >= 3 && args.arg(i - 2).eq_ignore_ascii_case(b"AUTH"));
            if after_auth {
                out.extend_from_slice(b"\"(redacted)\"");
                continue;
            }
        }
        if i >= redact_from {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            quote(out, a);
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Redis's `sdscatrepr`: quoted, with `\"`, `\\`, `\n`, `\r`, `\t`, `\a`,
/// `\b` and `\xNN` for other bytes outside printable ASCII.
fn quote(out: &mut BytesMut, s: &[u8]) {
    out.extend_from_slice(b"\"");
    for &c in s {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.extend_from_slice(&[c]),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(&[
                    b'\\',
                    b'x',
                    HEX[usize::from(c >> 4)],
                    HEX[usize::from(c & 15)],
                ]);
            }
        }
    }
    out.extend_from_slice(b"\"");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn show(args: &[&str]) -> String {
        let mut out = BytesMut::new();
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_042);
        line(&mut out, at, 3, "127.0.0.1:5000", args);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn lines_are_in_redis_format() {
        assert_eq!(
            show(&["SET", "k", "v"]),
            "+1700000000.000042 [3 127.0.0.1:5000] \"SET\" \"k\" \"v\"\r\n"
        );
        assert_eq!(
            show(&["GET", "a\"b\\c\n\x01\u{7f} "]),
            "+1700000000.000042 [3 127.0.0.1:5000] \"GET\" \"a\\\"b\\\\c\\n\\x01\\x7f \"\r\n"
        );
    }

    #[test]
    fn credentials_are_redacted() {
        assert!(
            show(&["auth", "user", "secret"])
                .ends_with("\"auth\" \"(redacted)\" \"(redacted)\"\r\n")
        );
        assert!(
            show(&["HELLO", "3", "AUTH", "u", "p", "SETNAME", "n"]).ends_with(
                "\"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
            )
        );
    }

    #[test]
    fn only_script_lines_are_relayed() {
        assert!(from_script(b"+1.2 [0 lua] \"GET\" \"k\"\r\n"));
        assert!(!from_script(
            b"+1.2 [0 127.0.0.1:5] \"GET\" \"x lua] \"\r\n"
        ));
    }

    #[test]
    fn every_monitor_gets_the_line() {
        let m = Arc::new(Monitors::default());
        assert!(!m.active());
        let at = "127.0.0.1:1".parse().unwrap();
        let client = || {
            Arc::new(Client::new(super::super::client_list::Profile::new(
                at, at, 0, 0,
            )))
        };
        let (a, b) = (
            m.subscribe((1, client()), None).0,
            m.subscribe((2, client()), None).0,
        );
        assert!(m.active());
        m.feed(0, "x:1", &["PING"][..]);
        assert!(
            a.client.lines.load(Ordering::Relaxed),
            "its connection is woken"
        );
        let (mut oa, mut ob) = (BytesMut::new(), BytesMut::new());
        a.drain_into(&mut oa);
        b.drain_into(&mut ob);
        assert_eq!(oa, ob);
        assert!(ob.ends_with(b"\"PING\"\r\n"));
        // Administrative commands are not shown.
        m.feed(0, "x:3", &["CONFIG", "SET", "a", "b"][..]);
        b.drain_into(&mut ob);
        assert_eq!(ob.iter().filter(|&&c| c == b'\n').count(), 1);
        m.unsubscribe(1);
        m.unsubscribe(2);
        assert!(!m.active());
    }
}
