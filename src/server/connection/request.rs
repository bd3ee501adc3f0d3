//! A forwarded request as it leaves for a backend: the bytes the client sent,
//! re-encoded as RESP when it sent an inline command, or rewritten when the
//! classifier said so (an `EVALSHA` of a lock script the proxy knows goes out
//! as `EVAL` with the script's text).
//!
//! Both the single-backend path (`dispatch.rs`) and the cluster path
//! (`cluster.rs`) write requests through here, so neither imports the other.

use bytes::{Bytes, BytesMut};

use crate::command::lookup;
use crate::protocol::{ArgList, Args, FrameLimits, RequestParser, encode_command};
use crate::server::cluster::{Plan, plan, upper};

/// One request, ready to be written to a backend.
#[derive(Clone)]
pub(super) struct Outgoing<'a> {
    /// The parsed arguments.
    pub(super) args: Args<'a>,
    /// The bytes as received.
    raw: &'a [u8],
    /// Received as an inline command: `raw` is not RESP.
    inline: bool,
    /// How it is rewritten, if it is.
    rewrite: Rewrite,
}

/// A rewrite of a request (one field, so a request that goes as received
/// checks one thing).
#[derive(Clone)]
enum Rewrite {
    /// As received.
    None,
    /// Sent as `EVAL` (or `EVAL_RO`) with this text instead of `EVALSHA`.
    Eval(Bytes),
    /// This argument replaced (a client named by the proxy's id goes to the
    /// backend with its connection's id there).
    Arg(usize, Bytes),
}

impl<'a> Outgoing<'a> {
    /// The request `args`, received as `raw` (`inline`: an inline command).
    pub(super) fn new(args: Args<'a>, raw: &'a [u8], inline: bool) -> Self {
        Outgoing {
            args,
            raw,
            inline,
            rewrite: Rewrite::None,
        }
    }

    /// Argument `at` goes out as `value`.
    pub(super) fn with_arg(mut self, swap: Option<(usize, Bytes)>) -> Self {
        if let Some((at, value)) = swap {
            self.rewrite = Rewrite::Arg(at, value);
        }
        self
    }

    /// This `EVALSHA` goes out as `EVAL` with `text`: the backend runs it
    /// whatever scripts it holds (anyone may have flushed its cache), and no
    /// `NOSCRIPT` can come back for a script the client was told exists.
    pub(super) fn sent_as_eval(mut self, text: Option<Bytes>) -> Self {
        if let Some(text) = text {
            self.rewrite = Rewrite::Eval(text);
        }
        self
    }

    /// Whether the received bytes can go as they are.
    fn verbatim(&self) -> bool {
        !self.inline && matches!(self.rewrite, Rewrite::None)
    }

    /// Appends the request to `out`.
    pub(super) fn write_to(&self, out: &mut BytesMut) {
        if self.verbatim() {
            out.extend_from_slice(self.raw);
        } else {
            self.encode(out);
        }
    }

    /// Calls `f` with the request's bytes (no copy when they go as received).
    pub(super) fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        if self.verbatim() {
            f(self.raw)
        } else {
            let mut b = BytesMut::new();
            self.encode(&mut b);
            f(&b)
        }
    }

    fn encode(&self, out: &mut BytesMut) {
        let text = match &self.rewrite {
            Rewrite::None => {
                encode_command(out, self.args.iter());
                return;
            }
            Rewrite::Arg(at, value) => {
                let parts = self.args.iter().enumerate().map(|(i, a)| match i {
                    i if i == *at => &value[..],
                    _ => a,
                });
                encode_command(out, parts);
                return;
            }
            Rewrite::Eval(text) => text,
        };
        // EVALSHA_RO runs as EVAL_RO: the read-only promise is the client's.
        let name: &[u8] = if self.args.arg(0).len() > b"EVALSHA".len() {
            b"EVAL_RO"
        } else {
            b"EVAL"
        };
        let parts = self.args.iter().enumerate().map(|(i, a)| match i {
            0 => name,
            1 => &text[..],
            _ => a,
        });
        encode_command(out, parts);
    }
}

/// The hash slot of a request the proxy sends itself (a split script's data
/// part, to a cluster backend), `None` if it has no keys.
pub(super) fn request_slot(request: &[u8]) -> Option<u16> {
    let mut parser = RequestParser::new(FrameLimits::default());
    parser.parse(request).ok()??;
    let args = parser.args(request);
    let mut buf = [0u8; 24];
    match plan(upper(args.get(0)?, &mut buf), lookup(&args), &args) {
        Plan::Slot(slot) => Some(slot),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(req: &[u8], f: impl FnOnce(Outgoing<'_>)) {
        let mut p = RequestParser::new(FrameLimits::default());
        let n = p.parse(req).unwrap().unwrap();
        let inline = p.is_inline();
        f(Outgoing::new(p.args(req), &req[..n], inline));
    }

    #[test]
    fn received_bytes_go_as_they_are_unless_rewritten() {
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        parsed(req, |o| o.with_bytes(|b| assert_eq!(b, req)));
        parsed(b"GET k\r\n", |o| {
            o.with_bytes(|b| assert_eq!(b, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"));
        });
    }

    #[test]
    fn a_swapped_argument_goes_out_instead() {
        parsed(b"CLIENT UNBLOCK 7 ERROR\r\n", |o| {
            let mut out = BytesMut::new();
            o.with_arg(Some((2, Bytes::from_static(b"1234"))))
                .write_to(&mut out);
            assert_eq!(
                &out[..],
                b"*4\r\n$6\r\nCLIENT\r\n$7\r\nUNBLOCK\r\n$4\r\n1234\r\n$5\r\nERROR\r\n"
            );
        });
    }

    #[test]
    fn evalsha_goes_out_as_eval_with_the_text() {
        let text = Bytes::from_static(b"return 1");
        let req = b"*4\r\n$7\r\nevalsha\r\n$3\r\nabc\r\n$1\r\n1\r\n$1\r\nk\r\n";
        parsed(req, |o| {
            let mut out = BytesMut::new();
            o.sent_as_eval(Some(text.clone())).write_to(&mut out);
            assert_eq!(
                &out[..],
                b"*4\r\n$4\r\nEVAL\r\n$8\r\nreturn 1\r\n$1\r\n1\r\n$1\r\nk\r\n"
            );
        });
        parsed(b"EVALSHA_RO abc 0\r\n", |o| {
            let mut out = BytesMut::new();
            o.sent_as_eval(Some(text.clone())).write_to(&mut out);
            assert!(out.starts_with(b"*3\r\n$7\r\nEVAL_RO\r\n$8\r\nreturn 1\r\n"));
        });
    }
}
