//! Request framing: RESP multibulk (`*N` of `$len` bulks, what every client sends in
//! RESP2 and RESP3 alike) and inline commands (`PING\r\n` typed into nc), with
//! Redis's limits and Redis's error texts.

use super::{FrameLimits, ProtocolError, find_cr, parse_len, printable};

/// Most elements of a request before authentication (Redis's limit).
const UNAUTHENTICATED_MULTIBULK: i64 = 10;
/// Longest bulk before authentication (Redis's limit).
const UNAUTHENTICATED_BULK: usize = 16 * 1024;

/// Read access to a request's arguments, whatever holds them.
pub trait ArgList {
    /// Number of arguments, the command name included.
    fn len(&self) -> usize;
    /// Argument `i`; panics on an index `>= len()`, so callers check `len` first.
    fn arg(&self, i: usize) -> &[u8];
    /// Whether there are no arguments.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Argument `i`, or `None` past the end.
    fn get(&self, i: usize) -> Option<&[u8]> {
        (i < self.len()).then(|| self.arg(i))
    }
}

impl<A: AsRef<[u8]>> ArgList for [A] {
    fn len(&self) -> usize {
        <[A]>::len(self)
    }
    fn arg(&self, i: usize) -> &[u8] {
        self[i].as_ref()
    }
}

/// The arguments of one parsed request: spans into the read buffer (multibulk)
/// or into the parser's scratch buffer (inline, whose quoting is unescaped).
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    base: &'a [u8],
    spans: &'a [(usize, usize)],
}

impl<'a> Args<'a> {
    /// Argument `i` with the buffer's lifetime.
    pub fn at(&self, i: usize) -> Option<&'a [u8]> {
        self.spans.get(i).map(|&(s, e)| &self.base[s..e])
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        let base = self.base;
        self.spans.iter().map(move |&(s, e)| &base[s..e])
    }
}

impl ArgList for Args<'_> {
    fn len(&self) -> usize {
        self.spans.len()
    }
    fn arg(&self, i: usize) -> &[u8] {
        let (s, e) = self.spans[i];
        &self.base[s..e]
    }
}

/// A resumable request parser. Feed it the unconsumed bytes of the read buffer,
/// always starting at the first byte of the next request; it remembers how far it
/// got, so partial requests are not re-parsed from the start.
#[derive(Debug)]
pub struct RequestParser {
    limits: FrameLimits,
    spans: Vec<(usize, usize)>,
    inline: bool,
    inline_buf: Vec<u8>,
    /// Elements of the current multibulk still to read; 0 between requests.
    remaining: u64,
    /// Offset of the next unparsed byte of the current multibulk.
    pos: usize,
    /// Before authentication Redis allows only small requests.
    authenticated: bool,
}

impl RequestParser {
    /// A parser enforcing `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        RequestParser {
            limits,
            spans: Vec::with_capacity(8),
            inline: false,
            inline_buf: Vec::new(),
            remaining: 0,
            pos: 0,
            authenticated: true,
        }
    }

    /// Before authentication, requests are limited to 10 elements and bulks to
    /// 16 KiB, as in Redis: an unauthenticated peer cannot make the proxy buffer much.
    pub fn set_authenticated(&mut self, authenticated: bool) {
        self.authenticated = authenticated;
    }

    /// Parses the request at the start of `buf`. `Ok(Some(n))`: a whole request of
    /// `n` bytes, whose arguments [`args`](Self::args) returns (none for the empty
    /// requests Redis ignores: `*0`, `*-1`, blank inline lines). `Ok(None)`: more
    /// bytes are needed. An error means the connection must be closed.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.remaining == 0 {
            self.spans.clear();
            self.inline = false;
            match buf.first() {
                None => return Ok(None),
                Some(b'*') => {}
                Some(_) => return self.parse_inline(buf),
            }
            let (n, cr) = match self.quick_len(buf, 1) {
                Some((n, cr)) => (n as i64, cr),
                None => {
                    let too_big = ProtocolError::TooBigMultibulkCount;
                    let Some(cr) = self.find_line_end(buf, 1, too_big)? else {
                        return Ok(None);
                    };
                    let n = parse_len(&buf[1..cr]);
                    (n.ok_or(ProtocolError::InvalidMultibulkLength)?, cr)
                }
            };
            if n > 0 && n as u64 > self.limits.max_multibulk_len {
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            if n > UNAUTHENTICATED_MULTIBULK && !self.authenticated {
                return Err(ProtocolError::UnauthenticatedMultibulk);
            }
            self.pos = cr + 2;
            if n <= 0 {
                return Ok(Some(self.pos));
            }
            self.remaining = n as u64;
        }
        while self.remaining > 0 {
            let pos = self.pos;
            let Some(&first) = buf.get(pos) else {
                return Ok(None);
            };
            if first != b'$' {
                return Err(ProtocolError::ExpectedBulk(printable(first)));
            }
            let (len, cr) = match self.quick_len(buf, pos + 1) {
                Some((len, cr)) => (Some(len as i64), cr),
                None => {
                    let too_big = ProtocolError::TooBigBulkCount;
                    let Some(cr) = self.find_line_end(buf, pos + 1, too_big)? else {
                        return Ok(None);
                    };
                    (parse_len(&buf[pos + 1..cr]), cr)
                }
            };
            let len = len
                .filter(|&l| l >= 0 && l as u64 <= self.limits.max_bulk_len)
                .ok_or(ProtocolError::InvalidBulkLength)? as usize;
            if len > UNAUTHENTICATED_BULK && !self.authenticated {
                return Err(ProtocolError::UnauthenticatedBulk);
            }
            let start = cr + 2;
            let end = start + len;
            // Redis skips the two bytes after a bulk without looking at them.
            if buf.len() < end + 2 {
                return Ok(None);
            }
            self.spans.push((start, end));
            self.pos = end + 2;
            self.remaining -= 1;
        }
        Ok(Some(self.pos))
    }

    /// A plain length line at `from` read in one pass (see
    /// [`quick_len`](super::quick_len)), within the inline limit as the
    /// general way reads it.
    fn quick_len(&self, buf: &[u8], from: usize) -> Option<(u64, usize)> {
        super::quick_len(buf, from).filter(|&(_, cr)| cr - from <= self.limits.max_inline_len)
    }

    /// Finds the `\r` ending a header line that starts at `from`, looking no
    /// further than the inline limit; Redis needs one more byte after the `\r`.
    fn find_line_end(
        &self,
        buf: &[u8],
        from: usize,
        too_big: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        let window = &buf[..buf.len().min(from + self.limits.max_inline_len + 1)];
        match find_cr(window, from) {
            Some(cr) if cr + 1 < buf.len() => Ok(Some(cr)),
            Some(_) => Ok(None),
            None if buf.len() - from > self.limits.max_inline_len => Err(too_big),
            None => Ok(None),
        }
    }

    fn parse_inline(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let window = &buf[..buf.len().min(self.limits.max_inline_len + 1)];
        let Some(nl) = memchr::memchr(b'\n', window) else {
            if buf.len() > self.limits.max_inline_len {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(None);
        };
        let mut line = &buf[..nl];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        self.inline = true;
        split_args(line, &mut self.inline_buf, &mut self.spans)?;
        Ok(Some(nl + 1))
    }

    /// The arguments of the request the last `parse` completed. `buf` must be the
    /// same buffer that was parsed.
    pub fn args<'a>(&'a self, buf: &'a [u8]) -> Args<'a> {
        Args {
            base: if self.inline { &self.inline_buf } else { buf },
            spans: &self.spans,
        }
    }

    /// Whether the last request was an inline command (its bytes must be
    /// re-encoded as RESP before forwarding).
    pub fn is_inline(&self) -> bool {
        self.inline
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line into arguments like Redis's `sdssplitargs`: blanks
/// separate, `"..."` takes `\n \r \t \b \a \\ \" \xHH` escapes, `'...'` takes `\'`,
/// and a closing quote must be followed by a blank or the end. A NUL ends the line.
fn split_args(
    line: &[u8],
    out: &mut Vec<u8>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<(), ProtocolError> {
    out.clear();
    spans.clear();
    let line = match memchr::memchr(0, line) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let start = out.len();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = at(p);
            if in_dq {
                if c == b'\\'
                    && at(p + 1) == b'x'
                    && hex(at(p + 2)).is_some()
                    && hex(at(p + 3)).is_some()
                {
                    let (hi, lo) = (hex(at(p + 2)).unwrap_or(0), hex(at(p + 3)).unwrap_or(0));
                    out.push(hi * 16 + lo);
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    out.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else if in_sq {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    out.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(ProtocolError::UnbalancedQuotes);
                } else {
                    out.push(c);
                }
            } else {
                match c {
                    0 => break,
                    c if is_space(c) => break,
                    b'"' => in_dq = true,
                    b'\'' => in_sq = true,
                    c => out.push(c),
                }
            }
            p += 1;
        }
        spans.push((start, out.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut p = RequestParser::new(FrameLimits::default());
        let mut buf = input;
        let mut out = Vec::new();
        while let Some(n) = p.parse(buf)? {
            let args = p.args(buf);
            out.push(args.iter().map(|a| a.to_vec()).collect());
            buf = &buf[n..];
        }
        Ok(out)
    }

    fn strs(v: &[Vec<Vec<u8>>]) -> Vec<Vec<String>> {
        v.iter()
            .map(|r| {
                r.iter()
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn multibulk_requests() {
        let r = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPING\r\n").unwrap();
        assert_eq!(strs(&r), [vec!["GET", "k"], vec!["PING"]]);
    }

    #[test]
    fn empty_multibulk_is_ignored_like_redis() {
        let r = parse_all(b"*0\r\n*-1\r\n*1\r\n$0\r\n\r\n").unwrap();
        assert_eq!(strs(&r), [vec![], vec![], vec![""]]);
    }

    #[test]
    fn inline_commands() {
        let r = parse_all(b"PING\r\nset k \"a b\\x41\\n\" 'it\\'s'\n\r\n   \n").unwrap();
        assert_eq!(
            strs(&r),
            [
                vec!["PING"],
                vec!["set", "k", "a bA\n", "it's"],
                vec![],
                vec![]
            ]
        );
    }

    #[test]
    fn inline_quote_errors() {
        assert_eq!(
            parse_all(b"SET \"a\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            parse_all(b"SET \"a\"b\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(parse_all(b"SET 'a\n"), Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let mut p = RequestParser::new(FrameLimits::default());
        let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut start = 0;
        for end in 1..=input.len() {
            if let Some(n) = p.parse(&input[start..end]).unwrap() {
                got.push(
                    p.args(&input[start..end])
                        .iter()
                        .map(|a| a.to_vec())
                        .collect(),
                );
                start += n;
            }
        }
        assert_eq!(start, input.len());
        assert_eq!(got, parse_all(input).unwrap());
    }

    #[test]
    fn limits_and_errors() {
        let limits = FrameLimits {
            max_bulk_len: 10,
            max_multibulk_len: 3,
            max_inline_len: 16,
            max_nesting_depth: 8,
        };
        let run = |input: &[u8]| RequestParser::new(limits).parse(input);
        assert_eq!(run(b"*4\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(run(b"*x\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(run(b"*1\r\n$11\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(run(b"*1\r\n$-1\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(run(b"*1\r\n*1\r\n"), Err(ProtocolError::ExpectedBulk('*')));
        assert_eq!(run(b"*1\r\n%1\r\n"), Err(ProtocolError::ExpectedBulk('%')));
        assert_eq!(run(&[b'A'; 17]), Err(ProtocolError::TooBigInline));
        assert_eq!(
            run(b"*11111111111111111"),
            Err(ProtocolError::TooBigMultibulkCount)
        );
        assert_eq!(
            run(b"*1\r\n$11111111111111111"),
            Err(ProtocolError::TooBigBulkCount)
        );
        // A declared length within the limit but not yet sent is simply incomplete.
        assert_eq!(run(b"*1\r\n$10\r\nabc"), Ok(None));
        assert_eq!(run(&[b'A'; 16]), Ok(None));
    }
}
