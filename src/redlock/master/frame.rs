//! A master's reply as a frame, for the replies lock operations get almost
//! always (`+OK`, `:1`, `$-1`, a bulk string) read straight off the bytes the
//! reply scanner already framed; anything else (arrays, errors) goes through
//! `redis_protocol`'s decoder. Decoding every reply twice cost about 500
//! instructions a reply, three per acquisition (callgrind).

use bytes::{Bytes, BytesMut};
use redis_protocol::resp2::types::BytesFrame;

use crate::protocol::parse_i64;

/// The frame of one whole reply (`reply` is exactly one, as the scanner
/// framed it); `Err` gives it back for the general decoder.
pub(super) fn simple(reply: BytesMut) -> Result<BytesFrame, BytesMut> {
    let n = reply.len();
    if n < 4 || !reply.ends_with(b"\r\n") {
        return Err(reply);
    }
    match reply[0] {
        b'+' => Ok(BytesFrame::SimpleString(reply.freeze().slice(1..n - 2))),
        b':' => match parse_i64(&reply[1..n - 2]) {
            Some(i) => Ok(BytesFrame::Integer(i)),
            None => Err(reply),
        },
        b'$' if &reply[1..n - 2] == b"-1" => Ok(BytesFrame::Null),
        b'$' => {
            let Some(head) = reply.iter().position(|&c| c == b'\r') else {
                return Err(reply);
            };
            let len = parse_i64(&reply[1..head]).and_then(|l| usize::try_from(l).ok());
            match len {
                Some(len) if head + 2 + len + 2 == n => {
                    let body: Bytes = reply.freeze().slice(head + 2..head + 2 + len);
                    Ok(BytesFrame::BulkString(body))
                }
                _ => Err(reply),
            }
        }
        _ => Err(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(bytes: &[u8]) -> BytesFrame {
        let mut b = BytesMut::from(bytes);
        redis_protocol::resp2::decode::decode_bytes_mut(&mut b)
            .unwrap()
            .unwrap()
            .0
    }

    /// Every reply the fast path takes reads as the decoder reads it; the
    /// others are handed back whole.
    #[test]
    fn reads_as_the_decoder_does() {
        for reply in [
            &b"+OK\r\n"[..],
            b"+\r\n",
            b":0\r\n",
            b":-12345\r\n",
            b":9223372036854775807\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$3\r\nabc\r\n",
            b"$4\r\na\r\nb\r\n",
        ] {
            match simple(BytesMut::from(reply)) {
                Ok(f) => assert_eq!(f, decoded(reply), "{:?}", String::from_utf8_lossy(reply)),
                Err(_) if reply == b"+\r\n" => {}
                Err(_) => panic!("{:?} not taken", String::from_utf8_lossy(reply)),
            }
        }
        for other in [
            &b"-ERR no\r\n"[..],
            b"*2\r\n:1\r\n:2\r\n",
            b"*-1\r\n",
            b":12x\r\n",
            b"$5\r\nabc\r\n",
        ] {
            let back = simple(BytesMut::from(other)).expect_err("handed back");
            assert_eq!(&back[..], other);
        }
    }
}
