//! The cluster's shape as a node reports it: which master serves each slot.
//! Pure: parses `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` replies, read
//! in RESP2 (maps are flat arrays of keys and values).

use redis_protocol::resp2::types::OwnedFrame as Value;

use super::slot::SLOTS;

/// The text of a simple or bulk string.
fn text(v: &Value) -> Option<&[u8]> {
    match v {
        Value::SimpleString(s) | Value::BulkString(s) => Some(s),
        _ => None,
    }
}

/// An integer, or a string that holds one.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(n) => Some(*n),
        other => crate::protocol::parse_i64(text(other)?),
    }
}

/// The elements of an array.
fn array(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(items) => Some(items),
        _ => None,
    }
}

/// In a flat map (`[k1, v1, k2, v2, ...]`), the value of key `key`.
fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    array(v)?
        .chunks_exact(2)
        .find(|kv| text(&kv[0]) == Some(key.as_bytes()))
        .map(|kv| &kv[1])
}

/// A slot no reachable master serves.
pub(crate) const UNOWNED: u16 = u16::MAX;

/// A node's address, as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct NodeAddr {
    /// Host name or IP.
    pub(crate) host: String,
    /// Port (the TLS port when the cluster announces one and TLS is in use).
    pub(crate) port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl NodeAddr {
    /// Parses `host:port` (as in a `MOVED` reply; IPv6 hosts have colons).
    pub(crate) fn parse(s: &str) -> Option<NodeAddr> {
        let (host, port) = s.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(NodeAddr {
            host: host.to_string(),
            port: port.parse().ok().filter(|&p| p != 0)?,
        })
    }
}

/// Which master serves each slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// The masters, sorted (so a `SCAN` cursor's node index is stable).
    pub(crate) masters: Vec<NodeAddr>,
    /// For each slot, the index of its master in `masters`, or [`UNOWNED`].
    pub(crate) owner: Vec<u16>,
    /// The replicas listed (a replica later seen serving slots took over by
    /// failover).
    pub(crate) replicas: Vec<NodeAddr>,
}

impl Topology {
    fn from_ranges(
        ranges: Vec<(usize, usize, NodeAddr)>,
        replicas: Vec<NodeAddr>,
    ) -> Option<Topology> {
        let mut masters: Vec<NodeAddr> = ranges.iter().map(|r| r.2.clone()).collect();
        masters.sort();
        masters.dedup();
        let mut owner = vec![UNOWNED; SLOTS];
        for (start, end, node) in ranges {
            if start > end || end >= SLOTS {
                return None;
            }
            let i = masters.binary_search(&node).ok()?;
            owner[start..=end].fill(u16::try_from(i).ok()?);
        }
        Some(Topology {
            masters,
            owner,
            replicas,
        })
    }

    /// From a `CLUSTER SHARDS` reply; `asked` is the node that gave it (a node
    /// announcing no address means that one); `tls` picks the TLS port.
    pub(crate) fn from_shards(reply: &Value, asked: &NodeAddr, tls: bool) -> Option<Topology> {
        let mut ranges = Vec::new();
        let mut replicas = Vec::new();
        for shard in array(reply)? {
            let slots = array(field(shard, "slots")?)?;
            let nodes = array(field(shard, "nodes")?)?;
            let is = |n: &Value, k: &str, v: &str| field(n, k).and_then(text) == Some(v.as_bytes());
            // The serving master: online first (after a failover the old one may
            // still be listed as a failed master).
            let master = nodes
                .iter()
                .find(|n| is(n, "role", "master") && is(n, "health", "online"))
                .or_else(|| nodes.iter().find(|n| is(n, "role", "master")));
            let node_addr = |n: &Value| {
                let port = tls
                    .then(|| field(n, "tls-port"))
                    .flatten()
                    .or_else(|| field(n, "port"))
                    .and_then(int)?;
                let host = ["endpoint", "ip"]
                    .iter()
                    .filter_map(|k| field(n, k).and_then(text))
                    .find(|h| !h.is_empty() && *h != b"?");
                address(host, port, asked)
            };
            replicas.extend(
                nodes
                    .iter()
                    .filter(|n| is(n, "role", "replica"))
                    .filter_map(node_addr),
            );
            let Some(master) = master else { continue };
            if is(master, "health", "fail") {
                continue;
            }
            let node = node_addr(master)?;
            for pair in slots.chunks_exact(2) {
                let (s, e) = (int(&pair[0])?, int(&pair[1])?);
                ranges.push((
                    usize::try_from(s).ok()?,
                    usize::try_from(e).ok()?,
                    node.clone(),
                ));
            }
        }
        Topology::from_ranges(ranges, replicas)
    }

    /// From a `CLUSTER SLOTS` reply (each entry: start, end, master, replicas).
    pub(crate) fn from_slots(reply: &Value, asked: &NodeAddr) -> Option<Topology> {
        let mut ranges = Vec::new();
        let mut replicas = Vec::new();
        let node_addr = |n: &Value| {
            let n = array(n)?;
            let host = text(n.first()?).filter(|h| !h.is_empty() && *h != b"?");
            address(host, int(n.get(1)?)?, asked)
        };
        for entry in array(reply)? {
            let e = array(entry)?;
            let (start, end) = (int(e.first()?)?, int(e.get(1)?)?);
            let node = node_addr(e.get(2)?)?;
            replicas.extend(e.iter().skip(3).filter_map(node_addr));
            ranges.push((
                usize::try_from(start).ok()?,
                usize::try_from(end).ok()?,
                node,
            ));
        }
        Topology::from_ranges(ranges, replicas)
    }

    /// The master of `slot`, if one serves it.
    pub(crate) fn master_of(&self, slot: u16) -> Option<&NodeAddr> {
        let i = *self.owner.get(usize::from(slot))?;
        self.masters.get(usize::from(i))
    }

    /// How many slots no master serves.
    pub(crate) fn unowned(&self) -> usize {
        self.owner.iter().filter(|&&o| o == UNOWNED).count()
    }
}

fn address(host: Option<&[u8]>, port: i64, asked: &NodeAddr) -> Option<NodeAddr> {
    let host = match host {
        Some(h) => String::from_utf8(h.to_vec()).ok()?,
        None => asked.host.clone(),
    };
    Some(NodeAddr {
        host,
        port: u16::try_from(port).ok().filter(|&p| p != 0)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(resp: &str) -> Value {
        redis_protocol::resp2::decode::decode(resp.as_bytes())
            .expect("valid RESP")
            .expect("complete")
            .0
    }

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    fn node(port: u16, role: &str, health: &str) -> String {
        let mut s = String::from("*14\r\n");
        for (k, v) in [
            ("id", "abc".to_string()),
            ("port", format!(":{port}\r\n")),
            ("ip", "127.0.0.1".into()),
            ("endpoint", "127.0.0.1".into()),
            ("role", role.into()),
            ("replication-offset", ":0\r\n".into()),
            ("health", health.into()),
        ] {
            s += &bulk(k);
            s += &if v.starts_with(':') { v } else { bulk(&v) };
        }
        s
    }

    fn shard(ranges: &[(u16, u16)], nodes: &[String]) -> String {
        let mut s = format!("*4\r\n{}*{}\r\n", bulk("slots"), ranges.len() * 2);
        for (a, b) in ranges {
            s += &format!(":{a}\r\n:{b}\r\n");
        }
        s += &format!("{}*{}\r\n", bulk("nodes"), nodes.len());
        for n in nodes {
            s += n;
        }
        s
    }

    #[test]
    fn shards_give_each_slot_its_online_master() {
        let asked = NodeAddr::parse("127.0.0.1:7000").unwrap();
        let reply = format!(
            "*2\r\n{}{}",
            shard(
                &[(0, 8000)],
                &[
                    node(7000, "master", "online"),
                    node(7003, "replica", "online")
                ]
            ),
            // A failover: the old master failed, its replica took over.
            shard(
                &[(8001, 16383)],
                &[node(7001, "master", "fail"), node(7004, "master", "online")]
            ),
        );
        let t = Topology::from_shards(&value(&reply), &asked, false).unwrap();
        assert_eq!(t.masters.len(), 2);
        assert_eq!(t.master_of(0).unwrap().port, 7000);
        assert_eq!(t.master_of(8000).unwrap().port, 7000);
        assert_eq!(t.master_of(8001).unwrap().port, 7004);
        assert_eq!(t.master_of(16383).unwrap().port, 7004);
        assert_eq!(t.unowned(), 0);
        // The replicas listed: one seen later serving slots took over.
        let ports: Vec<u16> = t.replicas.iter().map(|r| r.port).collect();
        assert_eq!(ports, [7003]);
    }

    #[test]
    fn slots_reply_and_unserved_slots() {
        let asked = NodeAddr::parse("10.0.0.9:7000").unwrap();
        // The second master announces no IP: it is the node asked.
        let reply = format!(
            "*2\r\n*4\r\n:0\r\n:99\r\n*2\r\n{}:7001\r\n*2\r\n{}:7005\r\n*3\r\n:200\r\n:299\r\n*2\r\n{}:7000\r\n",
            bulk("127.0.0.1"),
            bulk("127.0.0.1"),
            bulk("")
        );
        let t = Topology::from_slots(&value(&reply), &asked).unwrap();
        assert_eq!(t.replicas[0].to_string(), "127.0.0.1:7005");
        assert_eq!(t.master_of(50).unwrap().to_string(), "127.0.0.1:7001");
        assert_eq!(t.master_of(250).unwrap().to_string(), "10.0.0.9:7000");
        assert_eq!(t.master_of(150), None);
        assert_eq!(t.unowned(), SLOTS - 200);
    }

    #[test]
    fn addresses_parse_like_moved_replies_spell_them() {
        assert_eq!(NodeAddr::parse("127.0.0.1:7000").unwrap().port, 7000);
        assert_eq!(NodeAddr::parse("[::1]:7000").unwrap().host, "::1");
        assert_eq!(NodeAddr::parse("::1:7000").unwrap().host, "::1");
        assert!(NodeAddr::parse("nohost").is_none());
        assert!(NodeAddr::parse("h:0").is_none());
        assert!(NodeAddr::parse("h:x").is_none());
    }
}
