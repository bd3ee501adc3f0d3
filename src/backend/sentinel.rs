//! A Sentinel-managed master: where it is now, as the sentinels say, and
//! when that changes.
//!
//! The address is asked of the sentinels in turn (`SENTINEL
//! get-master-addr-by-name`) at the first connect and again after a connect
//! that failed or reached a replica. A task subscribes to `+switch-master` on
//! one sentinel (the next one when it fails) and moves the address at once
//! when the master is switched; every connection opened before then is
//! stale, and its user drops it ([`SentinelWatch::moved`]): a backend
//! connection reconnects to the new master, a voter's reconnect sees a new
//! `run_id` and its restart guard quarantines it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::types::BytesFrame;
use tokio::sync::watch;

use super::connection::Connection;
use super::error::{BackendError, ErrorKind};
use crate::config::{RedisUrl, Sentinels};
use crate::protocol::encode_command;
use crate::stream::Stream;

/// Between attempts to subscribe when every sentinel failed.
const RESUBSCRIBE: Duration = Duration::from_millis(500);

/// Where one Sentinel-managed master is.
#[derive(Debug)]
pub(crate) struct SentinelWatch {
    spec: Sentinels,
    /// Credentials for sentinels that require them (the URL's).
    url: RedisUrl,
    timeout: Duration,
    /// The master's address as last learned.
    current: Mutex<Option<(String, u16)>>,
    /// Bumped at every switch.
    generation: watch::Sender<u64>,
    started: AtomicBool,
    /// Switches seen.
    switches: AtomicU64,
}

/// Reads one decoded reply.
async fn reply(conn: &mut Connection) -> Result<BytesFrame, BackendError> {
    let mut bytes = conn.read_reply().await?;
    decode_bytes_mut(&mut bytes)
        .ok()
        .flatten()
        .map(|(f, _, _)| f)
        .ok_or_else(|| BackendError::new(ErrorKind::Protocol, conn.peer(), "undecodable reply"))
}

fn text(f: &BytesFrame) -> Option<String> {
    match f {
        BytesFrame::BulkString(b) | BytesFrame::SimpleString(b) => {
            String::from_utf8(b.to_vec()).ok()
        }
        _ => None,
    }
}

impl SentinelWatch {
    /// The master `url` names (a Sentinel URL), connecting within `timeout`.
    pub(crate) fn new(url: &RedisUrl, timeout: Duration) -> Option<Arc<SentinelWatch>> {
        let spec = url.sentinel.clone()?;
        Some(Arc::new(SentinelWatch {
            spec,
            url: url.clone(),
            timeout,
            current: Mutex::new(None),
            generation: watch::channel(0).0,
            started: AtomicBool::new(false),
            switches: AtomicU64::new(0),
        }))
    }

    /// The master's name at the sentinels.
    pub(crate) fn name(&self) -> &str {
        &self.spec.master
    }

    /// The generation now (bumped at every switch).
    pub(crate) fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// How many switches were seen.
    pub(crate) fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    /// The master's address now, and the generation it belongs to: as last
    /// learned, or asked of the sentinels.
    pub(crate) async fn master(self: &Arc<Self>) -> Result<((String, u16), u64), BackendError> {
        self.start();
        let generation = *self.generation.borrow();
        if let Some(addr) = self.current.lock().ok().and_then(|c| c.clone()) {
            return Ok((addr, generation));
        }
        let addr = self.ask().await?;
        if let Ok(mut c) = self.current.lock() {
            *c = Some(addr.clone());
        }
        Ok((addr, generation))
    }

    /// What was learned is wrong (the address refused, or answered as a
    /// replica): ask again next time.
    pub(crate) fn forget(&self) {
        if let Ok(mut c) = self.current.lock() {
            *c = None;
        }
    }

    /// Resolves once the master has moved since `generation`: a connection
    /// opened then is to the old one.
    pub(crate) async fn moved(&self, generation: u64) {
        let mut rx = self.generation.subscribe();
        let _ = rx.wait_for(|g| *g != generation).await;
    }

    /// Asks the sentinels in turn where the master is.
    async fn ask(&self) -> Result<(String, u16), BackendError> {
        let mut last = None;
        for (host, port) in &self.spec.nodes {
            let attempt = async {
                let mut conn = self.sentinel(host, *port).await?;
                let name = self.spec.master.as_bytes();
                encode_command(
                    conn.out(),
                    [&b"SENTINEL"[..], b"get-master-addr-by-name", name].into_iter(),
                );
                match reply(&mut conn).await? {
                    BytesFrame::Array(a) if a.len() == 2 => {
                        let host = text(&a[0]);
                        let port = text(&a[1]).and_then(|p| p.parse::<u16>().ok());
                        host.zip(port).ok_or_else(|| {
                            BackendError::new(
                                ErrorKind::Protocol,
                                conn.peer(),
                                "a malformed address",
                            )
                        })
                    }
                    other => Err(BackendError::new(
                        ErrorKind::Handshake,
                        conn.peer(),
                        format_args!(
                            "the sentinel does not know master {:?} ({other:?})",
                            self.spec.master
                        ),
                    )),
                }
            };
            match tokio::time::timeout(self.timeout, attempt).await {
                Ok(Ok(addr)) => return Ok(addr),
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(BackendError::new(
                        ErrorKind::Timeout,
                        format!("{host}:{port}"),
                        format_args!("{:?}", self.timeout),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            BackendError::new(ErrorKind::Connect, "sentinels", "none configured")
        }))
    }

    /// A connection to the sentinel at `host:port` (plain TCP; with the URL's
    /// credentials when it asks for them).
    async fn sentinel(&self, host: &str, port: u16) -> Result<Connection, BackendError> {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| BackendError::new(ErrorKind::Connect, &addr, e))?;
        let _ = tcp.set_nodelay(true);
        let mut conn = Connection::new(Stream::from(tcp), addr, 16);
        encode_command(conn.out(), [&b"PING"[..]].into_iter());
        if let BytesFrame::Error(e) = reply(&mut conn).await? {
            if !e.starts_with("NOAUTH") {
                return Err(BackendError::new(ErrorKind::Handshake, conn.peer(), e));
            }
            let Some(auth) = self.url.auth_args() else {
                return Err(BackendError::new(ErrorKind::Handshake, conn.peer(), e));
            };
            encode_command(conn.out(), auth.into_iter());
            if let BytesFrame::Error(e) = reply(&mut conn).await? {
                return Err(BackendError::new(ErrorKind::Handshake, conn.peer(), e));
            }
        }
        Ok(conn)
    }

    /// Starts the `+switch-master` subscription, once.
    fn start(self: &Arc<Self>) {
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(Arc::clone(self).watch());
        }
    }

    /// Follows `+switch-master` on one sentinel after another, for as long
    /// as anyone holds this watch.
    async fn watch(self: Arc<Self>) {
        let me = Arc::downgrade(&self);
        drop(self);
        let mut next = 0;
        loop {
            let Some(watch) = me.upgrade() else {
                return;
            };
            let (host, port) = watch.spec.nodes[next % watch.spec.nodes.len()].clone();
            next += 1;
            let subscribed = async {
                let mut conn = watch.sentinel(&host, port).await?;
                encode_command(
                    conn.out(),
                    [&b"SUBSCRIBE"[..], b"+switch-master"].into_iter(),
                );
                reply(&mut conn).await?;
                // A switch missed while not subscribed: ask again.
                watch.forget_if_moved().await;
                Ok::<Connection, BackendError>(conn)
            };
            let conn = tokio::time::timeout(watch.timeout, subscribed).await;
            drop(watch);
            if let Ok(Ok(conn)) = conn {
                follow(&me, conn).await;
            } else {
                tokio::time::sleep(RESUBSCRIBE).await;
            }
        }
    }

    /// Asks where the master is; if it moved, says so.
    async fn forget_if_moved(&self) {
        let Ok(addr) = self.ask().await else {
            return;
        };
        self.moved_to(addr);
    }

    /// The master is at `addr` now: if that is news, connections to the old
    /// one are stale.
    fn moved_to(&self, addr: (String, u16)) {
        let Ok(mut c) = self.current.lock() else {
            return;
        };
        if c.as_ref() == Some(&addr) {
            return;
        }
        let was = c.replace(addr.clone());
        drop(c);
        if was.is_some() {
            self.switches.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                master = %self.spec.master,
                from = ?was,
                to = ?addr,
                "sentinel: the master was switched"
            );
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

/// Reads `+switch-master` messages until the subscription fails or the
/// watch is dropped.
async fn follow(me: &std::sync::Weak<SentinelWatch>, mut conn: Connection) {
    loop {
        let Ok(frame) = reply(&mut conn).await else {
            return;
        };
        let Some(watch) = me.upgrade() else {
            return;
        };
        // ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"]
        let BytesFrame::Array(parts) = frame else {
            continue;
        };
        let Some(body) = parts.get(2).and_then(text) else {
            continue;
        };
        let fields: Vec<&str> = body.split(' ').collect();
        if let [name, _, _, ip, port] = fields[..] {
            if name == watch.name() {
                if let Ok(port) = port.parse::<u16>() {
                    watch.moved_to((ip.to_string(), port));
                }
            }
        }
    }
}
