//! Counting backend replies, and finding the count again after pub/sub.
//!
//! After a (un)subscribe or MONITOR the backend's frames are no longer one per
//! request (RESP2 messages look like replies), so the connection stops counting:
//! forwarded commands get no slot and frames go to the client as they come. The
//! first command that needs a slot sends `PING <marker>` and waits, handling no
//! request, until the marker comes back: everything before it has been
//! forwarded, the queue is empty, and the marker's shape (`*2 pong marker` vs
//! `$marker`) tells whether the client is still subscribed.

use bytes::Bytes;

/// Whether the backend's frames can be matched to requests one by one.
#[derive(Debug, Default)]
pub(super) enum Counting {
    /// One reply per forwarded command, in order.
    #[default]
    Counted,
    /// After (P|S)SUBSCRIBE or MONITOR: frames go to the client as they come.
    /// `synced`: nothing was forwarded since a resynchronisation found the
    /// client still subscribed, so a reply can be queued in order without another.
    Uncounted {
        /// At a resynchronisation point.
        synced: bool,
    },
    /// A `PING <marker>` is on its way; no request is handled until it returns.
    Resyncing(Marker),
}

impl Counting {
    /// Replies are counted: forwarded commands get a slot.
    pub(super) fn counted(&self) -> bool {
        matches!(self, Counting::Counted)
    }

    /// Waiting for a marker: requests wait.
    pub(super) fn paused(&self) -> bool {
        matches!(self, Counting::Resyncing(_))
    }

    /// A command that needs a slot must first resynchronise.
    pub(super) fn must_resync(&self) -> bool {
        matches!(self, Counting::Uncounted { synced: false })
    }

    /// Something was forwarded: a resynchronisation point is behind us.
    pub(super) fn forwarded(&mut self) {
        if let Counting::Uncounted { synced } = self {
            *synced = false;
        }
    }

    /// Starts a resynchronisation; returns the marker to send with `PING`.
    pub(super) fn resync(&mut self, nonce: u64, id: u64) -> Bytes {
        let marker = Marker::new(nonce, id);
        let text = marker.text.clone();
        *self = Counting::Resyncing(marker);
        text
    }

    /// A frame arrived while resynchronising: `Some(still_subscribed)` when it
    /// is the marker's reply (the resynchronisation is over), `None` when it is
    /// a message for the client.
    pub(super) fn marker_reply(&self, frame: &[u8]) -> Option<bool> {
        match self {
            Counting::Resyncing(m) => m.matches(frame),
            _ => None,
        }
    }
}

/// The `PING` argument of a resynchronisation and the two replies it can get.
#[derive(Debug)]
pub(super) struct Marker {
    text: Bytes,
    /// `$<len>\r\n<marker>\r\n`: not subscribed (or RESP3).
    bulk: Bytes,
    /// `*2\r\n$4\r\npong\r\n$<len>\r\n<marker>\r\n`: RESP2 and still subscribed.
    array: Bytes,
}

impl Marker {
    /// A marker no client can guess: the proxy's nonce, the connection id and
    /// a random part.
    fn new(nonce: u64, id: u64) -> Marker {
        let text = format!(
            "redlock-proxy-sync-{nonce:016x}-{id}-{:08x}",
            fastrand::u32(..)
        );
        let bulk = format!("${}\r\n{}\r\n", text.len(), text);
        let array = format!("*2\r\n$4\r\npong\r\n{bulk}");
        Marker {
            text: Bytes::from(text),
            bulk: Bytes::from(bulk),
            array: Bytes::from(array),
        }
    }

    /// `Some(still_subscribed)` when `frame` is this marker's reply.
    fn matches(&self, frame: &[u8]) -> Option<bool> {
        if frame == &self.bulk[..] {
            Some(false)
        } else if frame == &self.array[..] {
            Some(true)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_shapes() {
        let m = Marker::new(1, 2);
        let t = std::str::from_utf8(&m.text).unwrap();
        assert_eq!(
            m.matches(format!("${}\r\n{t}\r\n", t.len()).as_bytes()),
            Some(false)
        );
        assert_eq!(
            m.matches(format!("*2\r\n$4\r\npong\r\n${}\r\n{t}\r\n", t.len()).as_bytes()),
            Some(true)
        );
        assert_eq!(m.matches(b"+PONG\r\n"), None);
    }

    #[test]
    fn a_resync_is_needed_once_per_forward() {
        let mut c = Counting::Uncounted { synced: false };
        assert!(c.must_resync() && !c.counted());
        let text = c.resync(7, 9);
        assert!(c.paused());
        let t = std::str::from_utf8(&text).unwrap();
        let still = format!("*2\r\n$4\r\npong\r\n${}\r\n{t}\r\n", t.len());
        assert_eq!(
            c.marker_reply(b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nm\r\n"),
            None
        );
        assert_eq!(c.marker_reply(still.as_bytes()), Some(true));
        c = Counting::Uncounted { synced: true };
        assert!(!c.must_resync());
        c.forwarded();
        assert!(c.must_resync());
    }
}
