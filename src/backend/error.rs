//! Errors of outbound connections, classified so callers can tell a server
//! that is down from one that refused the handshake or spoke garbage.

use std::fmt;

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// The TCP connection could not be opened.
    Connect,
    /// Connecting (and the handshake) took longer than the connect timeout.
    Timeout,
    /// The server answered a handshake command with an error (AUTH, HELLO, SELECT).
    Handshake,
    /// The server closed the connection.
    Closed,
    /// A socket error on an open connection.
    Io,
    /// The server sent bytes that are not RESP.
    Protocol,
    /// The TLS handshake failed (certificate, CA, client certificate...).
    Tls,
}

/// An outbound connection failed. `Display` is one line, fit for a client's
/// error reply and for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackendError {
    kind: ErrorKind,
    peer: String,
    detail: String,
}

impl BackendError {
    /// An error of `kind` concerning the server at `peer` (`host:port`).
    pub(crate) fn new(kind: ErrorKind, peer: impl Into<String>, detail: impl fmt::Display) -> Self {
        BackendError {
            kind,
            peer: peer.into(),
            detail: detail.to_string(),
        }
    }

    /// What kind of failure.
    pub(crate) fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (peer, detail) = (&self.peer, &self.detail);
        match self.kind {
            ErrorKind::Connect => write!(f, "cannot connect to {peer}: {detail}"),
            ErrorKind::Timeout => write!(f, "no answer from {peer} within {detail}"),
            ErrorKind::Handshake => write!(f, "{detail} (on {peer})"),
            ErrorKind::Closed => write!(f, "{peer} closed the connection{detail}"),
            ErrorKind::Io => write!(f, "{peer}: {detail}"),
            ErrorKind::Protocol => write!(f, "invalid reply from {peer}: {detail}"),
            ErrorKind::Tls => write!(f, "TLS with {peer} failed: {detail}"),
        }
    }
}

impl std::error::Error for BackendError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server() {
        let e = BackendError::new(ErrorKind::Connect, "10.0.0.1:6379", "Connection refused");
        assert_eq!(
            e.to_string(),
            "cannot connect to 10.0.0.1:6379: Connection refused"
        );
        let e = BackendError::new(ErrorKind::Closed, "h:1", "");
        assert_eq!(e.to_string(), "h:1 closed the connection");
        assert_eq!(e.kind(), ErrorKind::Closed);
    }
}
