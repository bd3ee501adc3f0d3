//! The cluster's redirections, read from a node's error reply.

use super::topology::NodeAddr;

/// What a node answered instead of running a routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Redirect {
    /// `-MOVED slot host:port`: the slot lives there now, for good.
    Moved(u16, NodeAddr),
    /// `-ASK slot host:port`: the slot is migrating; this key is there, ask it
    /// once (after `ASKING`).
    Ask(u16, NodeAddr),
    /// `-TRYAGAIN`: the keys of a multi-key request are split by a migration
    /// in progress; try again shortly.
    TryAgain,
}

impl Redirect {
    /// Reads a reply; `None` for anything but a redirection.
    pub(crate) fn parse(frame: &[u8]) -> Option<Redirect> {
        if frame.starts_with(b"-TRYAGAIN") {
            return Some(Redirect::TryAgain);
        }
        let (moved, rest) = if let Some(r) = frame.strip_prefix(b"-MOVED ") {
            (true, r)
        } else {
            (false, frame.strip_prefix(b"-ASK ")?)
        };
        let line = std::str::from_utf8(rest.strip_suffix(b"\r\n")?).ok()?;
        let (slot, addr) = line.split_once(' ')?;
        let slot: u16 = slot
            .parse()
            .ok()
            .filter(|&s| usize::from(s) < super::slot::SLOTS)?;
        let addr = NodeAddr::parse(addr)?;
        Some(if moved {
            Redirect::Moved(slot, addr)
        } else {
            Redirect::Ask(slot, addr)
        })
    }
}

impl std::fmt::Display for Redirect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Redirect::Moved(slot, addr) => write!(f, "MOVED {slot} {addr}"),
            Redirect::Ask(slot, addr) => write!(f, "ASK {slot} {addr}"),
            Redirect::TryAgain => f.write_str("TRYAGAIN"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redirections() {
        let a = NodeAddr::parse("127.0.0.1:7001").unwrap();
        assert_eq!(
            Redirect::parse(b"-MOVED 3999 127.0.0.1:7001\r\n"),
            Some(Redirect::Moved(3999, a.clone()))
        );
        assert_eq!(
            Redirect::parse(b"-ASK 12 127.0.0.1:7001\r\n"),
            Some(Redirect::Ask(12, a))
        );
        assert_eq!(
            Redirect::parse(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"),
            Some(Redirect::TryAgain)
        );
        for other in [
            &b"-ERR MOVED\r\n"[..],
            b"-MOVED 99999 h:1\r\n",
            b"-MOVED 1 nohost\r\n",
            b"-MOVED 1 h:1",
            b"$5\r\nMOVED\r\n",
            b"-CLUSTERDOWN The cluster is down\r\n",
        ] {
            assert_eq!(Redirect::parse(other), None, "{other:?}");
        }
    }
}
