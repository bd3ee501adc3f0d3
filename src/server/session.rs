//! Per-connection state the proxy must track because it answers some commands
//! itself and opens the backend connection lazily: the protocol, the database,
//! the client's name and library, and where a transaction stands.

use bytes::Bytes;

use crate::backend::Handshake;
use crate::command::ReplyMode;
use crate::errors;
use crate::protocol::{Proto, Reply};

/// The state of one client connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// Proxy-wide connection id (what HELLO reports).
    pub(crate) id: u64,
    /// The protocol chosen with HELLO.
    pub(crate) proto: Proto,
    /// The selected database (starts at the backend URL's).
    pub(crate) db: u32,
    /// `CLIENT SETNAME` / `HELLO SETNAME`.
    pub(crate) name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub(crate) lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub(crate) lib_ver: Option<Bytes>,
    /// MULTI and WATCH.
    pub(crate) transaction: Transaction,
    /// MONITOR is on (only RESET or QUIT end it).
    pub(crate) monitor: bool,
    /// `RESET`s forwarded while replies were not counted, whose `+RESET` is still to come.
    pub(crate) resets_pending: u32,
    /// `CLIENT REPLY` mode.
    pub(crate) reply_mode: ReplyMode,
    /// Authenticated (or no authentication required).
    pub(crate) authenticated: bool,
    /// `CLIENT TRACKING ON` was sent: its reads stay on its own backend
    /// connection, where the backend tracks them.
    pub(crate) tracking: bool,
    /// The user it authenticated as (`None`: the default user).
    pub(crate) user: Option<Bytes>,
    /// That user's permissions (`None`: the default user's, whatever they
    /// are now).
    pub(crate) perms: Option<std::sync::Arc<crate::acl::User>>,
    /// The user an `AUTH` passed to the backend authenticated as (the proxy
    /// does not authenticate clients itself): the client's backend
    /// connections authenticate so, and it shares none.
    pub(crate) backend_auth: Option<(Option<Bytes>, Bytes)>,
}

impl Session {
    /// A fresh session, using database `db`; `authenticated` when no
    /// authentication is required.
    pub(crate) fn new(id: u64, db: u32, authenticated: bool) -> Self {
        Session {
            id,
            proto: Proto::Resp2,
            db,
            name: None,
            lib_name: None,
            lib_ver: None,
            transaction: Transaction::default(),
            monitor: false,
            resets_pending: 0,
            reply_mode: ReplyMode::On,
            authenticated,
            user: None,
            perms: None,
            tracking: false,
            backend_auth: None,
        }
    }

    /// What `RESET` does: back to a fresh connection's state (the library info stays,
    /// as in Redis; authentication is dropped when it is required).
    pub(crate) fn reset(&mut self, default_db: u32, auth_required: bool) {
        let (id, lib_name, lib_ver) = (self.id, self.lib_name.take(), self.lib_ver.take());
        *self = Session::new(id, default_db, !auth_required);
        self.lib_name = lib_name;
        self.lib_ver = lib_ver;
    }

    /// Whether the reply to the command being handled is suppressed by
    /// `CLIENT REPLY OFF|SKIP`; a SKIP is used up by the call.
    pub(crate) fn take_silent(&mut self) -> bool {
        match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::Skip => {
                self.reply_mode = ReplyMode::On;
                true
            }
        }
    }

    /// What brings a new backend connection to this session's state.
    pub(crate) fn handshake(&self) -> Handshake {
        Handshake::new()
            .proto(self.proto)
            .db(self.db)
            .name(self.name.clone())
            .lib(self.lib_name.clone(), self.lib_ver.clone())
            .auth(self.backend_auth.clone())
            .client_id()
    }
}

/// Where MULTI and WATCH stand, as far as the proxy must know: it refuses some
/// commands while queueing (EXEC must then abort, as in Redis), and a lost
/// backend connection takes the backend's half of the transaction with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Transaction {
    multi: Multi,
    watch: Watch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Multi {
    /// No MULTI.
    #[default]
    Off,
    /// Inside MULTI.
    Queueing,
    /// Inside MULTI, and a command was refused while queueing: EXEC aborts.
    Dirty,
    /// Inside MULTI, and the user may not run EXEC: it aborts, saying why.
    ExecDenied,
    /// Inside MULTI, but the backend connection was lost: the backend has no
    /// transaction any more, so queued commands are refused and EXEC aborts.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Watch {
    #[default]
    Off,
    /// WATCH is in effect on the backend connection.
    Watching,
    /// The backend connection was lost while watching: EXEC fails as if a
    /// watched key had changed.
    Lost,
}

impl Transaction {
    /// Inside MULTI (whatever became of it).
    pub(crate) fn in_multi(&self) -> bool {
        self.multi != Multi::Off
    }

    /// Inside MULTI, with the backend's half gone.
    pub(crate) fn lost(&self) -> bool {
        self.multi == Multi::Lost
    }

    /// WATCH is in effect: the commands must stay on one backend connection.
    pub(crate) fn watching(&self) -> bool {
        self.watch == Watch::Watching
    }

    /// `MULTI` forwarded (a nested MULTI changes nothing: the backend refuses it).
    pub(crate) fn begin(&mut self) {
        if self.multi == Multi::Off {
            self.multi = Multi::Queueing;
        }
    }

    /// A command refused while queueing: EXEC must abort.
    pub(crate) fn refused(&mut self) {
        if self.multi == Multi::Queueing {
            self.multi = Multi::Dirty;
        }
    }

    /// EXEC is refused by the user's ACL rules: as Redis does, it discards
    /// the transaction and says why (see [`Transaction::doomed_exec`]).
    pub(crate) fn exec_denied(&mut self) {
        if matches!(
            self.multi,
            Multi::Queueing | Multi::Dirty | Multi::ExecDenied
        ) {
            self.multi = Multi::ExecDenied;
        }
    }

    /// `WATCH` forwarded (inside MULTI the backend refuses it). A WATCH lost
    /// with a backend connection stays lost until EXEC, DISCARD or UNWATCH.
    pub(crate) fn watch(&mut self) {
        if !self.in_multi() && self.watch == Watch::Off {
            self.watch = Watch::Watching;
        }
    }

    /// `UNWATCH`.
    pub(crate) fn unwatch(&mut self) {
        self.watch = Watch::Off;
    }

    /// What EXEC must answer instead of the backend's reply, if the transaction
    /// is doomed: `EXECABORT` after a refusal, a null array after a lost WATCH.
    pub(crate) fn doomed_exec(&self) -> Option<Reply> {
        match (self.multi, self.watch) {
            (Multi::Dirty, _) => Some(errors::execabort()),
            (Multi::ExecDenied, _) => Some(errors::with_code(
                "EXECABORT",
                "Transaction discarded because of: NOPERM this user has no permissions to run the 'exec' command",
            )),
            (Multi::Queueing, Watch::Lost) => Some(Reply::NilArray),
            _ => None,
        }
    }

    /// EXEC or DISCARD: the transaction and its WATCHes are over.
    pub(crate) fn end(&mut self) {
        *self = Transaction::default();
    }

    /// The backend connection is gone, and the backend's half with it.
    pub(crate) fn backend_lost(&mut self) {
        if matches!(self.multi, Multi::Queueing | Multi::Dirty) {
            self.multi = Multi::Lost;
        }
        if self.watch == Watch::Watching {
            self.watch = Watch::Lost;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_while_queueing_aborts_exec() {
        let mut t = Transaction::default();
        assert_eq!(t.doomed_exec(), None);
        t.begin();
        assert!(t.in_multi() && t.doomed_exec().is_none());
        t.refused();
        assert_eq!(t.doomed_exec(), Some(errors::execabort()));
        t.end();
        assert!(!t.in_multi());
        // Outside MULTI a refusal means nothing.
        t.refused();
        assert_eq!(t.doomed_exec(), None);
    }

    #[test]
    fn a_lost_backend_dooms_the_transaction_and_the_watch() {
        let mut t = Transaction::default();
        t.watch();
        assert!(t.watching());
        t.backend_lost();
        assert!(!t.watching() && !t.in_multi());
        t.watch(); // on the new connection: the first WATCH is still lost
        t.begin();
        assert_eq!(t.doomed_exec(), Some(Reply::NilArray));
        t.backend_lost();
        assert!(t.lost() && t.in_multi());
        t.end();
        assert_eq!(t, Transaction::default());
    }

    #[test]
    fn watch_inside_multi_changes_nothing() {
        let mut t = Transaction::default();
        t.begin();
        t.watch();
        assert!(!t.watching());
        t.begin();
        t.unwatch();
        assert!(t.in_multi());
    }
}
