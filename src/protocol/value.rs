//! Reading a complete reply the proxy itself must understand: decoded into a
//! [`Value`] tree (cluster topology), or split into its elements' frames (to
//! merge the replies of a command split across cluster nodes).
//!
//! Only for replies already framed by the [`ReplyScanner`](super::ReplyScanner),
//! so nesting is bounded; anything unexpected decodes to `None`, never a panic.

use super::ReplyScanner;
use super::int::parse_i64;

/// A decoded reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+...` (and RESP3 verbatim/big numbers/doubles, as text).
    Simple(Vec<u8>),
    /// `-...` or RESP3 `!`.
    Error(Vec<u8>),
    /// `:n`.
    Int(i64),
    /// `$n` (and RESP3 `=`).
    Bulk(Vec<u8>),
    /// `$-1`, `*-1` or RESP3 `_`.
    Nil,
    /// Arrays, sets and pushes; RESP3 maps flattened to key, value, key, value.
    Array(Vec<Value>),
}

impl Value {
    /// The text of a simple, bulk or error value.
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(s) | Value::Bulk(s) | Value::Error(s) => Some(s),
            _ => None,
        }
    }

    /// An integer, or a string that holds one.
    pub fn int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            other => other.text().and_then(parse_i64),
        }
    }

    /// The elements of an array.
    pub fn array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// In a flattened map (`[k1, v1, k2, v2, ...]`), the value of key `key`.
    pub fn field(&self, key: &str) -> Option<&Value> {
        let items = self.array()?;
        items
            .chunks_exact(2)
            .find(|kv| kv[0].text() == Some(key.as_bytes()))
            .map(|kv| &kv[1])
    }
}

/// Decodes one complete reply at the start of `buf`, with its length.
pub fn decode(buf: &[u8]) -> Option<(Value, usize)> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[1..line_end];
    let after = line_end + 2;
    let kind = *buf.first()?;
    match kind {
        b'+' | b',' | b'(' => Some((Value::Simple(line.to_vec()), after)),
        b'#' => Some((Value::Simple(line.to_vec()), after)),
        b'-' => Some((Value::Error(line.to_vec()), after)),
        b':' => Some((Value::Int(parse_i64(line)?), after)),
        b'_' => Some((Value::Nil, after)),
        b'$' | b'=' | b'!' => {
            let n = parse_i64(line)?;
            if n < 0 {
                return Some((Value::Nil, after));
            }
            let end = after.checked_add(usize::try_from(n).ok()?)?;
            let body = buf.get(after..end)?.to_vec();
            if buf.get(end..end + 2)? != b"\r\n" {
                return None;
            }
            let v = if kind == b'!' {
                Value::Error(body)
            } else {
                Value::Bulk(body)
            };
            Some((v, end + 2))
        }
        b'*' | b'~' | b'>' | b'%' => {
            let n = parse_i64(line)?;
            if n < 0 {
                return Some((Value::Nil, after));
            }
            let count = usize::try_from(n)
                .ok()?
                .checked_mul(if kind == b'%' { 2 } else { 1 })?;
            let mut items = Vec::with_capacity(count.min(1024));
            let mut pos = after;
            for _ in 0..count {
                let (v, len) = decode(buf.get(pos..)?)?;
                items.push(v);
                pos += len;
            }
            Some((Value::Array(items), pos))
        }
        _ => None,
    }
}

/// The frames of an aggregate reply's elements (`*`, `~`, `%` flattened), as
/// slices of `frame`; `None` when `frame` is not one.
pub fn elements(frame: &[u8], max_depth: usize) -> Option<Vec<&[u8]>> {
    let line_end = frame.windows(2).position(|w| w == b"\r\n")?;
    let per = match frame.first()? {
        b'*' | b'~' => 1,
        b'%' => 2,
        _ => return None,
    };
    let n = usize::try_from(parse_i64(&frame[1..line_end])?).ok()?;
    let mut out = Vec::with_capacity(n.checked_mul(per)?.min(4096));
    let mut pos = line_end + 2;
    for _ in 0..n * per {
        let rest = frame.get(pos..)?;
        let info = ReplyScanner::new(max_depth).scan(rest).ok()??;
        out.push(&rest[..info.len]);
        pos += info.len;
    }
    (pos == frame.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_replies() {
        let (v, n) = decode(b"*3\r\n:1\r\n$3\r\nabc\r\n*2\r\n+OK\r\n$-1\r\nrest").unwrap();
        assert_eq!(n, 31);
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(1),
                Value::Bulk(b"abc".to_vec()),
                Value::Array(vec![Value::Simple(b"OK".to_vec()), Value::Nil]),
            ])
        );
        let (m, _) = decode(b"%1\r\n+port\r\n:7000\r\n").unwrap();
        assert_eq!(m.field("port").and_then(Value::int), Some(7000));
    }

    #[test]
    fn truncated_or_garbage_is_none() {
        for bad in [
            &b"*2\r\n:1\r\n"[..],
            b"$5\r\nab\r\n",
            b"$2\r\nabXY",
            b"?x\r\n",
            b"*x\r\n",
            b"",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn splits_aggregates_into_element_frames() {
        let frame = b"*3\r\n$1\r\na\r\n$-1\r\n*1\r\n:2\r\n";
        assert_eq!(
            elements(frame, 8).unwrap(),
            vec![&b"$1\r\na\r\n"[..], b"$-1\r\n", b"*1\r\n:2\r\n"]
        );
        assert_eq!(elements(b"*0\r\n", 8).unwrap().len(), 0);
        assert!(elements(b":1\r\n", 8).is_none());
        assert!(elements(b"*2\r\n:1\r\n", 8).is_none(), "one element short");
    }
}
