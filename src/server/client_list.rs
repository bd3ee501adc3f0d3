//! `CLIENT LIST`, `CLIENT INFO` and `CLIENT KILL` over the proxy's own
//! clients: one line per client connected to the proxy, in Redis's format,
//! with the name, library, database, protocol and user it set *here* — a
//! backend's `CLIENT LIST` shows the proxy's connections instead, several
//! clients on one when they share it. `LIST` and `KILL` match clients with
//! the same [`Filter`] (parsed in `command/client.rs`).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

pub(crate) use crate::command::Filter;

/// What a client's connection publishes about itself for other connections'
/// `CLIENT LIST` (changed only when the client changes it).
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// The proxy's address it connected to.
    pub(crate) laddr: SocketAddr,
    /// The socket's descriptor.
    pub(crate) fd: i32,
    pub(crate) name: Option<Bytes>,
    pub(crate) lib_name: Option<Bytes>,
    pub(crate) lib_ver: Option<Bytes>,
    pub(crate) db: u32,
    /// 2 or 3.
    pub(crate) resp: i64,
    pub(crate) user: Bytes,
    /// The id the backend gave the client's own connection to it, if it
    /// has one: `CLIENT UNBLOCK` and `CLIENT TRACKING ... REDIRECT` name
    /// clients by the proxy's ids, the backend by its own.
    pub(crate) backend_id: Option<u64>,
}

impl Profile {
    /// A client just connected.
    pub(crate) fn new(addr: SocketAddr, laddr: SocketAddr, fd: i32, db: u32) -> Self {
        Profile {
            addr,
            laddr,
            fd,
            name: None,
            lib_name: None,
            lib_ver: None,
            db,
            resp: 2,
            user: Bytes::from_static(crate::auth::DEFAULT_USER.as_bytes()),
            backend_id: None,
        }
    }
}

/// `flags=` letters, kept as bits a connection stores once per turn.
pub(crate) mod state {
    /// `O`: in `MONITOR`.
    pub(crate) const MONITOR: u8 = 1;
    /// `P`: subscribed.
    pub(crate) const PUBSUB: u8 = 2;
    /// `x`: inside `MULTI`.
    pub(crate) const MULTI: u8 = 4;
    /// `b`: waiting for a blocking command.
    pub(crate) const BLOCKED: u8 = 8;
}

/// The live numbers of one client at the moment of the listing.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Moment {
    /// Seconds since it connected.
    pub(crate) age: u64,
    /// Seconds since it last sent something.
    pub(crate) idle: u64,
    /// [`state`] bits.
    pub(crate) state: u8,
    /// Bytes buffered for it.
    pub(crate) buffered: usize,
}

/// One `CLIENT LIST` line (without the newline), in Redis 7.2's field order.
pub(crate) fn line(out: &mut String, id: u64, p: &Profile, m: Moment, cmd: &str) {
    fn text(b: &Option<Bytes>) -> std::borrow::Cow<'_, str> {
        b.as_deref()
            .map(String::from_utf8_lossy)
            .unwrap_or_default()
    }
    let mut flags = String::new();
    for (bit, c) in [
        (state::MONITOR, 'O'),
        (state::PUBSUB, 'P'),
        (state::MULTI, 'x'),
        (state::BLOCKED, 'b'),
    ] {
        if m.state & bit != 0 {
            flags.push(c);
        }
    }
    if flags.is_empty() {
        flags.push('N');
    }
    let multi = if m.state & state::MULTI != 0 { 0 } else { -1 };
    let _ = write!(
        out,
        "id={id} addr={} laddr={} fd={} name={} age={} idle={} flags={flags} db={} \
         sub=0 psub=0 ssub=0 multi={multi} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 \
         rbs=0 rbp=0 obl=0 oll=0 omem={} tot-mem={} events=r cmd={cmd} user={} redir=-1 \
         resp={} lib-name={} lib-ver={}",
        p.addr,
        p.laddr,
        p.fd,
        text(&p.name),
        m.age,
        m.idle,
        p.db,
        m.buffered,
        m.buffered,
        String::from_utf8_lossy(&p.user),
        p.resp,
        text(&p.lib_name),
        text(&p.lib_ver),
    );
}

/// Whether client `id` with `p` and `m` is one `f` means.
pub(crate) fn matches(f: &Filter, id: u64, p: &Profile, m: &Moment) -> bool {
    let addr_is = |want: &Option<Bytes>, a: &SocketAddr| {
        want.as_ref()
            .is_none_or(|w| w.as_ref() == a.to_string().as_bytes())
    };
    !f.no_type
        && f.ids.as_ref().is_none_or(|ids| ids.contains(&id))
        && f.pubsub
            .is_none_or(|ps| ps == (m.state & state::PUBSUB != 0))
        && addr_is(&f.addr, &p.addr)
        && addr_is(&f.laddr, &p.laddr)
        && f.user.as_ref().is_none_or(|u| *u == p.user)
        && f.max_age.is_none_or(|a| m.age >= a)
}

/// Where the redirect target's id is in a `CLIENT GETREDIR` reply (all of
/// it: `:id`) or a `CLIENT TRACKINGINFO` reply (the integer after its
/// `redirect` field, in a RESP2 array or a RESP3 map): offset and length of
/// its digits.
pub(crate) fn redirect_span(frame: &[u8]) -> Option<(usize, usize)> {
    const FIELD: &[u8] = b"$8\r\nredirect\r\n:";
    let at = if frame.first() == Some(&b':') {
        1
    } else {
        // The field comes before the prefixes, which are the only values a
        // client chose.
        frame.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len()
    };
    let len = frame[at..].iter().position(|&c| c == b'\r')?;
    Some((at, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Kill, parse_kill, parse_list};

    fn profile() -> Profile {
        let mut p = Profile::new(
            "10.0.0.1:5000".parse().unwrap(),
            "127.0.0.1:6380".parse().unwrap(),
            9,
            0,
        );
        p.name = Some(Bytes::from_static(b"worker"));
        p
    }

    #[test]
    fn the_redirect_id_is_found_in_both_replies() {
        assert_eq!(redirect_span(b":42\r\n"), Some((1, 2)));
        let resp2 = b"*6\r\n$5\r\nflags\r\n*1\r\n$2\r\non\r\n$8\r\nredirect\r\n:1234\r\n$8\r\nprefixes\r\n*0\r\n";
        let (at, len) = redirect_span(resp2).unwrap();
        assert_eq!(&resp2[at..at + len], b"1234");
        let resp3 = b"%3\r\n$5\r\nflags\r\n~1\r\n$3\r\noff\r\n$8\r\nredirect\r\n:-1\r\n$8\r\nprefixes\r\n*0\r\n";
        let (at, len) = redirect_span(resp3).unwrap();
        assert_eq!(&resp3[at..at + len], b"-1");
        assert_eq!(redirect_span(b"-ERR no\r\n"), None);
    }

    #[test]
    fn a_line_has_redis_fields() {
        let mut s = String::new();
        let m = Moment {
            age: 5,
            idle: 1,
            state: state::MULTI,
            buffered: 10,
        };
        line(&mut s, 7, &profile(), m, "get");
        assert!(s.starts_with("id=7 addr=10.0.0.1:5000 laddr=127.0.0.1:6380 fd=9 name=worker age=5 idle=1 flags=x db=0 "), "{s}");
        assert!(s.contains(" multi=0 "), "{s}");
        assert!(
            s.ends_with(" cmd=get user=default redir=-1 resp=2 lib-name= lib-ver="),
            "{s}"
        );
    }

    #[test]
    fn filters_parse_as_redis_does() {
        let f = parse_list(&["CLIENT", "LIST", "ID", "3", "4"][..], 2).unwrap();
        assert!(matches(&f, 3, &profile(), &Moment::default()));
        assert!(!matches(&f, 5, &profile(), &Moment::default()));
        assert!(parse_list(&["CLIENT", "LIST", "ID", "x"][..], 2).is_err());
        assert!(parse_list(&["CLIENT", "LIST", "TYPE", "odd"][..], 2).is_err());
        let f = parse_list(&["CLIENT", "LIST", "TYPE", "replica"][..], 2).unwrap();
        assert!(!matches(&f, 3, &profile(), &Moment::default()));
        let f = parse_list(&["CLIENT", "LIST", "TYPE", "pubsub"][..], 2).unwrap();
        let sub = Moment {
            state: state::PUBSUB,
            ..Moment::default()
        };
        assert!(matches(&f, 3, &profile(), &sub));
        assert!(!matches(&f, 3, &profile(), &Moment::default()));

        assert_eq!(
            parse_kill(&["CLIENT", "KILL", "1.2.3.4:5"][..], 2).unwrap(),
            Kill::Addr(Bytes::from_static(b"1.2.3.4:5"))
        );
        let Kill::Filter(f) = parse_kill(
            &["CLIENT", "KILL", "LADDR", "127.0.0.1:6380", "SKIPME", "no"][..],
            2,
        )
        .unwrap() else {
            panic!("a filter");
        };
        assert!(!f.skip_me);
        assert!(matches(&f, 1, &profile(), &Moment::default()));
        // One argument is the old form, an address (`ID` too, as in Redis).
        assert!(matches!(
            parse_kill(&["CLIENT", "KILL", "ID"][..], 2),
            Ok(Kill::Addr(_))
        ));
        assert!(parse_kill(&["CLIENT", "KILL", "ID", "1", "TYPE"][..], 2).is_err());
        assert!(parse_kill(&["CLIENT", "KILL", "ID", "0"][..], 2).is_err());
        assert!(parse_kill(&["CLIENT", "KILL", "NOPE", "1"][..], 2).is_err());
        let Kill::Filter(f) = parse_kill(&["CLIENT", "KILL", "USER", "bob"][..], 2).unwrap() else {
            panic!("a filter");
        };
        assert!(!matches(&f, 1, &profile(), &Moment::default()));
    }
}
