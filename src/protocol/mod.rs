//! The wire protocol, isolated here: request framing (RESP multibulk and inline),
//! reply framing (RESP2/RESP3 scanning without decoding), and reply encoding.
//!
//! Nothing in this module does I/O. The parsers are resumable: they keep their
//! place between calls, so a request that arrives one byte at a time costs no
//! more than one that arrives whole, and they never allocate a declared length
//! up front.

mod elements;
mod int;
mod reply;
mod request;
mod scan;

pub use elements::elements;
pub use int::parse_i64;
pub use reply::{Reply, encode_command};
pub use request::{ArgList, Args, RequestParser};
pub use scan::{FrameInfo, ReplyScanner};

/// The protocol a client chose with `HELLO`: RESP2 (the default) or RESP3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Proto {
    /// RESP2.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

impl Proto {
    /// The protocol version number, as `HELLO` spells it.
    pub fn version(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// Framing limits. Requests over a limit are refused with a protocol error and the
/// connection is closed, as Redis does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest bulk string a client may send (Redis `proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Most elements in one request (Redis's historical 1,048,576).
    pub max_multibulk_len: u64,
    /// Longest inline command, and longest `*`/`$` header line (Redis: 64 KiB).
    pub max_inline_len: usize,
    /// Deepest nesting of a reply the proxy frames (requests cannot nest).
    /// Redis itself sends replies about 8,000 levels deep (a Lua table that
    /// holds itself); the scanner's stack costs 16 bytes a level.
    pub max_nesting_depth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_nesting_depth: 65_536,
        }
    }
}

/// A framing error. The `Display` text is what the client receives after `ERR `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Inline request longer than the limit, with no newline yet.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// Unbalanced quotes in an inline request.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A `*` header line longer than the limit.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A bad or too large element count.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// More than 10 elements before authentication.
    #[error("Protocol error: unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    /// A bulk longer than 16 KiB before authentication.
    #[error("Protocol error: unauthenticated bulk length")]
    UnauthenticatedBulk,
    /// A `$` header line longer than the limit.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// A bad or too large bulk length.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// Something other than `$` where a bulk string must start.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A frame nested deeper than the limit.
    #[error("Protocol error: nesting deeper than {0} levels")]
    TooDeep(usize),
    /// A type byte that RESP does not define.
    #[error("Protocol error: invalid frame type byte {0:?}")]
    InvalidType(char),
    /// A malformed length or integer line.
    #[error("Protocol error: invalid length or integer line")]
    InvalidLine,
}

/// The byte as Redis's error text prints it (`%c`).
fn printable(b: u8) -> char {
    b as char
}

/// How far [`find_cr`] looks byte by byte before handing over to `memchr`.
const SHORT_LINE: usize = 16;

/// Finds `\r` in `buf` from `from`; Redis treats `\r` plus any one byte as a line end.
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    // Nearly every line the proxy looks for is a length or a status of a few
    // bytes (`$3`, `+OK`): a plain loop ends before `memchr`'s setup would,
    // and this runs several times per request.
    let (short, long) = rest.split_at(rest.len().min(SHORT_LINE));
    if let Some(i) = short.iter().position(|&b| b == b'\r') {
        return Some(from + i);
    }
    memchr::memchr(b'\r', long).map(|i| from + short.len() + i)
}

/// A length line's common case read in one pass: plain digits (no sign, no
/// leading zero, at most 18 of them, so no overflow) up to a `\r` with one
/// more byte after it. Returns the value and the offset of the `\r`; `None`
/// for anything else, which the caller reads the general way ([`find_cr`],
/// then [`parse_len`], which give the same answer wherever this one gives one).
fn quick_len(buf: &[u8], from: usize) -> Option<(u64, usize)> {
    let line = buf.get(from..)?;
    let mut v: u64 = 0;
    for (i, &b) in line.iter().enumerate().take(19) {
        match b {
            b'0'..=b'9' => v = v * 10 + u64::from(b - b'0'),
            b'\r' if i > 0 && (i == 1 || line[0] != b'0') && from + i + 1 < buf.len() => {
                return Some((v, from + i));
            }
            _ => return None,
        }
    }
    None
}

/// Parses a decimal length the way Redis's `string2ll` does.
fn parse_len(line: &[u8]) -> Option<i64> {
    parse_i64(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_cr_finds_the_first_cr_on_either_side_of_the_short_scan() {
        for len in 0..40 {
            for from in [0, 1, 5] {
                let mut line = vec![b'x'; from + len];
                assert_eq!(find_cr(&line, from), None, "no cr, len {len}");
                line.extend_from_slice(b"\r\n\r");
                assert_eq!(find_cr(&line, from), Some(from + len), "len {len}");
            }
        }
        assert_eq!(find_cr(b"ab", 3), None);
        assert_eq!(find_cr(b"\r", 1), None);
    }

    /// `quick_len` answers only where the general way (find the `\r`, then
    /// `parse_len`, then one more byte) would, and then the same.
    fn general(buf: &[u8], from: usize) -> Option<(i64, usize)> {
        let cr = find_cr(buf, from).filter(|&cr| cr + 1 < buf.len())?;
        Some((parse_len(&buf[from..cr])?, cr))
    }

    fn agrees(buf: &[u8], from: usize) {
        if let Some((v, cr)) = quick_len(buf, from) {
            assert_eq!(
                general(buf, from),
                Some((v as i64, cr)),
                "{buf:?} from {from}"
            );
        }
    }

    #[test]
    fn quick_len_reads_plain_lengths_and_leaves_the_rest() {
        assert_eq!(quick_len(b"$3\r\nabc", 1), Some((3, 2)));
        assert_eq!(quick_len(b"*0\r\n", 1), Some((0, 2)));
        assert_eq!(
            quick_len(b"999999999999999999\r\n", 0),
            Some((999_999_999_999_999_999, 18))
        );
        for left in [
            &b"1234567890123456789\r\n"[..], // 19 digits: the general way
            b"-1\r\n",
            b"01\r\n",
            b"\r\n",
            b"12\r", // the byte after `\r` is not in yet
            b"12",
            b"1 2\r\n",
            b"+1\r\n",
        ] {
            assert_eq!(quick_len(left, 0), None, "{left:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn quick_len_agrees_with_the_general_way(
            buf in proptest::collection::vec(proptest::sample::select(b"0123456789-+\r\n x".to_vec()), 0..24),
            from in 0usize..4,
        ) {
            agrees(&buf, from);
        }
    }
}
