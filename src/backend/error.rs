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
    /// The server sent a reply past one of the proxy's own limits (a reply
    /// nested deeper than `limits.max_nesting_depth`): nothing is wrong with
    /// the server, but the connection cannot go on past a reply it could
    /// not frame.
    Limit,
    /// The TLS handshake failed (certificate, CA, client certificate...).
    Tls,
    /// The sentinels switched the master: this connection is to the old one.
    Switched,
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

    /// What a client whose request waited on the failed passthrough
    /// connection gets instead of its reply.
    pub(crate) fn reply(&self) -> crate::protocol::Reply {
        match self.kind {
            ErrorKind::Limit => crate::errors::backend_reset(self),
            _ => crate::errors::backend_unavailable(self),
        }
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
            ErrorKind::Limit => write!(
                f,
                "connection to {peer} reset: a reply past the proxy's own limit ({detail})"
            ),
            ErrorKind::Tls => write!(f, "TLS with {peer} failed: {detail}"),
            ErrorKind::Switched => write!(
                f,
                "{peer} is no longer the master: the sentinels switched it{detail}"
            ),
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
