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
    /// Deepest nesting of any frame the proxy decodes.
    pub max_nesting_depth: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_nesting_depth: 128,
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

/// Finds `\r` in `buf` from `from`; Redis treats `\r` plus any one byte as a line end.
fn find_cr(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\r', buf.get(from..)?).map(|i| from + i)
}

/// Parses a decimal length the way Redis's `string2ll` does.
fn parse_len(line: &[u8]) -> Option<i64> {
    parse_i64(line)
}
