//! What a fresh connection sends before its first real command.

use bytes::{Bytes, BytesMut};

use crate::config::RedisUrl;
use crate::protocol::{Proto, encode_command};

/// The state a new connection must be brought to: credentials (always from the
/// URL), protocol, database, client name and library. Built by whoever opens
/// the connection — a client's session replays its own state; masters and
/// shared connections take the URL's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Handshake {
    /// End with a `PING` that must be answered: the server is alive and
    /// serving, not just accepting connections (or still loading its data).
    ping: bool,
    proto: Proto,
    db: Option<u32>,
    name: Option<Bytes>,
    lib_name: Option<Bytes>,
    lib_ver: Option<Bytes>,
    /// Credentials of the client's own (`AUTH` passed to the backend),
    /// instead of the URL's.
    auth: Option<(Option<Bytes>, Bytes)>,
    /// Ask the server for the connection's id (`CLIENT ID`), kept in
    /// [`Connection::server_id`](super::Connection::server_id).
    client_id: bool,
}

/// The step whose reply is the connection's id on the server.
pub(crate) const CLIENT_ID: &str = "CLIENT ID";

/// One handshake command, and whether an error reply to it fails the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// For error messages.
    pub(crate) what: &'static str,
    /// Whether an error reply fails the connection.
    pub(crate) fatal: bool,
}

impl Handshake {
    /// Credentials and database from the URL, RESP2.
    pub(crate) fn new() -> Self {
        Handshake::default()
    }

    /// Speak `proto` (HELLO 3 for RESP3).
    pub(crate) fn proto(mut self, proto: Proto) -> Self {
        self.proto = proto;
        self
    }

    /// End with a `PING` the server must answer with `PONG`.
    pub(crate) fn ping(mut self) -> Self {
        self.ping = true;
        self
    }

    /// Select `db` instead of the URL's database.
    pub(crate) fn db(mut self, db: u32) -> Self {
        self.db = Some(db);
        self
    }

    /// `CLIENT SETNAME`.
    pub(crate) fn name(mut self, name: Option<Bytes>) -> Self {
        self.name = name;
        self
    }

    /// `CLIENT SETINFO LIB-NAME` and `LIB-VER`.
    pub(crate) fn lib(mut self, name: Option<Bytes>, version: Option<Bytes>) -> Self {
        self.lib_name = name;
        self.lib_ver = version;
        self
    }

    /// Learn the connection's id on the server (a client's own connection:
    /// `CLIENT UNBLOCK` and `CLIENT TRACKING REDIRECT` name it by that id).
    pub(crate) fn client_id(mut self) -> Self {
        self.client_id = true;
        self
    }

    /// `AUTH` as this user instead of the URL's credentials.
    pub(crate) fn auth(mut self, auth: Option<(Option<Bytes>, Bytes)>) -> Self {
        self.auth = auth;
        self
    }

    /// The steps a connection opened with `base` still needs to reach this
    /// state, when they are all ones whose error fails nothing (client name
    /// and library): encoded, with how many commands they are. `None` when
    /// they differ where an error would matter (protocol, database, the
    /// closing PING): such a connection cannot stand in.
    pub(crate) fn rest_after(&self, base: &Handshake, url: &RedisUrl) -> Option<(BytesMut, usize)> {
        let db = |h: &Handshake| h.db.unwrap_or(url.db);
        if self.proto != base.proto
            || db(self) != db(base)
            || self.ping != base.ping
            || self.auth != base.auth
            || self.client_id != base.client_id
        {
            return None;
        }
        let rest = Handshake {
            name: self.name.clone().filter(|n| base.name.as_ref() != Some(n)),
            lib_name: self
                .lib_name
                .clone()
                .filter(|n| base.lib_name.as_ref() != Some(n)),
            lib_ver: self
                .lib_ver
                .clone()
                .filter(|v| base.lib_ver.as_ref() != Some(v)),
            ..Handshake::default()
        };
        let mut out = BytesMut::new();
        let mut n = 0;
        if let Some(name) = &rest.name {
            encode_command(&mut out, [&b"CLIENT"[..], b"SETNAME", name].into_iter());
            n += 1;
        }
        for (attr, value) in [
            (&b"LIB-NAME"[..], &rest.lib_name),
            (b"LIB-VER", &rest.lib_ver),
        ] {
            if let Some(v) = value {
                encode_command(&mut out, [&b"CLIENT"[..], b"SETINFO", attr, v].into_iter());
                n += 1;
            }
        }
        Some((out, n))
    }

    /// The commands, encoded, and one step per command.
    pub(crate) fn encode(&self, url: &RedisUrl) -> (BytesMut, Vec<Step>) {
        let mut out = BytesMut::new();
        let mut steps = Vec::new();
        let mut step = |what, fatal| steps.push(Step { what, fatal });
        match &self.auth {
            Some((user, pass)) => {
                match user {
                    Some(u) => encode_command(&mut out, [&b"AUTH"[..], u, pass].into_iter()),
                    None => encode_command(&mut out, [&b"AUTH"[..], pass].into_iter()),
                }
                step("AUTH", true);
            }
            None => {
                if let Some(auth) = url.auth_args() {
                    encode_command(&mut out, auth.into_iter());
                    step("AUTH", true);
                }
            }
        }
        if self.proto == Proto::Resp3 {
            encode_command(&mut out, [&b"HELLO"[..], b"3"].into_iter());
            step("HELLO 3", true);
        }
        let db = self.db.unwrap_or(url.db);
        if db != 0 {
            let db = db.to_string();
            encode_command(&mut out, [&b"SELECT"[..], db.as_bytes()].into_iter());
            step("SELECT", true);
        }
        if let Some(name) = &self.name {
            encode_command(&mut out, [&b"CLIENT"[..], b"SETNAME", name].into_iter());
            step("CLIENT SETNAME", false);
        }
        for (attr, value) in [
            (&b"LIB-NAME"[..], &self.lib_name),
            (b"LIB-VER", &self.lib_ver),
        ] {
            if let Some(v) = value {
                encode_command(&mut out, [&b"CLIENT"[..], b"SETINFO", attr, v].into_iter());
                // Older servers do not know SETINFO; clients ignore that too.
                step("CLIENT SETINFO", false);
            }
        }
        if self.client_id {
            encode_command(&mut out, [&b"CLIENT"[..], b"ID"].into_iter());
            step(CLIENT_ID, false);
        }
        if self.ping {
            encode_command(&mut out, [&b"PING"[..]].into_iter());
            step("PING", true);
        }
        (out, steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replays_the_session_state() {
        let url = RedisUrl::parse("redis://u:p@h:1/2").unwrap();
        let (bytes, steps) = Handshake::new()
            .proto(Proto::Resp3)
            .name(Some(Bytes::from_static(b"app")))
            .encode(&url);
        let whats: Vec<_> = steps.iter().map(|s| s.what).collect();
        assert_eq!(whats, ["AUTH", "HELLO 3", "SELECT", "CLIENT SETNAME"]);
        assert!(bytes.ends_with(b"$7\r\nSETNAME\r\n$3\r\napp\r\n"));
        let (_, steps) = Handshake::new().db(0).encode(&url);
        assert_eq!(steps.len(), 1, "the session's db 0 overrides the URL's");
        let (bytes, steps) = Handshake::new().encode(&RedisUrl::parse("redis://h:1").unwrap());
        assert!(bytes.is_empty() && steps.is_empty());
        let (bytes, steps) = Handshake::new()
            .ping()
            .encode(&RedisUrl::parse("redis://h:1").unwrap());
        assert_eq!(&bytes[..], b"*1\r\n$4\r\nPING\r\n");
        assert!(steps[0].fatal, "a server that cannot answer PING is not up");
    }

    #[test]
    fn a_plain_connection_stands_in_when_only_names_differ() {
        let url = RedisUrl::parse("redis://h:1/2").unwrap();
        let base = Handshake::new();
        let named = Handshake::new()
            .db(2)
            .name(Some(Bytes::from_static(b"app")))
            .lib(Some(Bytes::from_static(b"redis-py")), None);
        let (bytes, n) = named.rest_after(&base, &url).unwrap();
        assert_eq!(n, 2);
        assert!(bytes.starts_with(b"*3\r\n$6\r\nCLIENT\r\n$7\r\nSETNAME\r\n$3\r\napp\r\n"));
        assert_eq!(Handshake::new().rest_after(&base, &url).unwrap().1, 0);
        // The protocol or the database cannot be caught up without a step
        // whose error matters.
        assert!(Handshake::new().db(0).rest_after(&base, &url).is_none());
        let resp3 = Handshake::new().proto(Proto::Resp3);
        assert!(resp3.rest_after(&base, &url).is_none());
        assert!(
            resp3
                .rest_after(&Handshake::new().proto(Proto::Resp3), &url)
                .is_some()
        );
    }
}
