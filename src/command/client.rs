//! `CLIENT` subcommands: which the proxy answers for its own clients, which
//! it rewrites (ids of clients) on their way to the backend, which pass as
//! they are; and the arguments of `CLIENT LIST` and `CLIENT KILL`, parsed
//! into the [`Filter`] the proxy matches its clients with
//! (`server/client_list.rs`), or Redis's error for them.

use bytes::Bytes;

use super::{Command, Effect, Local, ReplyMode, upper};
use crate::errors;
use crate::protocol::{ArgList, Reply, parse_i64};

/// `CLIENT <subcommand> ...` outside `MULTI` and pub/sub: what the proxy
/// answers or rewrites (`None`: forwarded as it is).
pub(super) fn classify<A: ArgList + ?Sized>(args: &A) -> Option<Command> {
    let mut buf = [0u8; 24];
    let sub = upper(args.arg(1), &mut buf);
    let n = args.len();
    let bytes = |i: usize| Bytes::copy_from_slice(args.arg(i));
    Some(match sub {
        b"SETNAME" if n == 3 => {
            let name = args.arg(2);
            if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                Command::Refuse(errors::bad_client_name())
            } else {
                Command::Local(Local::ClientSetName(bytes(2)))
            }
        }
        b"GETNAME" if n == 2 => Command::Local(Local::ClientGetName),
        // The proxy's clients, not the backend's connections (several of
        // them may share one): see `server/client_list.rs`.
        b"ID" if n == 2 => Command::Forward(Effect::ClientId),
        b"INFO" if n == 2 => Command::Local(Local::ClientInfo),
        b"LIST" => match parse_list(args, 2) {
            Ok(filter) => Command::Local(Local::ClientList(filter)),
            Err(e) => Command::Refuse(e),
        },
        b"KILL" => match parse_kill(args, 2) {
            Ok(kill) => Command::Local(Local::ClientKill(kill)),
            Err(e) => Command::Refuse(e),
        },
        b"UNBLOCK" if n == 3 || n == 4 => {
            // Not a number: the backend explains.
            let id = parse_i64(args.arg(2)).and_then(|i| u64::try_from(i).ok())?;
            Command::Forward(Effect::ClientRef {
                at: 2,
                id,
                tracking: None,
            })
        }
        b"TRACKING" if n >= 3 => {
            let on = args.arg(2).eq_ignore_ascii_case(b"ON");
            let at = (3..n.saturating_sub(1))
                .find(|&i| args.arg(i).eq_ignore_ascii_case(b"REDIRECT"))
                .map(|i| i + 1);
            let id = at.and_then(|at| parse_i64(args.arg(at)).and_then(|i| u64::try_from(i).ok()));
            match (at, id) {
                (Some(at), Some(id)) => Command::Forward(Effect::ClientRef {
                    at,
                    id,
                    tracking: Some(on),
                }),
                _ => Command::Forward(Effect::Tracking(on)),
            }
        }
        b"GETREDIR" | b"TRACKINGINFO" if n == 2 => Command::Forward(Effect::ClientGetRedir),
        b"SETINFO" if n == 4 => {
            let mut abuf = [0u8; 24];
            let lib_name = match upper(args.arg(2), &mut abuf) {
                b"LIB-NAME" => true,
                b"LIB-VER" => false,
                _ => {
                    return Some(Command::Refuse(errors::err(format_args!(
                        "Unrecognized option '{}'",
                        String::from_utf8_lossy(args.arg(2))
                    ))));
                }
            };
            let value = args.arg(3);
            if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                return Some(Command::Refuse(errors::err(
                    "lib-name and lib-ver cannot contain spaces, newlines or special characters.",
                )));
            }
            Command::Local(Local::ClientSetInfo {
                lib_name,
                value: bytes(3),
            })
        }
        b"REPLY" if n == 3 => {
            let mut mbuf = [0u8; 24];
            match upper(args.arg(2), &mut mbuf) {
                b"ON" => Command::Local(Local::ClientReply(ReplyMode::On)),
                b"OFF" => Command::Local(Local::ClientReply(ReplyMode::Off)),
                b"SKIP" => Command::Local(Local::ClientReply(ReplyMode::Skip)),
                _ => Command::Refuse(errors::syntax()),
            }
        }
        // The backend holds writes until the pause ends (ALL holds
        // everything, as it does for clients of Redis itself).
        b"PAUSE" if n == 4 && args.arg(3).eq_ignore_ascii_case(b"WRITE") => {
            match parse_i64(args.arg(2)).and_then(|ms| u64::try_from(ms).ok()) {
                Some(ms) => Command::Forward(Effect::PauseWrites(Some(ms))),
                None => return None,
            }
        }
        b"UNPAUSE" if n == 2 => Command::Forward(Effect::PauseWrites(None)),
        // Maintenance notifications describe the server endpoint, which the
        // proxy hides; answer what a server without the feature answers.
        b"MAINT_NOTIFICATIONS" => {
            Command::Refuse(errors::unknown_subcommand(args.arg(1), "CLIENT"))
        }
        _ => return None,
    })
}

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
