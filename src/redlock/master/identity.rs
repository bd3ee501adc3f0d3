//! The restart guard: who a master is (`run_id`), whether it keeps locks
//! across a crash (its persistence settings), and whether its votes can be
//! trusted.
//!
//! A master restarted without persistence has forgotten its locks, so the
//! same lock could be granted twice. When a master's `run_id` changes (seen at
//! a reconnect, or by the periodic probe) it is *quarantined*: its votes count
//! as "no" for acquisitions and extensions, and as unknown for everything
//! else, until the longest TTL a lock can have has passed — `max_ttl` when
//! set, else the longest TTL this proxy has granted since it started.
//!
//! The quarantine is also written to the master itself, as the key
//! `redlock-proxy:quarantine:<run_id>` expiring when the quarantine ends. Every
//! proxy reads it when it connects and at each probe, so a proxy started (or
//! restarted) during a quarantine keeps it, and several proxies keep the
//! longest one any of them set.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use redis_protocol::resp2::types::BytesFrame;
use tokio::time::Instant;

use crate::protocol::encode_command;

/// The marker key of a quarantine, on the quarantined master.
pub(crate) fn marker_key(run_id: &str) -> Bytes {
    Bytes::from(format!("redlock-proxy:quarantine:{run_id}"))
}

/// The guard's settings, shared by every master.
#[derive(Debug, Clone, Copy)]
pub struct GuardConfig {
    /// The longest TTL any lock can have (`max_ttl`), when configured.
    pub max_ttl: Option<Duration>,
    /// Quarantine masters seen for the first time, at proxy start, for `max_ttl`.
    pub quarantine_on_start: bool,
    /// How often each master's identity is checked, besides at every reconnect.
    pub health_interval: Duration,
    /// Clock drift allowance as a fraction, added to quarantines.
    pub drift_factor: f64,
    /// Clock drift allowed whatever the span (the clock guard's floor).
    pub drift_floor: Duration,
    /// Masters without persistence are expected (`redlock-proxy dev`): not
    /// worth a warning each.
    pub volatile_expected: bool,
}

/// What the masters' guards share: the settings and the longest TTL granted.
#[derive(Debug)]
pub struct Guard {
    /// Settings (`max_ttl` is kept apart: a reload may change it).
    pub cfg: GuardConfig,
    /// `max_ttl` in ms; 0: not set.
    max_ttl_ms: AtomicU64,
    longest_ttl_ms: AtomicU64,
    epoch: Instant,
}

impl Guard {
    /// A guard with these settings.
    pub fn new(cfg: GuardConfig) -> Self {
        let guard = Guard {
            cfg,
            max_ttl_ms: AtomicU64::new(0),
            longest_ttl_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        };
        guard.set_max_ttl(cfg.max_ttl);
        guard
    }

    /// `max_ttl` changed (a reload).
    pub fn set_max_ttl(&self, max: Option<Duration>) {
        let ms = max.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.max_ttl_ms.store(ms, Ordering::Relaxed);
    }

    /// `max_ttl`, when set.
    pub fn max_ttl(&self) -> Option<Duration> {
        match self.max_ttl_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// A lock was granted (or extended) to live `ttl` from now; whether that
    /// is longer than any before.
    pub fn granted(&self, ttl: Duration) -> bool {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        self.longest_ttl_ms.fetch_max(ms, Ordering::Relaxed) < ms
    }

    /// How long a restarted master stays quarantined, if anything bounds it.
    pub fn quarantine(&self) -> Option<Duration> {
        let bound = match self.max_ttl() {
            Some(max) => max,
            None => Duration::from_millis(self.longest_ttl_ms.load(Ordering::Relaxed)),
        };
        if bound.is_zero() {
            return None;
        }
        // Its clock may run slow by the drift the votes allow for.
        Some(bound + bound.mul_f64(self.cfg.drift_factor.clamp(0.0, 1.0)))
    }

    fn to_ms(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }
}

/// How well a master keeps its locks across a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// AOF with `appendfsync always`: nothing acknowledged is lost.
    Always,
    /// AOF, fsynced every second (or by the OS): a crash loses the last moments.
    Lossy,
    /// No AOF: a restart forgets every lock (RDB snapshots are too old to count).
    None,
    /// The settings could not be read (`CONFIG` renamed or denied).
    Unknown,
}

/// What a master said about itself when the proxy connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `run_id` from `INFO server`; `None` when `INFO` is not allowed.
    pub run_id: Option<String>,
    /// `redis_version` from `INFO server`.
    pub version: Option<String>,
    /// Its persistence.
    pub durability: Durability,
}

/// The commands that identify a master, in order: `INFO server`,
/// `INFO persistence`, `CONFIG GET appendfsync`.
pub(crate) fn identify_commands() -> Bytes {
    let mut out = bytes::BytesMut::new();
    encode_command(&mut out, [&b"INFO"[..], b"server"].into_iter());
    encode_command(&mut out, [&b"INFO"[..], b"persistence"].into_iter());
    encode_command(
        &mut out,
        [&b"CONFIG"[..], b"GET", b"appendfsync"].into_iter(),
    );
    out.freeze()
}

/// A field of an `INFO` reply.
pub(crate) fn info_field<'a>(info: &'a BytesFrame, name: &str) -> Option<&'a str> {
    let BytesFrame::BulkString(text) = info else {
        return None;
    };
    std::str::from_utf8(text).ok()?.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// The identity from the replies to [`identify_commands`].
pub(crate) fn identity(
    server: &BytesFrame,
    persistence: &BytesFrame,
    fsync: &BytesFrame,
) -> Identity {
    let run_id = info_field(server, "run_id").map(str::to_string);
    let version = info_field(server, "redis_version").map(str::to_string);
    let fsync = match fsync {
        BytesFrame::Array(kv) if kv.len() == 2 => match &kv[1] {
            BytesFrame::BulkString(v) => Some(String::from_utf8_lossy(v).into_owned()),
            _ => None,
        },
        _ => None,
    };
    let durability = match (info_field(persistence, "aof_enabled"), fsync.as_deref()) {
        (Some("0"), _) => Durability::None,
        (Some("1"), Some("always")) => Durability::Always,
        (Some("1"), Some(_)) => Durability::Lossy,
        _ => Durability::Unknown,
    };
    Identity {
        run_id,
        version,
        durability,
    }
}

/// What a newly seen `run_id` means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// The first identity seen since the proxy started.
    FirstSeen,
    /// The same server as before.
    Same,
    /// A different server process: it restarted.
    Restarted,
}

/// Compares the `run_id` known before with the one seen now.
pub(crate) fn compare(known: Option<&str>, seen: &str) -> Change {
    match known {
        None => Change::FirstSeen,
        Some(k) if k == seen => Change::Same,
        Some(_) => Change::Restarted,
    }
}

/// One master's guard state.
#[derive(Debug, Default)]
pub(crate) struct GuardState {
    /// The `run_id` last seen.
    pub(crate) run_id: Option<String>,
    /// Persistence, as last seen.
    pub(crate) durability: Option<Durability>,
    /// `redis_version`, as last seen.
    pub(crate) version: Option<String>,
}

/// One master's quarantine, readable without a lock on the answer path.
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    /// Milliseconds since the guard's epoch when it ends; 0: none.
    until_ms: AtomicU64,
}

impl Quarantine {
    /// Whether the master is quarantined now.
    pub(crate) fn active(&self, guard: &Guard) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0 && guard.to_ms(Instant::now()) < until
    }

    /// How long it still lasts.
    pub(crate) fn left(&self, guard: &Guard) -> Duration {
        let until = self.until_ms.load(Ordering::Relaxed);
        Duration::from_millis(until.saturating_sub(guard.to_ms(Instant::now())))
    }

    /// Makes it last at least `d` from now.
    pub(crate) fn at_least(&self, guard: &Guard, d: Duration) {
        let until = guard.to_ms(Instant::now() + d).max(1);
        self.until_ms.fetch_max(until, Ordering::Relaxed);
    }

    /// Whether one was set and is over (and forgets it, so this says so once).
    pub(crate) fn ended(&self, guard: &Guard) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != 0
            && guard.to_ms(Instant::now()) >= until
            && self
                .until_ms
                .compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// `SET marker 1 NX PX ms` then `PEXPIRE marker ms GT`: the marker lasts the
/// longest quarantine any proxy set.
pub(crate) fn marker_commands(run_id: &str, d: Duration) -> Bytes {
    let key = marker_key(run_id);
    let ms = d.as_millis().max(1).to_string();
    let mut out = bytes::BytesMut::new();
    encode_command(
        &mut out,
        [&b"SET"[..], &key, b"1", b"NX", b"PX", ms.as_bytes()].into_iter(),
    );
    encode_command(
        &mut out,
        [&b"PEXPIRE"[..], &key, ms.as_bytes(), b"GT"].into_iter(),
    );
    out.freeze()
}

/// `PTTL marker`.
pub(crate) fn marker_pttl_command(run_id: &str) -> Bytes {
    let mut out = bytes::BytesMut::new();
    encode_command(&mut out, [&b"PTTL"[..], &marker_key(run_id)].into_iter());
    out.freeze()
}

/// The quarantine a marker's `PTTL` reply asks for.
pub(crate) fn marker_left(reply: &BytesFrame) -> Option<Duration> {
    match reply {
        BytesFrame::Integer(ms) if *ms > 0 => Some(Duration::from_millis(*ms as u64)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> BytesFrame {
        BytesFrame::BulkString(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn guard(max_ttl: Option<Duration>) -> Guard {
        Guard::new(GuardConfig {
            max_ttl,
            quarantine_on_start: false,
            health_interval: Duration::from_secs(1),
            drift_factor: 0.01,
            drift_floor: Duration::from_millis(2),
            volatile_expected: false,
        })
    }

    #[test]
    fn identity_from_info() {
        let server = bulk("# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n");
        let aof_on = bulk("# Persistence\r\nloading:0\r\naof_enabled:1\r\n");
        let aof_off = bulk("# Persistence\r\naof_enabled:0\r\n");
        let fsync = |v: &str| BytesFrame::Array(vec![bulk("appendfsync"), bulk(v)]);
        let denied = BytesFrame::Error("NOPERM".into());
        let id = identity(&server, &aof_on, &fsync("always"));
        assert_eq!(id.run_id.as_deref(), Some("abc123"));
        assert_eq!(id.version.as_deref(), Some("7.0.15"));
        assert_eq!(id.durability, Durability::Always);
        assert_eq!(
            identity(&server, &aof_on, &fsync("everysec")).durability,
            Durability::Lossy
        );
        assert_eq!(
            identity(&server, &aof_off, &denied).durability,
            Durability::None
        );
        assert_eq!(
            identity(&server, &aof_on, &denied).durability,
            Durability::Unknown
        );
        let none = identity(&denied, &denied, &denied);
        assert_eq!((none.run_id, none.durability), (None, Durability::Unknown));
    }

    #[test]
    fn restarts_are_changes_of_run_id() {
        assert_eq!(compare(None, "a"), Change::FirstSeen);
        assert_eq!(compare(Some("a"), "a"), Change::Same);
        assert_eq!(compare(Some("a"), "b"), Change::Restarted);
    }

    #[test]
    fn quarantine_lasts_the_longest_ttl() {
        let g = guard(None);
        assert_eq!(g.quarantine(), None, "nothing granted, nothing to protect");
        assert!(g.granted(Duration::from_secs(20)));
        assert!(!g.granted(Duration::from_secs(5)));
        assert_eq!(g.quarantine(), Some(Duration::from_millis(20_200)));
        let g = guard(Some(Duration::from_secs(60)));
        assert_eq!(g.quarantine(), Some(Duration::from_millis(60_600)));
    }

    #[tokio::test(start_paused = true)]
    async fn quarantine_only_grows_and_ends_once() {
        let g = guard(None);
        let q = Quarantine::default();
        assert!(!q.active(&g));
        assert!(!q.ended(&g), "no quarantine, none ended");
        q.at_least(&g, Duration::from_secs(10));
        assert!(q.active(&g));
        q.at_least(&g, Duration::from_secs(1));
        assert_eq!(
            q.left(&g),
            Duration::from_secs(10),
            "a shorter one does not shorten it"
        );
        tokio::time::advance(Duration::from_millis(9_999)).await;
        assert!(q.active(&g));
        assert!(!q.ended(&g));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!q.active(&g));
        assert!(q.ended(&g));
        assert!(!q.ended(&g), "said once");
    }

    #[test]
    fn markers() {
        let cmds = marker_commands("r1", Duration::from_millis(1500));
        let text = String::from_utf8_lossy(&cmds);
        assert!(text.contains("redlock-proxy:quarantine:r1"));
        assert!(text.contains("$4\r\n1500\r\n$2\r\nGT\r\n"));
        assert_eq!(
            marker_left(&BytesFrame::Integer(250)),
            Some(Duration::from_millis(250))
        );
        assert_eq!(marker_left(&BytesFrame::Integer(-2)), None);
    }
}
