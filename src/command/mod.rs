//! Classification: each request is looked at once and becomes a typed
//! [`Command`] — forwarded to the passthrough backend, answered by the proxy,
//! run as a lock operation on the masters, or refused.
//!
//! This module is pure: it reads the arguments and a little connection state
//! and decides; the connection carries the decision out.

mod client;
mod getkeys;
mod lock;
mod lookup;
mod own;
mod pattern;
mod set_args;
mod shared_locks;
mod spec;
mod subcommands;
mod table;

use bytes::Bytes;

pub use client::{Filter, Kill, parse_kill, parse_list};
pub use getkeys::{KeyArg, PARSED as KEYS_PARSED, for_each_key, for_each_key_access};
pub use lock::LockRules;
pub use lookup::{by_full_name, every, lookup, lookup_any};
pub use own::ID_LIMIT;
pub use pattern::{Glob, LockPatterns};
pub use spec::{BeginSearch, CommandSpec, FindKeys, KeySpec, access, category, flags};
use subcommands::{classify_acl, classify_info, classify_proxy};

use crate::errors;
use crate::protocol::{ArgList, Proto, Reply, parse_i64};
use crate::redlock::op::LockOp;
use crate::redlock::scripts::{ScriptRegistry, sha1_hex};

/// `CLIENT REPLY` mode: the parsed argument of `CLIENT REPLY ON|OFF|SKIP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyMode {
    /// Replies are sent.
    #[default]
    On,
    /// No replies are sent.
    Off,
    /// The next command's reply is not sent.
    Skip,
}

/// The decision for one request.
#[derive(Debug)]
pub enum Command {
    /// Forward the request to the passthrough backend; then apply the effect.
    Forward(Effect),
    /// The proxy answers.
    Local(Local),
    /// A lock operation, run on the masters.
    Lock(LockOp),
    /// Refused with this error; nothing is forwarded. Inside MULTI a refusal
    /// makes EXEC abort, as a command rejected while queueing does in Redis.
    Refuse(Reply),
}

/// What a forwarded command changes in the connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Nothing, for an ordinary command, with whether it may share a backend
    /// connection (worked out during classification, where the spec is at hand).
    Plain {
        /// See [`shareable`].
        shareable: bool,
        /// A script or a function: it may run for long, and the backend
        /// holds its connection meanwhile.
        script: bool,
    },
    /// `SELECT n`.
    Select(u32),
    /// `AUTH [user] pass` when the proxy does not authenticate clients
    /// itself: the backend decides, and on success the client's own backend
    /// connections authenticate as that user from then on.
    Auth(Option<Bytes>, Bytes),
    /// `HELLO [proto] AUTH user pass [SETNAME name]` when the proxy does
    /// not authenticate clients itself: the backend checks the credentials
    /// (as for [`Effect::Auth`]); on success the proxy answers `HELLO`.
    HelloAuth {
        /// The protocol to switch to.
        proto: Option<Proto>,
        /// The user.
        user: Bytes,
        /// The password.
        pass: Bytes,
        /// `SETNAME name`.
        setname: Option<Bytes>,
    },
    /// `MULTI`.
    Multi,
    /// `EXEC`.
    Exec,
    /// `DISCARD`.
    Discard,
    /// `WATCH`.
    Watch,
    /// `UNWATCH`.
    Unwatch,
    /// A (un)subscribe command: replies stop being one per request.
    Subscribe,
    /// `RESET`.
    Reset,
    /// `CLIENT ID`: the client's own backend connection opens (a later
    /// `CLIENT UNBLOCK` or `TRACKING REDIRECT` of this id finds it), and the
    /// proxy's id is the answer, as in `HELLO` and `CLIENT LIST`.
    ClientId,
    /// `CLIENT UNBLOCK id` or `CLIENT TRACKING ON|OFF ... REDIRECT id`:
    /// argument `at` names a client by the proxy's id; the backend gets the
    /// id of that client's own connection there.
    ClientRef {
        /// Which argument.
        at: usize,
        /// The proxy's id.
        id: u64,
        /// `None`: `CLIENT UNBLOCK`; `Some(on)`: `CLIENT TRACKING ON|OFF`.
        tracking: Option<bool>,
    },
    /// `CLIENT TRACKING ON|OFF` without `REDIRECT`: while on, the client's
    /// reads must go over its own connection, where the backend tracks them.
    Tracking(bool),
    /// `CLIENT GETREDIR`, `CLIENT TRACKINGINFO`: the backend's answer names
    /// the redirect target by its connection's id there, turned into the
    /// proxy's id of its client.
    ClientGetRedir,
    /// `SCRIPT FLUSH`: the proxy forgets the lock scripts it learned, too.
    ScriptFlush,
    /// `SCRIPT EXISTS` with some lock scripts among others: patch these answers.
    ScriptExists(Vec<(usize, bool)>),
    /// `EVALSHA` of a lock script the proxy knows, on data keys: sent as
    /// `EVAL` with this text, so whatever the backend's script cache holds
    /// (anyone may have flushed it) it runs, and never answers `NOSCRIPT` for
    /// a script the proxy told the client exists.
    EvalText(Bytes),
    /// `INFO` with the default sections (or `all`, `everything`, `proxy`
    /// among others): the proxy's own section is added to the backend's.
    InfoWithProxy,
    /// `SCRIPT KILL`, `FUNCTION KILL`: it stops what another connection runs,
    /// so it must never queue behind it on a shared connection.
    Control,
    /// `CLIENT PAUSE ms WRITE` (the pause's length) or `CLIENT UNPAUSE`
    /// (`None`): until it ends, the backend holds writes.
    PauseWrites(Option<u64>),
}

/// Commands the proxy answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    /// `PING [msg]`.
    Ping(Option<Bytes>),
    /// `ECHO msg`.
    Echo(Bytes),
    /// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
    Hello {
        /// The protocol to switch to.
        proto: Option<Proto>,
        /// `AUTH user pass`.
        auth: Option<(Bytes, Bytes)>,
        /// `SETNAME name`.
        setname: Option<Bytes>,
    },
    /// `AUTH [user] pass`.
    Auth(Option<Bytes>, Bytes),
    /// `QUIT`.
    Quit,
    /// `RESET` with no backend connection to forward it to.
    Reset,
    /// `CLIENT SETNAME name`.
    ClientSetName(Bytes),
    /// `CLIENT GETNAME`.
    ClientGetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    ClientSetInfo {
        /// True for LIB-NAME, false for LIB-VER.
        lib_name: bool,
        /// The value.
        value: Bytes,
    },
    /// `CLIENT REPLY ON|OFF|SKIP`.
    ClientReply(ReplyMode),
    /// `CLIENT INFO`: the client's own line.
    ClientInfo,
    /// `CLIENT LIST [TYPE t] [ID id ...]`: the proxy's clients.
    ClientList(Filter),
    /// `CLIENT KILL ...`: closes the proxy's clients.
    ClientKill(Kill),
    /// `MONITOR`: every command the proxy receives, from now on.
    Monitor,
    /// `SCRIPT LOAD` of a lock script: reply its SHA1.
    ScriptLoad(Bytes),
    /// `SCRIPT EXISTS` of lock scripts only.
    ScriptExists(Vec<bool>),
    /// `EXEC` of a transaction the backend no longer has.
    ExecLost,
    /// `DISCARD` of a transaction the backend no longer has.
    DiscardLost,
    /// `INFO proxy`: the proxy's own section only.
    InfoProxy,
    /// `PROXY MASTERS`: each master's state.
    ProxyMasters,
    /// `PROXY CONFIG`: the effective configuration, passwords redacted.
    ProxyConfig,
    /// `PROXY HELP`.
    ProxyHelp,
    /// `ACL WHOAMI`.
    AclWhoami,
    /// `ACL CAT [category]`.
    AclCat(Option<Bytes>),
    /// `ACL LOG [count]` (negative: all); `None`: `ACL LOG RESET`.
    AclLog(Option<i64>),
    /// `ACL USERS`.
    AclUsers,
}

/// Where a client's MULTI stands, as classification needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Multi {
    /// No transaction.
    #[default]
    Off,
    /// Commands are being queued.
    Queueing,
    /// Inside MULTI, but the backend connection (and its half of the
    /// transaction) was lost: only EXEC, DISCARD and QUIT mean anything.
    Lost,
}

impl Context {
    fn in_multi(&self) -> bool {
        self.multi != Multi::Off
    }
}

/// The connection state classification depends on.
#[derive(Debug, Clone, Copy, Default)]
#[allow(
    clippy::struct_excessive_bools,
    reason = "independent facts about one connection, each read on its own"
)]
pub struct Context {
    /// Where MULTI stands.
    pub multi: Multi,
    /// Backend replies are not being counted (pub/sub, MONITOR).
    pub uncounted: bool,
    /// A backend connection is open or opening.
    pub attached: bool,
    /// The client has authenticated (or no authentication is required).
    pub authenticated: bool,
    /// The proxy authenticates clients itself (`requirepass` or `users`):
    /// `AUTH` is its own. Otherwise `AUTH` goes to the backend.
    pub proxy_auth: bool,
}

/// Everything classification needs from the proxy's configuration.
#[derive(Debug)]
pub struct Classifier {
    /// Lock key patterns.
    pub patterns: LockPatterns,
    /// Known lock scripts.
    pub scripts: std::sync::Arc<ScriptRegistry>,
    /// Lock operation parameters.
    pub lock_rules: LockRules,
}

fn upper<'a>(name: &[u8], buf: &'a mut [u8; 24]) -> &'a [u8] {
    if name.len() > buf.len() {
        return b"";
    }
    for (d, s) in buf.iter_mut().zip(name) {
        *d = s.to_ascii_uppercase();
    }
    &buf[..name.len()]
}

impl Classifier {
    /// Classifies one request (`args` is not empty).
    pub fn classify<A: ArgList + ?Sized>(&self, args: &A, ctx: Context) -> Command {
        self.classify_spec(args, ctx, &mut None)
    }

    /// [`classify`](Self::classify), and the command's entry in Redis's
    /// command table, if it is in it (the subcommand's for a container):
    /// its name is what `CLIENT LIST` shows as `cmd=`, and the ACL check
    /// reads its categories and keys, at no extra lookup.
    pub fn classify_spec_of<A: ArgList + ?Sized>(
        &self,
        args: &A,
        ctx: Context,
    ) -> (Command, Option<&'static CommandSpec>) {
        let mut spec = None;
        let cmd = self.classify_spec(args, ctx, &mut spec);
        (cmd, spec)
    }

    fn classify_spec<A: ArgList + ?Sized>(
        &self,
        args: &A,
        ctx: Context,
        spec_out: &mut Option<&'static CommandSpec>,
    ) -> Command {
        let mut name_buf = [0u8; 24];
        let name = upper(args.arg(0), &mut name_buf);
        if !ctx.authenticated && !matches!(name, b"AUTH" | b"HELLO" | b"QUIT") {
            return Command::Refuse(errors::noauth());
        }
        let spec = lookup(args);
        *spec_out = spec;

        // The proxy's own lock commands (no command table entry).
        if spec.is_none() {
            let own = lock::parse_own(name, args, &self.patterns, &self.lock_rules)
                .or_else(|| shared_locks::parse(name, args, &self.patterns, &self.lock_rules));
            if let Some(op) = own {
                if ctx.in_multi() {
                    return Command::Refuse(errors::lock_in_multi(args.arg(0)));
                }
                return match op {
                    Ok(op) => Command::Lock(op),
                    Err(reply) => Command::Refuse(reply),
                };
            }
        }

        // Lock keys first: whatever the command, a lock key never reaches the backend.
        if let Some(spec) = spec {
            let (mut lock, mut total, mut pattern) = (0usize, 0usize, None);
            for_each_key(spec, args, |k| match k {
                KeyArg::Key(i) => {
                    total += 1;
                    if self.patterns.is_lock_key(args.arg(i)) {
                        lock += 1;
                    }
                }
                KeyArg::Pattern { arg, star, end } => {
                    let p = args.arg(arg);
                    if self
                        .patterns
                        .may_form_lock_key(&p[..star], &p[star + 1..end])
                    {
                        pattern = Some(arg);
                    }
                }
            });
            if let Some(arg) = pattern {
                return Command::Refuse(errors::lock_pattern(args.arg(arg - 1), args.arg(0)));
            }
            if lock > 0 {
                if lock < total && !lock::is_split_call(name, args, &self.scripts) {
                    return Command::Refuse(errors::mixed_keys(args.arg(0)));
                }
                if ctx.in_multi() {
                    return Command::Refuse(errors::lock_in_multi(args.arg(0)));
                }
                return match lock::parse(
                    name,
                    args,
                    &self.scripts,
                    &self.lock_rules,
                    &self.patterns,
                ) {
                    Ok(op) => Command::Lock(op),
                    Err(reply) => Command::Refuse(reply),
                };
            }
        }

        // Transactions whose backend side is gone.
        if ctx.multi == Multi::Lost {
            return match name {
                b"EXEC" => Command::Local(Local::ExecLost),
                b"DISCARD" => Command::Local(Local::DiscardLost),
                b"QUIT" => Command::Local(Local::Quit),
                _ => Command::Refuse(errors::transaction_lost()),
            };
        }

        let n = args.len();
        let bytes = |i: usize| Bytes::copy_from_slice(args.arg(i));
        // Inside MULTI and in pub/sub the backend must see the command (it queues
        // it, or answers in the pub/sub shape).
        let answer_locally = !ctx.in_multi() && !ctx.uncounted;
        match name {
            b"PING" if answer_locally && n <= 2 => {
                return Command::Local(Local::Ping((n == 2).then(|| bytes(1))));
            }
            b"ECHO" if answer_locally && n == 2 => return Command::Local(Local::Echo(bytes(1))),
            b"QUIT" => return Command::Local(Local::Quit),
            b"HELLO" | b"AUTH" if ctx.in_multi() => {
                return Command::Refuse(errors::err(format_args!(
                    "'{}' inside MULTI is not supported by redlock-proxy",
                    String::from_utf8_lossy(name).to_lowercase()
                )));
            }
            b"HELLO" => {
                return match parse_hello(args) {
                    Command::Local(Local::Hello { auth: None, .. }) if !ctx.authenticated => {
                        Command::Refuse(errors::noauth_hello())
                    }
                    // Credentials are the backend's to check, as with `AUTH`.
                    Command::Local(Local::Hello {
                        proto,
                        auth: Some((user, pass)),
                        setname,
                    }) if !ctx.proxy_auth => Command::Forward(Effect::HelloAuth {
                        proto,
                        user,
                        pass,
                        setname,
                    }),
                    other => other,
                };
            }
            b"AUTH" => {
                let (user, pass) = match n {
                    2 => (None, bytes(1)),
                    3 => (Some(bytes(1)), bytes(2)),
                    _ => return Command::Refuse(errors::wrong_arity(args.arg(0))),
                };
                return if ctx.proxy_auth {
                    Command::Local(Local::Auth(user, pass))
                } else {
                    Command::Forward(Effect::Auth(user, pass))
                };
            }
            b"RESET" if !ctx.attached => return Command::Local(Local::Reset),
            b"RESET" => return Command::Forward(Effect::Reset),
            b"SELECT" if n == 2 => {
                return match parse_i64(args.arg(1)).and_then(|d| u32::try_from(d).ok()) {
                    Some(db) => Command::Forward(Effect::Select(db)),
                    None => Command::Forward(Effect::None), // the backend explains
                };
            }
            b"MULTI" => return Command::Forward(Effect::Multi),
            b"EXEC" => return Command::Forward(Effect::Exec),
            b"DISCARD" => return Command::Forward(Effect::Discard),
            b"WATCH" => return Command::Forward(Effect::Watch),
            b"UNWATCH" => return Command::Forward(Effect::Unwatch),
            b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
            | b"SUNSUBSCRIBE"
                if !ctx.in_multi() =>
            {
                return Command::Forward(Effect::Subscribe);
            }
            b"MONITOR" if answer_locally => return Command::Local(Local::Monitor),
            // The reply is an RDB payload and then the replication stream,
            // neither of them RESP replies to count.
            b"SYNC" | b"PSYNC" => return Command::Refuse(errors::replication_not_proxied(name)),
            b"CLIENT" if answer_locally && n >= 2 => {
                if let Some(cmd) = client::classify(args) {
                    return cmd;
                }
            }
            b"SCRIPT" if n >= 2 => return self.classify_script(args, ctx),
            b"INFO" if answer_locally => {
                if let Some(cmd) = classify_info(args) {
                    return cmd;
                }
            }
            b"PROXY" => return classify_proxy(args),
            // The proxy's users are its own: the backend's are not the client's.
            b"ACL" if ctx.proxy_auth && n >= 2 => {
                if let Some(cmd) = classify_acl(args) {
                    return cmd;
                }
            }
            b"FUNCTION" if n == 2 && args.arg(1).eq_ignore_ascii_case(b"KILL") => {
                return Command::Forward(Effect::Control);
            }
            b"EVALSHA" | b"EVALSHA_RO" if n >= 2 => {
                let sha = args.arg(1).to_ascii_lowercase();
                if let Some(text) = self.scripts.text(&sha) {
                    return Command::Forward(Effect::EvalText(text));
                }
            }
            _ => {}
        }
        let shareable =
            spec.is_some_and(|s| !s.has(flags::BLOCKING)) && !OWN_CONNECTION.contains(&name);
        let script = matches!(
            name,
            b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO"
        );
        Command::Forward(Effect::Plain { shareable, script })
    }

    fn classify_script<A: ArgList + ?Sized>(&self, args: &A, ctx: Context) -> Command {
        let mut buf = [0u8; 24];
        let sub = upper(args.arg(1), &mut buf);
        match sub {
            b"LOAD" if args.len() == 3 => {
                let text = args.arg(2);
                let sha = sha1_hex(text);
                if self.scripts.learn(&sha, text) {
                    return Command::Local(Local::ScriptLoad(Bytes::from(sha.into_bytes())));
                }
                Command::Forward(Effect::None)
            }
            b"EXISTS" if args.len() >= 3 => {
                let mut known = Vec::new();
                for i in 2..args.len() {
                    let sha = args.arg(i).to_ascii_lowercase();
                    if self.scripts.is_lock_script(&sha) {
                        known.push((i - 2, self.scripts.text(&sha).is_some()));
                    }
                }
                if known.is_empty() {
                    Command::Forward(Effect::None)
                } else if known.len() == args.len() - 2 && !ctx.in_multi() && !ctx.uncounted {
                    Command::Local(Local::ScriptExists(
                        known.into_iter().map(|k| k.1).collect(),
                    ))
                } else {
                    Command::Forward(Effect::ScriptExists(known))
                }
            }
            b"FLUSH" => Command::Forward(Effect::ScriptFlush),
            b"KILL" if args.len() == 2 => Command::Forward(Effect::Control),
            _ => Command::Forward(Effect::None),
        }
    }
}

fn parse_hello<A: ArgList + ?Sized>(args: &A) -> Command {
    let n = args.len();
    let mut proto = None;
    let mut auth = None;
    let mut setname = None;
    let mut i = 1;
    if n >= 2 {
        match parse_i64(args.arg(1)) {
            Some(2) => proto = Some(Proto::Resp2),
            Some(3) => proto = Some(Proto::Resp3),
            Some(_) => return Command::Refuse(errors::noproto()),
            None => {
                return Command::Refuse(errors::err(
                    "Protocol version is not an integer or out of range",
                ));
            }
        }
        i = 2;
    }
    while i < n {
        let mut buf = [0u8; 24];
        let more = n - i - 1;
        match upper(args.arg(i), &mut buf) {
            b"AUTH" if more >= 2 => {
                auth = Some((
                    Bytes::copy_from_slice(args.arg(i + 1)),
                    Bytes::copy_from_slice(args.arg(i + 2)),
                ));
                i += 3;
            }
            b"SETNAME" if more >= 1 => {
                let name = args.arg(i + 1);
                if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                    return Command::Refuse(errors::bad_client_name());
                }
                setname = Some(Bytes::copy_from_slice(name));
                i += 2;
            }
            _ => {
                return Command::Refuse(errors::err(format_args!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(args.arg(i))
                )));
            }
        }
    }
    Command::Local(Local::Hello {
        proto,
        auth,
        setname,
    })
}

/// Commands that must run on the client's own backend connection even though
/// they change no state the proxy tracks: they block it, or concern it.
const OWN_CONNECTION: &[&[u8]] = &[
    b"CLIENT",
    b"WAIT",
    b"WAITAOF",
    b"READONLY",
    b"READWRITE",
    b"SYNC",
    b"PSYNC",
    b"REPLCONF",
    b"DEBUG",
    b"SHUTDOWN",
    b"FAILOVER",
    b"REPLICAOF",
    b"SLAVEOF",
    b"CLUSTER",
    b"ASKING",
];

/// Whether a command may share a backend connection with other clients'
/// commands (multiplexing): known to the command table, never blocking, nothing
/// about the connection itself. (Subscriptions and transactions are decided by
/// their `Effect`.)
pub fn shareable<A: ArgList + ?Sized>(args: &A) -> bool {
    let Some(spec) = lookup(args) else {
        return false; // a module command: it might block
    };
    if spec.has(flags::BLOCKING) {
        return false;
    }
    let mut buf = [0u8; 24];
    !OWN_CONNECTION.contains(&upper(args.arg(0), &mut buf))
}

/// Whether `CLIENT PAUSE WRITE` makes the backend hold this command: writes,
/// and what Redis holds with them because it may replicate (`PUBLISH`,
/// `SPUBLISH`, `PFCOUNT`); a module command, which may write, too.
pub fn held_by_write_pause<A: ArgList + ?Sized>(args: &A) -> bool {
    let Some(spec) = lookup(args) else {
        return true;
    };
    let mut buf = [0u8; 24];
    spec.has(flags::WRITE)
        || matches!(
            upper(args.arg(0), &mut buf),
            b"PUBLISH" | b"SPUBLISH" | b"PFCOUNT"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_write_pause_holds() {
        for yes in [
            &["SET", "k", "v"][..],
            &["incr", "k"],
            &["PUBLISH", "c", "m"],
            &["PFCOUNT", "h"],
        ] {
            assert!(held_by_write_pause(yes), "{yes:?}");
        }
        for no in [
            &["GET", "k"][..],
            &["EXISTS", "k"],
            &["LRANGE", "l", "0", "1"],
        ] {
            assert!(!held_by_write_pause(no), "{no:?}");
        }
    }

    #[test]
    fn what_may_share_a_connection() {
        for yes in [
            &["GET", "k"][..],
            &["set", "k", "v"],
            &["EVAL", "return 1", "0"],
            &["LRANGE", "l", "0", "-1"],
            &["PUBLISH", "c", "m"],
        ] {
            assert!(shareable(yes), "{yes:?}");
        }
        for no in [
            &["BLPOP", "q", "0"][..],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            &["CLIENT", "ID"],
            &["WAIT", "1", "0"],
            &["NOSUCHMODULE.CMD"],
        ] {
            assert!(!shareable(no), "{no:?}");
        }
    }
}
