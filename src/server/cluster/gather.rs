//! Commands split across cluster nodes: the parts' replies gathered, then
//! merged into the one reply a single Redis would have given.

use std::sync::Mutex;

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::{elements, parse_i64};
use crate::server::multiplex::{Parts, ReplyTo};

/// Nesting the merges look into (their replies are flat arrays of strings).
const DEPTH: usize = 8;

/// How the parts' replies make the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Merge {
    /// `MGET` split by slot: part `p` holds the values for these positions of
    /// the original key list.
    Mget(Vec<Vec<usize>>),
    /// Integers added up (`DEL`, `UNLINK`, `EXISTS`, `TOUCH`, `DBSIZE`).
    Sum,
    /// Every part must succeed: the first error, else the first reply
    /// (`MSET`, `FLUSHALL`, `SCRIPT LOAD` ...).
    AllOk,
    /// Arrays concatenated (`KEYS`).
    Concat,
    /// Arrays of 0/1 combined element by element: 1 where every part says 1
    /// (`SCRIPT EXISTS`: loaded everywhere).
    Every,
    /// The first reply that is not nil (`RANDOMKEY`).
    AnyNonNil,
    /// The first reply that is not an error, else the first error (`SCRIPT
    /// KILL`, `FUNCTION KILL`: the script ran on one master, the others answer
    /// `NOTBUSY`).
    AnyOk,
    /// `SCAN` on master `index` of `n`: the node's cursor made global.
    Scan {
        /// The master scanned.
        index: usize,
        /// How many masters.
        n: usize,
    },
}

/// The replies of one split command's parts, until the last one is in.
#[derive(Debug)]
pub(crate) struct Gather {
    merge: Merge,
    to: ReplyTo,
    parts: Mutex<(Vec<Option<Bytes>>, usize)>,
}

impl Gather {
    /// Waits for `n` parts, then gives `to` their merge.
    pub(crate) fn new(merge: Merge, n: usize, to: ReplyTo) -> Self {
        Gather {
            merge,
            to,
            parts: Mutex::new((vec![None; n], n)),
        }
    }
}

impl Parts for Gather {
    /// Part `i`'s reply; the last one sends the merged reply.
    fn part(&self, i: usize, frame: Bytes) {
        let done = {
            let Ok(mut p) = self.parts.lock() else {
                return;
            };
            let (parts, left) = &mut *p;
            match parts.get_mut(i) {
                Some(slot @ None) => {
                    *slot = Some(frame);
                    *left -= 1;
                }
                _ => return,
            }
            (*left == 0).then(|| {
                parts
                    .iter_mut()
                    .filter_map(Option::take)
                    .collect::<Vec<_>>()
            })
        };
        if let Some(parts) = done {
            self.to.clone().deliver(self.merge.apply(&parts));
        }
    }
}

fn is_error(frame: &[u8]) -> bool {
    matches!(frame.first(), Some(b'-' | b'!'))
}

fn is_nil(frame: &[u8]) -> bool {
    matches!(frame, b"$-1\r\n" | b"*-1\r\n" | b"_\r\n")
}

fn unexpected() -> Bytes {
    Bytes::from_static(b"-ERR unexpected reply from a cluster node to a split command\r\n")
}

fn int_of(frame: &[u8]) -> Option<i64> {
    parse_i64(frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?)
}

fn array(items: &[&[u8]]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + items.iter().map(|i| i.len()).sum::<usize>());
    out.put_slice(format!("*{}\r\n", items.len()).as_bytes());
    for i in items {
        out.put_slice(i);
    }
    out.freeze()
}

fn bulk(s: &[u8]) -> Vec<u8> {
    let mut v = format!("${}\r\n", s.len()).into_bytes();
    v.extend_from_slice(s);
    v.extend_from_slice(b"\r\n");
    v
}

impl Merge {
    /// The reply a single Redis would have given, from the parts' replies in
    /// part order; the first error among them, if any.
    pub(crate) fn apply(&self, parts: &[Bytes]) -> Bytes {
        if let Merge::AnyOk = self {
            let ok = parts.iter().find(|p| !is_error(p));
            return ok.or(parts.first()).cloned().unwrap_or_else(unexpected);
        }
        if let Some(e) = parts.iter().find(|p| is_error(p)) {
            return e.clone();
        }
        self.combine(parts).unwrap_or_else(unexpected)
    }

    fn combine(&self, parts: &[Bytes]) -> Option<Bytes> {
        match self {
            Merge::AllOk | Merge::AnyOk => parts.first().cloned(),
            Merge::AnyNonNil => parts.iter().find(|p| !is_nil(p)).or(parts.first()).cloned(),
            Merge::Sum => {
                let mut total: i64 = 0;
                for p in parts {
                    total = total.checked_add(int_of(p)?)?;
                }
                Some(Bytes::from(format!(":{total}\r\n")))
            }
            Merge::Concat => {
                let mut all = Vec::new();
                for p in parts {
                    all.extend(elements(p, DEPTH)?);
                }
                Some(array(&all))
            }
            Merge::Every => {
                let lists = parts
                    .iter()
                    .map(|p| elements(p, DEPTH))
                    .collect::<Option<Vec<_>>>()?;
                let first = lists.first()?;
                let mut out = Vec::with_capacity(first.len());
                for i in 0..first.len() {
                    let all = lists
                        .iter()
                        .all(|l| l.get(i).and_then(|f| int_of(f)) == Some(1));
                    out.push(if all { &b":1\r\n"[..] } else { b":0\r\n" });
                }
                Some(array(&out))
            }
            Merge::Mget(positions) => {
                let total = positions.iter().map(Vec::len).sum();
                let mut out: Vec<&[u8]> = vec![b"$-1\r\n"; total];
                for (part, pos) in parts.iter().zip(positions) {
                    let values = elements(part, DEPTH)?;
                    if values.len() != pos.len() {
                        return None;
                    }
                    for (v, &i) in values.into_iter().zip(pos) {
                        *out.get_mut(i)? = v;
                    }
                }
                Some(array(&out))
            }
            Merge::Scan { index, n } => {
                let reply = parts.first()?;
                let items = elements(reply, DEPTH)?;
                let [cursor, keys] = items[..] else {
                    return None;
                };
                // A bulk string (`$<len>\r\n<digits>\r\n`) in both protocols.
                let digits = cursor.split(|&c| c == b'\n').nth(1)?.strip_suffix(b"\r")?;
                let node_cursor: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
                let next = global_cursor(node_cursor, *index, *n)?;
                let c = bulk(next.to_string().as_bytes());
                Some(array(&[&c, keys]))
            }
        }
    }
}

/// The global `SCAN` cursor after master `index` (of `n`) answered
/// `node_cursor`: the node's cursor times `n` plus the node's index; when a
/// node is done, the next node from its start; 0 after the last node.
pub(crate) fn global_cursor(node_cursor: u64, index: usize, n: usize) -> Option<u64> {
    if node_cursor == 0 {
        return Some(if index + 1 < n { index as u64 + 1 } else { 0 });
    }
    node_cursor.checked_mul(n as u64)?.checked_add(index as u64)
}

/// Where a global `SCAN` cursor points: (master index, node cursor).
pub(crate) fn split_cursor(cursor: u64, n: usize) -> (usize, u64) {
    let n = n.max(1) as u64;
    ((cursor % n) as usize, cursor / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    #[test]
    fn mget_values_return_to_their_places() {
        // Keys a b c d: a and c in one slot, b and d in another.
        let m = Merge::Mget(vec![vec![0, 2], vec![1, 3]]);
        let got = m.apply(&[
            b("*2\r\n$1\r\nA\r\n$-1\r\n"),
            b("*2\r\n$1\r\nB\r\n$1\r\nD\r\n"),
        ]);
        assert_eq!(&got[..], b"*4\r\n$1\r\nA\r\n$1\r\nB\r\n$-1\r\n$1\r\nD\r\n");
        // RESP3 nils pass through as they are.
        let got = m.apply(&[b("*2\r\n_\r\n_\r\n"), b("*2\r\n$1\r\nB\r\n_\r\n")]);
        assert_eq!(&got[..], b"*4\r\n_\r\n$1\r\nB\r\n_\r\n_\r\n");
        // A part of the wrong shape is an error, never a misplaced value.
        assert!(
            m.apply(&[b("*1\r\n$1\r\nA\r\n"), b("*2\r\n:1\r\n:2\r\n")])
                .starts_with(b"-ERR")
        );
    }

    #[test]
    fn counts_add_up_and_errors_win() {
        assert_eq!(
            &Merge::Sum.apply(&[b(":2\r\n"), b(":0\r\n"), b(":1\r\n")])[..],
            b":3\r\n"
        );
        let err = b("-CLUSTERDOWN Hash slot not served\r\n");
        assert_eq!(Merge::Sum.apply(&[b(":2\r\n"), err.clone()]), err);
        assert_eq!(Merge::AllOk.apply(&[b("+OK\r\n"), err.clone()]), err);
        assert_eq!(
            &Merge::AllOk.apply(&[b("+OK\r\n"), b("+OK\r\n")])[..],
            b"+OK\r\n"
        );
        // A kill: the master that ran the script says OK, the others NOTBUSY.
        let notbusy = b("-NOTBUSY No scripts in execution right now.\r\n");
        let parts = [notbusy.clone(), b("+OK\r\n"), notbusy.clone()];
        assert_eq!(&Merge::AnyOk.apply(&parts)[..], b"+OK\r\n");
        assert_eq!(Merge::AnyOk.apply(&[notbusy.clone(), err]), notbusy);
    }

    #[test]
    fn arrays_concatenate_and_combine() {
        let got =
            Merge::Concat.apply(&[b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nb\r\n")]);
        assert_eq!(&got[..], b"*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        let got = Merge::Every.apply(&[b("*2\r\n:1\r\n:1\r\n"), b("*2\r\n:0\r\n:1\r\n")]);
        assert_eq!(&got[..], b"*2\r\n:0\r\n:1\r\n");
        let got = Merge::AnyNonNil.apply(&[b("$-1\r\n"), b("$1\r\nk\r\n")]);
        assert_eq!(&got[..], b"$1\r\nk\r\n");
        assert_eq!(&Merge::AnyNonNil.apply(&[b("$-1\r\n")])[..], b"$-1\r\n");
    }

    #[test]
    fn scan_cursors_walk_every_master_once() {
        assert_eq!(split_cursor(0, 3), (0, 0));
        // Node 1 answers cursor 7: the global cursor comes back to node 1, at 7.
        let c = global_cursor(7, 1, 3).unwrap();
        assert_eq!(split_cursor(c, 3), (1, 7));
        // A node that is done hands over to the next, and the last ends it.
        assert_eq!(global_cursor(0, 0, 3), Some(1));
        assert_eq!(split_cursor(1, 3), (1, 0));
        assert_eq!(global_cursor(0, 2, 3), Some(0));
        assert_eq!(global_cursor(u64::MAX, 1, 3), None);
        let m = Merge::Scan { index: 1, n: 3 };
        let got = m.apply(&[b("*2\r\n$1\r\n7\r\n*1\r\n$1\r\nk\r\n")]);
        assert_eq!(&got[..], b"*2\r\n$2\r\n22\r\n*1\r\n$1\r\nk\r\n");
    }
}
