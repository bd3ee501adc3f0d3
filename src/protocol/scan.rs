//! Reply framing: finds where each RESP2/RESP3 reply ends without decoding it,
//! so passthrough replies are forwarded as the bytes the backend sent.
//!
//! The scanner is iterative (an explicit stack, bounded by the nesting limit), so
//! no input can overflow the call stack, and resumable, so a reply arriving in
//! pieces is scanned once. It can also stream: while a reply is incomplete,
//! the bytes it has [`processed`](ReplyScanner::processed) may be passed on and
//! dropped from the buffer ([`consumed`](ReplyScanner::consumed)), so a large
//! reply never has to be held whole.

use super::{ProtocolError, find_cr, parse_len, printable};

/// A scanner's stack keeps its allocation between replies up to this many
/// levels (a reply nested deeper gives it back when it completes).
const KEEP_LEVELS: usize = 64;

/// One complete reply found by [`ReplyScanner::scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Length in bytes, attributes included.
    pub len: usize,
    /// Type byte of the reply itself (after any attribute), e.g. `b'>'` for a push.
    pub kind: u8,
}

impl FrameInfo {
    /// Whether this is a RESP3 out-of-band push.
    pub fn is_push(&self) -> bool {
        self.kind == b'>'
    }
}

#[derive(Debug, Clone, Copy)]
struct Level {
    /// Elements still expected at this level.
    remaining: u64,
    /// An attribute map: when it completes, the element it annotates follows and
    /// the attribute itself does not count as an element of the parent.
    attribute: bool,
}

/// A resumable scanner for reply frames.
#[derive(Debug)]
pub struct ReplyScanner {
    max_depth: usize,
    stack: Vec<Level>,
    pos: usize,
    /// Payload bytes (with their CRLF) of a bulk string still to come: the
    /// bulk's header has been scanned and everything up to `pos` belongs to it.
    skip: u64,
    /// Type byte of the top-level reply, once known.
    kind: Option<u8>,
}

impl ReplyScanner {
    /// A scanner refusing frames nested deeper than `max_depth`.
    pub fn new(max_depth: usize) -> Self {
        ReplyScanner {
            max_depth,
            stack: Vec::new(),
            pos: 0,
            skip: 0,
            kind: None,
        }
    }

    /// Bytes at the front of the buffer that belong to the reply being scanned
    /// and were scanned already (0 between replies). After `scan` returned
    /// `Ok(None)`, these may be passed on before the reply is complete.
    pub fn processed(&self) -> usize {
        self.pos
    }

    /// The caller dropped the first `n` bytes of the buffer (`n` at most
    /// [`processed`](Self::processed)): positions shift, and the frame length
    /// `scan` reports next counts only what is left of the reply.
    pub fn consumed(&mut self, n: usize) {
        self.pos -= n.min(self.pos);
    }

    /// The type byte of the reply being scanned, once its first byte was seen.
    pub fn kind(&self) -> Option<u8> {
        self.kind
    }

    /// Scans the reply at the start of `buf`: `Ok(Some(info))` when it is complete,
    /// `Ok(None)` when more bytes are needed (the scanner keeps its place; call
    /// again with the same buffer, grown). After `Some`, the caller consumes
    /// `info.len` bytes and the next call starts a new reply.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<FrameInfo>, ProtocolError> {
        loop {
            if self.skip > 0 {
                let avail = (buf.len() - self.pos.min(buf.len())) as u64;
                if avail < self.skip {
                    self.pos = buf.len();
                    self.skip -= avail;
                    return Ok(None);
                }
                self.pos += self.skip as usize;
                self.skip = 0;
                if let Some(info) = self.element_done() {
                    return Ok(Some(info));
                }
                continue;
            }
            self.skip_plain_elements(buf);
            let pos = self.pos;
            let Some(&ty) = buf.get(pos) else {
                return Ok(None);
            };
            let Some(cr) = find_cr(buf, pos + 1) else {
                return Ok(None);
            };
            if cr + 1 >= buf.len() {
                return Ok(None);
            }
            let line = &buf[pos + 1..cr];
            let after = cr + 2;
            // What this element is: a leaf ending at `end`, or an aggregate of `n` children.
            let (end, children) = match ty {
                b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => (after, None),
                b'$' | b'!' | b'=' => {
                    let len = parse_len(line).ok_or(ProtocolError::InvalidLine)?;
                    if len < 0 {
                        (after, None) // RESP2 null bulk `$-1`
                    } else {
                        let end = after
                            .checked_add(len as usize + 2)
                            .ok_or(ProtocolError::InvalidBulkLength)?;
                        if buf.len() < end {
                            // The header is in: the payload can stream through.
                            if self.stack.is_empty() {
                                self.kind.get_or_insert(ty);
                            }
                            self.skip = (end - buf.len()) as u64;
                            self.pos = buf.len();
                            return Ok(None);
                        }
                        (end, None)
                    }
                }
                b'*' | b'~' | b'>' | b'%' | b'|' => {
                    let n = parse_len(line).ok_or(ProtocolError::InvalidLine)?;
                    if n < 0 {
                        (after, None) // RESP2 null array `*-1`
                    } else {
                        let per = if matches!(ty, b'%' | b'|') { 2 } else { 1 };
                        (after, Some((n as u64).saturating_mul(per)))
                    }
                }
                other => return Err(ProtocolError::InvalidType(printable(other))),
            };
            if self.stack.is_empty() && ty != b'|' {
                self.kind.get_or_insert(ty);
            }
            self.pos = end;
            match children {
                Some(n) if n > 0 || ty == b'|' => {
                    if self.stack.len() >= self.max_depth {
                        return Err(ProtocolError::TooDeep(self.max_depth));
                    }
                    self.stack.push(Level {
                        remaining: n,
                        attribute: ty == b'|',
                    });
                    if n > 0 {
                        continue;
                    }
                    // An empty attribute map: fall through to complete it.
                    self.stack.pop();
                    continue;
                }
                _ => {}
            }
            if let Some(info) = self.element_done() {
                return Ok(Some(info));
            }
        }
    }

    /// Inside an array, map or set, steps over whole bulk strings, integers
    /// and simple strings in a tight loop: array replies (`LRANGE`, `MGET`,
    /// `HGETALL` ...) are mostly these, and the general path costs several
    /// times more per element. Leaves the level's last element, anything
    /// else, and anything not wholly in `buf` to the general path, which
    /// completes levels and reports errors.
    fn skip_plain_elements(&mut self, buf: &[u8]) {
        let Some(level) = self.stack.last_mut() else {
            return;
        };
        if level.attribute {
            return;
        }
        let mut pos = self.pos;
        while level.remaining > 1 {
            let end = match buf.get(pos) {
                Some(b'$') => match super::quick_len(buf, pos + 1) {
                    Some((len, cr)) => match (cr + 2).checked_add(len as usize + 2) {
                        Some(end) if end <= buf.len() => end,
                        _ => break,
                    },
                    None => break,
                },
                Some(b':' | b'+') => match find_cr(buf, pos + 1) {
                    Some(cr) if cr + 1 < buf.len() => cr + 2,
                    _ => break,
                },
                _ => break,
            };
            pos = end;
            level.remaining -= 1;
        }
        self.pos = pos;
    }

    /// An element ended at `pos`: pops the levels it completes; the whole
    /// reply when the outermost one is complete.
    fn element_done(&mut self) -> Option<FrameInfo> {
        let mut completed_attribute = false;
        loop {
            match self.stack.last_mut() {
                None => {
                    if completed_attribute {
                        return None; // the annotated reply follows at top level
                    }
                    let info = FrameInfo {
                        len: self.pos,
                        kind: self.kind.take().unwrap_or(b'+'),
                    };
                    self.pos = 0;
                    if self.stack.capacity() > KEEP_LEVELS {
                        // A deep reply is over: give its stack back.
                        self.stack = Vec::new();
                    }
                    return Some(info);
                }
                Some(level) => {
                    if completed_attribute {
                        return None; // attributes do not count as elements
                    }
                    level.remaining -= 1;
                    if level.remaining > 0 {
                        return None;
                    }
                    completed_attribute = level.attribute;
                    self.stack.pop();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Vec<(String, u8)> {
        let mut s = ReplyScanner::new(16);
        let mut buf = input;
        let mut out = Vec::new();
        while let Some(info) = s.scan(buf).unwrap() {
            out.push((
                String::from_utf8_lossy(&buf[..info.len]).into_owned(),
                info.kind,
            ));
            buf = &buf[info.len..];
        }
        assert!(
            buf.is_empty(),
            "left over: {:?}",
            String::from_utf8_lossy(buf)
        );
        out
    }

    #[test]
    fn resp2_and_resp3_frames() {
        let input = b"+OK\r\n$-1\r\n*2\r\n$1\r\na\r\n:1\r\n*-1\r\n%1\r\n+k\r\n*0\r\n_\r\n>2\r\n+m\r\n+x\r\n";
        let f = frames(input);
        let kinds: Vec<u8> = f.iter().map(|x| x.1).collect();
        assert_eq!(kinds, b"+$**%_>".to_vec());
        assert_eq!(f[3].0, "*-1\r\n");
    }

    #[test]
    fn attributes_belong_to_the_following_reply() {
        let f = frames(b"|1\r\n+a\r\n:1\r\n*2\r\n:1\r\n:2\r\n+next\r\n");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].1, b'*');
        // An attribute inside an aggregate annotates an element without counting as one.
        let f = frames(b"*2\r\n|1\r\n+a\r\n+b\r\n:1\r\n:2\r\n");
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn resumes_byte_by_byte() {
        let input = b"*3\r\n$3\r\nfoo\r\n%1\r\n+a\r\n~1\r\n,1.5\r\n:7\r\n+OK\r\n";
        let mut s = ReplyScanner::new(16);
        let mut start = 0;
        let mut lens = Vec::new();
        for end in 1..=input.len() {
            if let Some(info) = s.scan(&input[start..end]).unwrap() {
                lens.push(info.len);
                start += info.len;
            }
        }
        assert_eq!(lens, vec![input.len() - 5, 5]);
    }

    #[test]
    fn refuses_deep_nesting_without_recursion() {
        let mut deep = Vec::new();
        for _ in 0..100_000 {
            deep.extend_from_slice(b"*1\r\n");
        }
        deep.extend_from_slice(b":1\r\n");
        assert_eq!(
            ReplyScanner::new(128).scan(&deep),
            Err(ProtocolError::TooDeep(128))
        );
        assert!(ReplyScanner::new(200_000).scan(&deep).unwrap().is_some());
    }

    #[test]
    fn invalid_input() {
        assert_eq!(
            ReplyScanner::new(4).scan(b"?x\r\n"),
            Err(ProtocolError::InvalidType('?'))
        );
        assert_eq!(
            ReplyScanner::new(4).scan(b"$x\r\n"),
            Err(ProtocolError::InvalidLine)
        );
        assert_eq!(ReplyScanner::new(4).scan(b"$5\r\nab"), Ok(None));
    }

    /// Feeds `input` in chunks of `sizes` (cycled), passing on what the
    /// scanner has processed whenever a reply is incomplete; returns the
    /// replies as they were put together.
    fn streamed(input: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
        let mut s = ReplyScanner::new(16);
        let mut buf: Vec<u8> = Vec::new();
        let mut current: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        let mut i = 0;
        while fed < input.len() || !buf.is_empty() {
            let n = sizes[i % sizes.len()].max(1).min(input.len() - fed);
            buf.extend_from_slice(&input[fed..fed + n]);
            fed += n;
            i += 1;
            loop {
                match s.scan(&buf).unwrap() {
                    Some(info) => {
                        current.extend(buf.drain(..info.len));
                        out.push(std::mem::take(&mut current));
                    }
                    None => {
                        let p = s.processed();
                        current.extend(buf.drain(..p));
                        s.consumed(p);
                        break;
                    }
                }
            }
            if fed == input.len() && s.processed() == 0 && buf.is_empty() {
                break;
            }
        }
        out
    }

    #[test]
    fn a_large_bulk_streams_through_without_being_held() {
        let payload = vec![b'x'; 100_000];
        let mut input = format!("${}\r\n", payload.len()).into_bytes();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"\r\n+OK\r\n");
        let mut s = ReplyScanner::new(16);
        let mut buf = input[..50_000].to_vec();
        assert_eq!(s.scan(&buf), Ok(None));
        assert_eq!(
            s.processed(),
            50_000,
            "everything in the buffer belongs to the bulk"
        );
        assert_eq!(s.kind(), Some(b'$'));
        s.consumed(50_000);
        buf.clear();
        buf.extend_from_slice(&input[50_000..]);
        let info = s.scan(&buf).unwrap().unwrap();
        assert_eq!((info.len, info.kind), (input.len() - 50_000 - 5, b'$'));
        assert_eq!(
            s.scan(&buf[info.len..]),
            Ok(Some(FrameInfo { len: 5, kind: b'+' }))
        );
    }

    /// Any reply, as RESP3 bytes: leaves of every kind (long and empty bulks,
    /// nulls, integers, simple strings and errors) in arrays, sets, maps,
    /// pushes and attributes, nested.
    fn reply() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            (0usize..40).prop_map(|n| format!("${n}\r\n{}\r\n", "v".repeat(n)).into_bytes()),
            Just(b"$-1\r\n".to_vec()),
            any::<i64>().prop_map(|i| format!(":{i}\r\n").into_bytes()),
            Just(b"+OK\r\n".to_vec()),
            Just(b"-ERR no\r\n".to_vec()),
            Just(b"_\r\n".to_vec()),
            Just(b",1.5\r\n".to_vec()),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            (
                proptest::sample::select(&b"*~>%|"[..]),
                proptest::collection::vec(inner, 0..8),
            )
                .prop_map(|(ty, items)| {
                    let pairs = matches!(ty, b'%' | b'|');
                    let n = if pairs { items.len() / 2 } else { items.len() };
                    let mut out = format!("{}{n}\r\n", ty as char).into_bytes();
                    for item in items.iter().take(if pairs { n * 2 } else { n }) {
                        out.extend_from_slice(item);
                    }
                    if ty == b'|' {
                        // An attribute annotates the reply that follows it.
                        out.extend_from_slice(b"+annotated\r\n");
                    }
                    out
                })
        })
    }

    proptest::proptest! {
        /// Generated replies, fed in any chunking, come out exactly as they
        /// were written (the plain-element fast path stops and resumes
        /// anywhere inside them).
        #[test]
        fn generated_replies_are_found_whole(
            replies in proptest::collection::vec(reply(), 1..5),
            sizes in proptest::collection::vec(1usize..50, 1..5),
        ) {
            let input = replies.concat();
            let mut s = ReplyScanner::new(16);
            let mut found = Vec::new();
            let (mut start, mut end, mut i) = (0, 0, 0);
            while end < input.len() {
                end = (end + sizes[i % sizes.len()]).min(input.len());
                i += 1;
                while let Some(info) = s.scan(&input[start..end]).unwrap() {
                    found.push(input[start..start + info.len].to_vec());
                    start += info.len;
                }
            }
            proptest::prop_assert_eq!(&found, &replies);
            proptest::prop_assert_eq!(streamed(&input, &sizes), replies);
        }

        /// Streaming in any chunking puts the same replies together as scanning
        /// the whole input.
        #[test]
        fn streaming_finds_the_same_replies(
            bulks in proptest::collection::vec(0usize..3000, 1..6),
            sizes in proptest::collection::vec(1usize..700, 1..5),
        ) {
            let mut input = Vec::new();
            for (i, len) in bulks.iter().enumerate() {
                match i % 3 {
                    0 => input.extend(format!("${len}\r\n{}\r\n", "a".repeat(*len)).into_bytes()),
                    1 => input.extend(format!("*2\r\n${len}\r\n{}\r\n:7\r\n", "b".repeat(*len)).into_bytes()),
                    _ => input.extend(b">2\r\n+m\r\n$3\r\nabc\r\n"),
                }
            }
            let whole: Vec<Vec<u8>> = frames(&input).into_iter().map(|f| f.0.into_bytes()).collect();
            proptest::prop_assert_eq!(streamed(&input, &sizes), whole);
        }
    }
}
