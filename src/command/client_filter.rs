//! The arguments of `CLIENT LIST` and `CLIENT KILL`, parsed into the
//! [`Filter`] the proxy matches its clients with (`server/client_list.rs`),
//! or Redis's error for them.

use bytes::Bytes;

use crate::errors;
use crate::protocol::{ArgList, Reply};

/// Which clients a `CLIENT LIST` or `CLIENT KILL` means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub(crate) ids: Option<Vec<u64>>,
    /// `Some(true)`: pub/sub clients; `Some(false)`: the others; a type no
    /// client of the proxy has (master, replica) matches none.
    pub(crate) pubsub: Option<bool>,
    pub(crate) no_type: bool,
    pub(crate) addr: Option<Bytes>,
    pub(crate) laddr: Option<Bytes>,
    pub(crate) user: Option<Bytes>,
    /// Older than this many seconds.
    pub(crate) max_age: Option<u64>,
    /// Leave the client that asked alone (`KILL`'s default).
    pub(crate) skip_me: bool,
}

/// `TYPE t`: into `filter`, or Redis's error.
fn client_type(filter: &mut Filter, t: &[u8]) -> Result<(), Reply> {
    match t.to_ascii_lowercase().as_slice() {
        b"normal" => filter.pubsub = Some(false),
        b"pubsub" => filter.pubsub = Some(true),
        b"master" | b"replica" | b"slave" => filter.no_type = true,
        _ => {
            return Err(errors::err(format_args!(
                "Unknown client type '{}'",
                String::from_utf8_lossy(t)
            )));
        }
    }
    Ok(())
}

fn parse_id(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse::<u64>().ok()
}

/// `CLIENT LIST [TYPE t] [ID id ...]` (arguments after `LIST`).
pub fn parse_list<A: ArgList + ?Sized>(args: &A, from: usize) -> Result<Filter, Reply> {
    let mut f = Filter::default();
    let mut i = from;
    while i < args.len() {
        let opt = args.arg(i).to_ascii_uppercase();
        match opt.as_slice() {
            b"TYPE" if i + 1 < args.len() => {
                client_type(&mut f, args.arg(i + 1))?;
                i += 2;
            }
            b"ID" if i + 1 < args.len() => {
                let mut ids = Vec::new();
                i += 1;
                while i < args.len() {
                    match parse_id(args.arg(i)) {
                        Some(id) if id > 0 => ids.push(id),
                        _ => return Err(errors::err("Invalid client ID")),
                    }
                    i += 1;
                }
                f.ids = Some(ids);
            }
            _ => return Err(errors::syntax()),
        }
    }
    Ok(f)
}

/// What `CLIENT KILL` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kill {
    /// `CLIENT KILL ip:port`: `OK`, or an error if no client has it.
    Addr(Bytes),
    /// `CLIENT KILL filter value ...`: the number of clients killed.
    Filter(Filter),
}

/// `CLIENT KILL ...` (arguments after `KILL`).
pub fn parse_kill<A: ArgList + ?Sized>(args: &A, from: usize) -> Result<Kill, Reply> {
    let n = args.len();
    if n == from + 1 {
        return Ok(Kill::Addr(Bytes::copy_from_slice(args.arg(from))));
    }
    if n <= from || (n - from) % 2 != 0 {
        return Err(errors::syntax());
    }
    let mut f = Filter {
        skip_me: true,
        ..Filter::default()
    };
    for pair in (from..n).step_by(2) {
        let (opt, v) = (args.arg(pair).to_ascii_uppercase(), args.arg(pair + 1));
        let value = || Bytes::copy_from_slice(v);
        match opt.as_slice() {
            b"ID" => match parse_id(v) {
                Some(id) if id > 0 => f.ids = Some(vec![id]),
                _ => return Err(errors::err("client-id should be greater than 0")),
            },
            b"TYPE" => client_type(&mut f, v)?,
            b"ADDR" => f.addr = Some(value()),
            b"LADDR" => f.laddr = Some(value()),
            b"USER" => f.user = Some(value()),
            b"SKIPME" => match v.to_ascii_lowercase().as_slice() {
                b"yes" => f.skip_me = true,
                b"no" => f.skip_me = false,
                _ => return Err(errors::syntax()),
            },
            b"MAXAGE" => match parse_id(v) {
                Some(a) => f.max_age = Some(a),
                None => return Err(errors::syntax()),
            },
            _ => return Err(errors::syntax()),
        }
    }
    Ok(Kill::Filter(f))
}

impl Kill {
    /// The filter it kills with (the old form: that address, the asker too).
    pub fn filter(&self) -> Filter {
        match self {
            Kill::Addr(a) => Filter {
                addr: Some(a.clone()),
                ..Filter::default()
            },
            Kill::Filter(f) => f.clone(),
        }
    }
}
