//! Replies the proxy builds itself, encoded in the protocol the client chose.

use bytes::{BufMut, Bytes, BytesMut};

use super::Proto;

/// A reply made by the proxy (lock results, HELLO, errors...). Passthrough
/// replies never take this form: they are forwarded as received.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A simple string, `+OK`.
    Simple(&'static str),
    /// A simple string built at run time.
    Status(String),
    /// An error line: the text after `-`, code included (`ERR ...`). Build it with
    /// the `errors` module, which keeps CR/LF out.
    Error(String),
    /// An integer.
    Int(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// Null: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// Null array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map: `%` in RESP3, a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A double: `,` in RESP3, a bulk string in RESP2 (as Redis's
    /// `addReplyDouble`), written in the shortest form that reads back the same.
    Double(f64),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// A bulk string from static text.
    pub fn bulk_static(s: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(s.as_bytes()))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of `self` in protocol `proto` to `out`.
    pub fn encode(&self, proto: Proto, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => line(out, b'+', s.as_bytes()),
            Reply::Error(s) => line(out, b'-', s.as_bytes()),
            Reply::Int(i) => {
                out.put_u8(b':');
                put_int(out, *i);
            }
            Reply::Bulk(b) => {
                out.put_u8(b'$');
                put_int(out, b.len() as i64);
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Nil => match proto {
                Proto::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::NilArray => match proto {
                Proto::Resp2 => out.extend_from_slice(b"*-1\r\n"),
                Proto::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                out.put_u8(b'*');
                put_int(out, items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = if d.is_finite() {
                    format!("{d}")
                } else if d.is_nan() {
                    "nan".into()
                } else if *d > 0.0 {
                    "inf".into()
                } else {
                    "-inf".into()
                };
                match proto {
                    Proto::Resp2 => Reply::Bulk(Bytes::from(text)).encode(proto, out),
                    Proto::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Proto::Resp2 => {
                        out.put_u8(b'*');
                        put_int(out, pairs.len() as i64 * 2);
                    }
                    Proto::Resp3 => {
                        out.put_u8(b'%');
                        put_int(out, pairs.len() as i64);
                    }
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
        }
    }

    /// The encoding of `self`: shared static bytes for the replies every lock
    /// operation gives (`OK`, nil, 0, 1), a new buffer for the others.
    pub fn to_bytes(&self, proto: Proto) -> Bytes {
        let fixed: Option<&'static [u8]> = match (self, proto) {
            (Reply::Simple("OK"), _) => Some(b"+OK\r\n"),
            (Reply::Nil, Proto::Resp2) => Some(b"$-1\r\n"),
            (Reply::Nil | Reply::NilArray, Proto::Resp3) => Some(b"_\r\n"),
            (Reply::Int(0), _) => Some(b":0\r\n"),
            (Reply::Int(1), _) => Some(b":1\r\n"),
            _ => None,
        };
        if let Some(b) = fixed {
            return Bytes::from_static(b);
        }
        let mut out = BytesMut::new();
        self.encode(proto, &mut out);
        out.freeze()
    }
}

fn line(out: &mut BytesMut, ty: u8, text: &[u8]) {
    out.put_u8(ty);
    out.extend_from_slice(text);
    out.extend_from_slice(b"\r\n");
}

fn put_int(out: &mut BytesMut, i: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(i).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a RESP array of bulk strings (a command) to `out`.
pub fn encode_command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    out.put_u8(b'*');
    put_int(out, args.len() as i64);
    for a in args {
        out.put_u8(b'$');
        put_int(out, a.len() as i64);
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Proto) -> String {
        String::from_utf8(r.to_bytes(p).to_vec()).unwrap()
    }

    #[test]
    fn nil_follows_the_protocol() {
        assert_eq!(enc(&Reply::Nil, Proto::Resp2), "$-1\r\n");
        assert_eq!(enc(&Reply::Nil, Proto::Resp3), "_\r\n");
        assert_eq!(enc(&Reply::NilArray, Proto::Resp2), "*-1\r\n");
    }

    #[test]
    fn fixed_replies_encode_like_the_others() {
        for r in [
            Reply::OK,
            Reply::Nil,
            Reply::NilArray,
            Reply::Int(0),
            Reply::Int(1),
        ] {
            for p in [Proto::Resp2, Proto::Resp3] {
                let mut slow = BytesMut::new();
                r.encode(p, &mut slow);
                assert_eq!(r.to_bytes(p), slow.freeze(), "{r:?} {p:?}");
            }
        }
    }

    #[test]
    fn maps_flatten_in_resp2() {
        let m = Reply::Map(vec![(Reply::bulk_static("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, Proto::Resp2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, Proto::Resp3), "%1\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn commands() {
        let mut out = BytesMut::new();
        encode_command(&mut out, [&b"GET"[..], b"k"].into_iter());
        assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    }
}
