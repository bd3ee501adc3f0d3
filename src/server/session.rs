//! Per-connection state the proxy must track because it answers some commands
//! itself and opens the backend connection lazily: the protocol, the database,
//! the client's name and library, transaction and pub/sub state.

use bytes::Bytes;

use crate::backend::Handshake;
use crate::command::ReplyMode;
use crate::protocol::Proto;

/// The state of one client connection.
#[derive(Debug)]
pub struct Session {
    /// Proxy-wide connection id (what HELLO reports).
    pub id: u64,
    /// The protocol chosen with HELLO.
    pub proto: Proto,
    /// The selected database (starts at the backend URL's).
    pub db: u32,
    /// `CLIENT SETNAME` / `HELLO SETNAME`.
    pub name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<Bytes>,
    /// Inside MULTI.
    pub in_multi: bool,
    /// A command was refused while queueing: EXEC must abort.
    pub multi_dirty: bool,
    /// The backend connection was lost inside MULTI: the backend has no
    /// transaction any more, so queued commands are refused and EXEC aborts.
    pub multi_lost: bool,
    /// WATCH is in effect.
    pub watching: bool,
    /// The backend connection was lost while watching: EXEC must fail as if a
    /// watched key had changed.
    pub watch_lost: bool,
    /// The backend may send frames that are not one-per-request replies (pub/sub,
    /// MONITOR): replies are not counted until a resynchronisation.
    pub uncounted: bool,
    /// MONITOR is on (only RESET or QUIT end it).
    pub monitor: bool,
    /// `RESET`s forwarded while uncounted, whose `+RESET` is still to come.
    pub resets_pending: u32,
    /// `CLIENT REPLY` mode.
    pub reply_mode: ReplyMode,
    /// Authenticated (or no authentication required).
    pub authenticated: bool,
}

impl Session {
    /// A fresh session, using database `db`; `authenticated` when no
    /// authentication is required.
    pub fn new(id: u64, db: u32, authenticated: bool) -> Self {
        Session {
            id,
            proto: Proto::Resp2,
            db,
            name: None,
            lib_name: None,
            lib_ver: None,
            in_multi: false,
            multi_dirty: false,
            multi_lost: false,
            watching: false,
            watch_lost: false,
            uncounted: false,
            monitor: false,
            resets_pending: 0,
            reply_mode: ReplyMode::On,
            authenticated,
        }
    }

    /// What `RESET` does: back to a fresh connection's state (the library info stays,
    /// as in Redis; authentication is dropped when it is required).
    pub fn reset(&mut self, default_db: u32, auth_required: bool) {
        let (id, lib_name, lib_ver) = (self.id, self.lib_name.take(), self.lib_ver.take());
        *self = Session::new(id, default_db, !auth_required);
        self.lib_name = lib_name;
        self.lib_ver = lib_ver;
    }

    /// Whether the reply to the command being handled is suppressed by
    /// `CLIENT REPLY OFF|SKIP`; a SKIP is used up by the call.
    pub fn take_silent(&mut self) -> bool {
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
    pub fn handshake(&self) -> Handshake {
        Handshake::new()
            .proto(self.proto)
            .db(self.db)
            .name(self.name.clone())
            .lib(self.lib_name.clone(), self.lib_ver.clone())
    }
}
