//! Where a Redis server is, and opening connections to it.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::connection::Connection;
use super::error::{BackendError, ErrorKind};
use super::handshake::{CLIENT_ID, Handshake, Step};
use super::sentinel::SentinelWatch;
use crate::config::RedisUrl;
use crate::protocol::encode_command;
use crate::stream::Stream;
use crate::tls::TlsClient;

/// TCP keepalive on every connection to a server: a request that may wait
/// on purpose (a `BLPOP 0`, a long script) has no reply timeout, so a host
/// that vanished (powered off, partitioned) is found by the kernel instead,
/// within about 10 s + 3 × 2 s of the last traffic. A stopped process still
/// answers keepalives; its connection's reply timeout finds it.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(10), Duration::from_secs(2), 3);

/// A Redis server the proxy connects to, with what every connection to it needs.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    url: RedisUrl,
    addr: String,
    connect_timeout: Duration,
    max_depth: usize,
    /// For `rediss://`: the TLS client configuration.
    tls: Option<TlsClient>,
    /// For a Sentinel URL: where its master is now (shared by every clone).
    sentinel: Option<Arc<SentinelWatch>>,
}

impl Endpoint {
    /// The server at `url`; connecting (handshake included) may take up to
    /// `connect_timeout`; replies nested deeper than `max_depth` are refused.
    pub(crate) fn new(url: RedisUrl, connect_timeout: Duration, max_depth: usize) -> Self {
        let sentinel = SentinelWatch::new(&url, connect_timeout);
        let addr = match &sentinel {
            Some(s) => format!("sentinel master {}", s.name()),
            None => url.addr(),
        };
        Endpoint {
            addr,
            url,
            connect_timeout,
            max_depth,
            tls: None,
            sentinel,
        }
    }

    /// The TLS client configuration `rediss://` connections use.
    pub(crate) fn with_tls(mut self, tls: Option<TlsClient>) -> Self {
        self.tls = tls;
        self
    }

    /// Opens the socket to `host` at `addr`: TCP, then TLS for `rediss://`.
    async fn open(&self, host: &str, addr: &str) -> Result<Stream, BackendError> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| BackendError::new(ErrorKind::Connect, addr, e))?;
        let _ = tcp.set_nodelay(true);
        let (time, interval, retries) = KEEPALIVE;
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(time)
            .with_interval(interval)
            .with_retries(retries);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
        if !self.url.tls {
            return Ok(Stream::from(tcp));
        }
        let tls_error = |e: &dyn std::fmt::Display| BackendError::new(ErrorKind::Tls, addr, e);
        let Some(tls) = &self.tls else {
            return Err(tls_error(&"no TLS client configuration"));
        };
        let name =
            rustls_pki_types::ServerName::try_from(host.to_string()).map_err(|e| tls_error(&e))?;
        let connector = tokio_rustls::TlsConnector::from(tls.config());
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| tls_error(&e))?;
        Ok(Stream::from(tokio_rustls::TlsStream::Client(stream)))
    }

    /// The same server settings (credentials, TLS, timeouts, limits) for
    /// another node of a cluster.
    pub(crate) fn at(&self, host: &str, port: u16) -> Endpoint {
        let mut url = self.url.clone();
        url.host = host.to_string();
        url.port = port;
        Endpoint {
            addr: url.addr(),
            url,
            connect_timeout: self.connect_timeout,
            max_depth: self.max_depth,
            tls: self.tls.clone(),
            sentinel: None,
        }
    }

    /// The URL (its `Display` redacts the password).
    pub(crate) fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// How long a connection (and its handshake) may take.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects and runs `handshake`, all within the connect timeout. Error
    /// replies to fatal handshake steps (AUTH, HELLO, SELECT) fail the
    /// connection. A Sentinel-managed master is found through its sentinels
    /// first, and must say it is a master (`ROLE`).
    pub(crate) async fn connect(&self, handshake: &Handshake) -> Result<Connection, BackendError> {
        let attempt = async {
            let (host, addr, generation) = match &self.sentinel {
                Some(s) => {
                    let ((host, port), generation) = s.master().await?;
                    let addr = match host.contains(':') {
                        true => format!("[{host}]:{port}"),
                        false => format!("{host}:{port}"),
                    };
                    (host, addr, generation)
                }
                None => (self.url.host.clone(), self.addr.clone(), 0),
            };
            let stream = self.open(&host, &addr).await?;
            let mut conn = Connection::new(stream, addr.clone(), self.max_depth);
            conn.set_generation(generation);
            let (bytes, mut steps) = handshake.encode(&self.url);
            conn.out().extend_from_slice(&bytes);
            if self.sentinel.is_some() {
                // What the sentinels said may be stale: a replica answers
                // `ROLE` with `slave`.
                encode_command(conn.out(), [&b"ROLE"[..]].into_iter());
                steps.push(Step {
                    what: "ROLE",
                    fatal: true,
                });
            }
            for step in &steps {
                let frame = match conn.read_reply().await {
                    Ok(frame) => frame,
                    Err(e) if e.kind() == ErrorKind::Closed => {
                        let during = format!(" during {}", step.what);
                        return Err(BackendError::new(ErrorKind::Closed, &addr, during));
                    }
                    Err(e) => return Err(e),
                };
                if step.fatal && frame.first() == Some(&b'-') {
                    let text = String::from_utf8_lossy(&frame[1..]);
                    let detail = format!("{} failed: {}", step.what, text.trim_end());
                    return Err(BackendError::new(ErrorKind::Handshake, &addr, detail));
                }
                if step.what == CLIENT_ID {
                    conn.set_server_id(integer_reply(&frame));
                }
                if step.what == "ROLE" && !role_is_master(&frame) {
                    let detail = "ROLE: a replica, not the master the sentinels named";
                    return Err(BackendError::new(ErrorKind::Handshake, &addr, detail));
                }
            }
            Ok(conn)
        };
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::new(
                ErrorKind::Timeout,
                &self.addr,
                format_args!("{:?}", self.connect_timeout),
            )),
        };
        if let (Err(_), Some(s)) = (&result, &self.sentinel) {
            // Ask the sentinels again next time.
            s.forget();
        }
        result
    }

    /// Resolves once a connection opened at `generation` (see
    /// [`Connection::generation`]) is to a master that is no longer the
    /// master: a Sentinel switch. Never, for any other server.
    pub(crate) async fn moved(&self, generation: u64) {
        match &self.sentinel {
            Some(s) => s.moved(generation).await,
            None => std::future::pending().await,
        }
    }

    /// Whether `conn` is still to the master (false once the sentinels
    /// switched it).
    pub(crate) fn is_current(&self, conn: &Connection) -> bool {
        self.sentinel
            .as_ref()
            .is_none_or(|s| s.generation() == conn.generation())
    }

    /// Masters switched by the sentinels so far (0 without Sentinel).
    pub(crate) fn switches(&self) -> u64 {
        self.sentinel.as_ref().map_or(0, |s| s.switches())
    }
}

/// The value of an integer reply (`:n`), if it is one.
fn integer_reply(frame: &[u8]) -> Option<u64> {
    let digits = frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether a `ROLE` reply is a master's: its first element is `master` (a
/// replica's is `slave`, and names its master's host, which may spell
/// anything).
fn role_is_master(frame: &[u8]) -> bool {
    frame
        .iter()
        .position(|&c| c == b'\n')
        .is_some_and(|i| frame[i + 1..].starts_with(b"$6\r\nmaster\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_master_says_master_first() {
        assert!(role_is_master(b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"));
        let replica =
            b"*5\r\n$5\r\nslave\r\n$12\r\nredis-master\r\n:6379\r\n$9\r\nconnected\r\n:1\r\n";
        assert!(!role_is_master(replica));
    }

    #[tokio::test]
    async fn connections_to_a_server_keep_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let url = RedisUrl::parse(&format!("redis://{addr}")).unwrap();
        let endpoint = Endpoint::new(url, Duration::from_secs(1), 8);
        let Ok(Stream::Plain(tcp)) = endpoint.open("127.0.0.1", &addr).await else {
            panic!("not a plain TCP stream");
        };
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE.0);
        assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE.1);
        assert_eq!(sock.tcp_keepalive_retries().unwrap(), KEEPALIVE.2);
    }
}
