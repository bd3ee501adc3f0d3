//! Property tests: frames encoded by redis-protocol, in any chunking, are found
//! whole by the proxy's scanner; requests round-trip through the request parser.

use proptest::prelude::*;
use redis_protocol::resp3::types::{FrameMap, OwnedFrame, Resp3Frame, VerbatimStringFormat};
use redlock_proxy::protocol::{FrameLimits, ReplyScanner, RequestParser};

fn leaf() -> impl Strategy<Value = OwnedFrame> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|data| OwnedFrame::BlobString {
            data,
            attributes: None
        }),
        prop::collection::vec(any::<u8>(), 0..40).prop_map(|data| OwnedFrame::BlobError {
            data,
            attributes: None
        }),
        "[a-zA-Z0-9 ]{0,20}".prop_map(|s| OwnedFrame::SimpleString {
            data: s.into_bytes(),
            attributes: None
        }),
        "ERR [a-z ]{0,20}".prop_map(|data| OwnedFrame::SimpleError {
            data,
            attributes: None
        }),
        any::<i64>().prop_map(|data| OwnedFrame::Number {
            data,
            attributes: None
        }),
        any::<bool>().prop_map(|data| OwnedFrame::Boolean {
            data,
            attributes: None
        }),
        (-1e9f64..1e9).prop_map(|data| OwnedFrame::Double {
            data,
            attributes: None
        }),
        "[1-9][0-9]{0,30}".prop_map(|s| OwnedFrame::BigNumber {
            data: s.into_bytes(),
            attributes: None
        }),
        "[a-z]{0,20}".prop_map(|s| OwnedFrame::VerbatimString {
            data: s.into_bytes(),
            format: VerbatimStringFormat::Text,
            attributes: None
        }),
        Just(OwnedFrame::Null),
    ]
}

fn frame() -> impl Strategy<Value = OwnedFrame> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|data| OwnedFrame::Array {
                data,
                attributes: None
            }),
            prop::collection::vec(inner.clone(), 0..6).prop_map(|data| OwnedFrame::Push {
                data,
                attributes: None
            }),
            prop::collection::vec(("[a-z]{1,8}", inner.clone()), 0..4).prop_map(|pairs| {
                let mut data = FrameMap::default();
                for (k, v) in pairs {
                    data.insert(
                        OwnedFrame::BlobString {
                            data: k.into_bytes(),
                            attributes: None,
                        },
                        v,
                    );
                }
                OwnedFrame::Map {
                    data,
                    attributes: None,
                }
            }),
        ]
    })
}

fn encode(f: &OwnedFrame) -> Vec<u8> {
    let mut buf = vec![0u8; f.encode_len(false)];
    let n = redis_protocol::resp3::encode::complete::encode(&mut buf, f, false).unwrap();
    buf.truncate(n);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any frame, split anywhere, scans to exactly its encoded length, and two
    /// frames back to back are told apart.
    #[test]
    fn scanner_finds_whole_frames(f in frame(), g in frame(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4)) {
        let mut bytes = encode(&f);
        let first = bytes.len();
        bytes.extend(encode(&g));
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort();
        let mut s = ReplyScanner::new(64);
        let mut found = None;
        for p in points {
            if let Some(info) = s.scan(&bytes[..p]).unwrap() {
                found = Some(info);
                break;
            }
        }
        let info = found.expect("frame found");
        prop_assert_eq!(info.len, first);
        prop_assert_eq!(info.is_push(), matches!(f, OwnedFrame::Push { .. }));
        let next = ReplyScanner::new(64).scan(&bytes[first..]).unwrap().expect("second frame");
        prop_assert_eq!(next.len, bytes.len() - first);
    }

    /// Requests round-trip through the parser however they arrive.
    #[test]
    fn requests_round_trip(
        reqs in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6), 1..6),
        chunk in 1usize..17,
    ) {
        let mut wire = Vec::new();
        for args in &reqs {
            wire.extend(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                wire.extend(format!("${}\r\n", a.len()).as_bytes());
                wire.extend(a);
                wire.extend(b"\r\n");
            }
        }
        let mut p = RequestParser::new(FrameLimits::default());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(n) = p.parse(&buf).unwrap() {
                got.push(p.args(&buf).iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                buf.drain(..n);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, reqs);
    }
}
