//! Reply framing: finds where each RESP2/RESP3 reply ends without decoding it,
//! so passthrough replies are forwarded as the bytes the backend sent.
//!
//! The scanner is iterative (an explicit stack, bounded by the nesting limit), so
//! no input can overflow the call stack, and resumable, so a reply arriving in
//! pieces is scanned once.

use super::{ProtocolError, find_cr, parse_len, printable};

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
            kind: None,
        }
    }

    /// Scans the reply at the start of `buf`: `Ok(Some(info))` when it is complete,
    /// `Ok(None)` when more bytes are needed (the scanner keeps its place; call
    /// again with the same buffer, grown). After `Some`, the caller consumes
    /// `info.len` bytes and the next call starts a new reply.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<FrameInfo>, ProtocolError> {
        loop {
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
            // A complete element: pop finished levels.
            let mut completed_attribute = false;
            loop {
                match self.stack.last_mut() {
                    None => {
                        if completed_attribute {
                            break; // the annotated reply follows at top level
                        }
                        let info = FrameInfo {
                            len: self.pos,
                            kind: self.kind.take().unwrap_or(b'+'),
                        };
                        self.pos = 0;
                        return Ok(Some(info));
                    }
                    Some(level) => {
                        if completed_attribute {
                            break; // attributes do not count as elements
                        }
                        level.remaining -= 1;
                        if level.remaining > 0 {
                            break;
                        }
                        completed_attribute = level.attribute;
                        self.stack.pop();
                    }
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
}
