//! The commands whose subcommands the proxy answers itself, or some of
//! them: `ACL` (from its own users), `INFO` (its own section), `PROXY`.

use bytes::Bytes;

use super::{Command, Effect, Local, upper};
use crate::errors;
use crate::protocol::{ArgList, parse_i64};

/// `ACL` when the proxy authenticates clients: what it answers from its own
/// users, and a refusal for what would change them; `None` (forwarded, for
/// the backend's answer) for `HELP`, `GENPASS`, unknown subcommands and
/// wrong arities.
pub(super) fn classify_acl<A: ArgList + ?Sized>(args: &A) -> Option<Command> {
    let mut buf = [0u8; 24];
    let sub = upper(args.arg(1), &mut buf);
    let n = args.len();
    Some(match (sub, n) {
        (b"WHOAMI", 2) => Command::Local(Local::AclWhoami),
        (b"USERS", 2) => Command::Local(Local::AclUsers),
        (b"CAT", 2) => Command::Local(Local::AclCat(None)),
        (b"CAT", 3) => Command::Local(Local::AclCat(Some(Bytes::copy_from_slice(args.arg(2))))),
        (b"LOG", 2) => Command::Local(Local::AclLog(Some(10))),
        (b"LOG", 3) if args.arg(2).eq_ignore_ascii_case(b"RESET") => {
            Command::Local(Local::AclLog(None))
        }
        (b"LOG", 3) => match parse_i64(args.arg(2)) {
            Some(count) => Command::Local(Local::AclLog(Some(count))),
            None => Command::Refuse(errors::not_integer()),
        },
        (b"SETUSER" | b"DELUSER" | b"GETUSER" | b"LIST" | b"LOAD" | b"SAVE" | b"DRYRUN", _) => {
            Command::Refuse(errors::acl_not_served(args.arg(1)))
        }
        _ => return None,
    })
}

/// `INFO [section ...]`: the proxy's section alone, with the backend's, or
/// not at all (`None`: forward as is).
pub(super) fn classify_info<A: ArgList + ?Sized>(args: &A) -> Option<Command> {
    let sections = (1..args.len()).map(|i| args.arg(i));
    let mut proxy = false;
    let mut others = false;
    let mut everything = args.len() == 1;
    for s in sections {
        if s.eq_ignore_ascii_case(b"proxy") {
            proxy = true;
        } else {
            others = true;
            everything |= [&b"default"[..], b"all", b"everything"]
                .iter()
                .any(|w| s.eq_ignore_ascii_case(w));
        }
    }
    match (proxy, others) {
        (true, false) => Some(Command::Local(Local::InfoProxy)),
        _ if proxy || everything => Some(Command::Forward(Effect::InfoWithProxy)),
        _ => None,
    }
}

/// `PROXY MASTERS | CONFIG | HELP`.
pub(super) fn classify_proxy<A: ArgList + ?Sized>(args: &A) -> Command {
    let mut buf = [0u8; 24];
    match (args.len(), upper(args.get(1).unwrap_or(b""), &mut buf)) {
        (2, b"MASTERS") => Command::Local(Local::ProxyMasters),
        (2, b"CONFIG") => Command::Local(Local::ProxyConfig),
        (2, b"HELP") => Command::Local(Local::ProxyHelp),
        (1, _) => Command::Refuse(errors::wrong_arity(args.arg(0))),
        _ => Command::Refuse(errors::unknown_subcommand(args.arg(1), "PROXY")),
    }
}
