//! Where a Redis server is, and opening connections to it.

use std::time::Duration;

use tokio::net::TcpStream;

use super::connection::Connection;
use super::error::{BackendError, ErrorKind};
use super::handshake::Handshake;
use crate::config::RedisUrl;
use crate::stream::Stream;
use crate::tls::TlsClient;

/// A Redis server the proxy connects to, with what every connection to it needs.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    url: RedisUrl,
    addr: String,
    connect_timeout: Duration,
    max_depth: usize,
    /// For `rediss://`: the TLS client configuration.
    tls: Option<TlsClient>,
}

impl Endpoint {
    /// The server at `url`; connecting (handshake included) may take up to
    /// `connect_timeout`; replies nested deeper than `max_depth` are refused.
    pub(crate) fn new(url: RedisUrl, connect_timeout: Duration, max_depth: usize) -> Self {
        Endpoint {
            addr: url.addr(),
            url,
            connect_timeout,
            max_depth,
            tls: None,
        }
    }

    /// The TLS client configuration `rediss://` connections use.
    pub(crate) fn with_tls(mut self, tls: Option<TlsClient>) -> Self {
        self.tls = tls;
        self
    }

    /// Opens the socket: TCP, then TLS for `rediss://`.
    async fn open(&self) -> Result<Stream, BackendError> {
        let tcp = TcpStream::connect(&self.addr)
            .await
            .map_err(|e| BackendError::new(ErrorKind::Connect, &self.addr, e))?;
        let _ = tcp.set_nodelay(true);
        if !self.url.tls {
            return Ok(Stream::from(tcp));
        }
        let tls_error =
            |e: &dyn std::fmt::Display| BackendError::new(ErrorKind::Tls, &self.addr, e);
        let Some(tls) = &self.tls else {
            return Err(tls_error(&"no TLS client configuration"));
        };
        let name = rustls_pki_types::ServerName::try_from(self.url.host.clone())
            .map_err(|e| tls_error(&e))?;
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
        }
    }

    /// The URL (its `Display` redacts the password).
    pub(crate) fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// Connects and runs `handshake`, all within the connect timeout. Error
    /// replies to fatal handshake steps (AUTH, HELLO, SELECT) fail the connection.
    pub(crate) async fn connect(&self, handshake: &Handshake) -> Result<Connection, BackendError> {
        let attempt = async {
            let stream = self.open().await?;
            let mut conn = Connection::new(stream, self.addr.clone(), self.max_depth);
            let (bytes, steps) = handshake.encode(&self.url);
            if steps.is_empty() {
                return Ok(conn);
            }
            conn.out().extend_from_slice(&bytes);
            for step in &steps {
                let frame = match conn.read_reply().await {
                    Ok(frame) => frame,
                    Err(e) if e.kind() == ErrorKind::Closed => {
                        let during = format!(" during {}", step.what);
                        return Err(BackendError::new(ErrorKind::Closed, &self.addr, during));
                    }
                    Err(e) => return Err(e),
                };
                if step.fatal && frame.first() == Some(&b'-') {
                    let text = String::from_utf8_lossy(&frame[1..]);
                    let detail = format!("{} failed: {}", step.what, text.trim_end());
                    return Err(BackendError::new(ErrorKind::Handshake, &self.addr, detail));
                }
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::new(
                ErrorKind::Timeout,
                &self.addr,
                format_args!("{:?}", self.connect_timeout),
            )),
        }
    }
}
