//! Splitting an aggregate reply into its elements' frames, without decoding
//! them (to merge the replies of a command split across cluster nodes).
//!
//! Only for replies already framed by the [`ReplyScanner`], so nesting is
//! bounded; anything unexpected is `None`, never a panic.

use super::ReplyScanner;
use super::int::parse_i64;

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
    let count = n.checked_mul(per)?;
    let mut out = Vec::with_capacity(count.min(4096));
    let mut pos = line_end + 2;
    for _ in 0..count {
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
