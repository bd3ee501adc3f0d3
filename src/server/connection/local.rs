//! The commands the proxy answers itself: the protocol switch, authentication,
//! the client's name and library, `CLIENT REPLY`, `PING`/`ECHO`, `QUIT`,
//! `RESET` before a backend connection exists, lock-script bookkeeping.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::State;
use super::queue::{Hook, Slot};
use crate::command::{Kill, Local, ReplyMode};
use crate::errors;
use crate::protocol::{Proto, Reply, encode_command};
use crate::server::info;

impl State {
    /// Answers a command the proxy handles itself.
    pub(super) fn local(&mut self, local: Local) {
        if !matches!(local, Local::Ping(_) | Local::Echo(_)) {
            // It may change what `CLIENT LIST` shows.
            self.changed.profile = true;
        }
        match local {
            Local::Ping(None) => self.reply(Reply::Simple("PONG")),
            Local::Ping(Some(m)) | Local::Echo(m) => self.reply(Reply::Bulk(m)),
            Local::Quit => {
                self.reply(Reply::OK);
                self.finish();
                // The client leaves: its locks without expiry go with it.
                for grant in std::mem::take(&mut self.bound) {
                    self.live.engine.release_grant(&grant);
                }
            }
            Local::Hello {
                proto,
                auth,
                setname,
            } => self.hello(proto, auth, setname),
            Local::Auth(None, _) if !self.settings.auth_required => {
                self.reply(errors::auth_not_configured());
            }
            Local::Auth(user, pass) => {
                if self.authenticate(user.as_deref(), &pass) {
                    self.reply(Reply::OK);
                } else {
                    self.reply(errors::wrongpass());
                }
            }
            Local::Reset => {
                let s = &self.settings;
                self.session.reset(s.default_db, s.auth_required);
                self.reply(Reply::Simple("RESET"));
            }
            Local::ClientSetName(name) => {
                self.set_name(name);
                self.reply(Reply::OK);
            }
            Local::ClientGetName => {
                let r = match &self.session.name {
                    Some(n) => Reply::Bulk(n.clone()),
                    None => Reply::Nil,
                };
                self.reply(r);
            }
            Local::ClientSetInfo { lib_name, value } => {
                let attr: &[u8] = if lib_name { b"LIB-NAME" } else { b"LIB-VER" };
                self.send_internal(&[b"CLIENT", b"SETINFO", attr, &value]);
                if lib_name {
                    self.session.lib_name = Some(value);
                } else {
                    self.session.lib_ver = Some(value);
                }
                self.reply(Reply::OK);
            }
            Local::ClientReply(mode) => {
                self.session.reply_mode = mode;
                if mode == ReplyMode::On {
                    self.reply(Reply::OK);
                }
            }
            Local::ClientInfo => {
                self.publish_cmd();
                let mut line = String::new();
                self.me.line(&mut line, self.session.id);
                line.push('\n');
                self.reply(Reply::Bulk(Bytes::from(line)));
            }
            Local::ClientList(filter) => {
                self.publish_cmd();
                let list = self.shared.registry.list(&filter);
                self.reply(Reply::Bulk(Bytes::from(list)));
            }
            Local::ClientKill(kill) => {
                let me = self.session.id;
                let n = self.shared.registry.kill(&kill.filter(), me);
                // Itself among them: closed once this reply is written.
                let itself = self.me.killed.swap(false, Ordering::Relaxed);
                match kill {
                    Kill::Addr(_) if n == 0 => self.reply(errors::err("No such client")),
                    Kill::Addr(_) => self.reply(Reply::OK),
                    Kill::Filter(_) => self.reply(Reply::Int(n as i64)),
                }
                if itself {
                    self.finish();
                }
            }
            // Already monitoring: Redis ignores it, without a reply.
            Local::Monitor if self.session.monitor => {}
            Local::Monitor => self.start_monitor(),
            Local::ScriptLoad(sha) => self.reply(Reply::Bulk(sha)),
            Local::ScriptExists(v) => {
                self.reply(Reply::Array(
                    v.into_iter().map(|b| Reply::Int(b as i64)).collect(),
                ));
            }
            Local::ExecLost => {
                self.session.transaction.end();
                self.reply(errors::execabort());
            }
            Local::DiscardLost => {
                self.session.transaction.end();
                self.reply(Reply::OK);
            }
            Local::InfoProxy => self.reply(info::info_proxy(&self.shared)),
            Local::ProxyMasters => self.reply(info::masters(&self.shared)),
            Local::ProxyConfig => self.reply(info::config(&self.shared)),
            Local::ProxyHelp => self.reply(info::help()),
        }
    }

    /// `HELLO [proto [AUTH user pass] [SETNAME name]]`.
    fn hello(
        &mut self,
        proto: Option<Proto>,
        auth: Option<(Bytes, Bytes)>,
        setname: Option<Bytes>,
    ) {
        if let Some((user, pass)) = &auth {
            if !self.authenticate(Some(user), pass) {
                self.reply(errors::wrongpass());
                return;
            }
        }
        if let Some(name) = setname {
            self.set_name(name);
        }
        let old = self.session.proto;
        let new = proto.unwrap_or(old);
        let reply = self.hello_reply(new);
        self.session.proto = new;
        if new != old && self.backend.attached() && self.counting.counted() {
            // The backend must switch too, in order with what was forwarded.
            let v = new.version().to_string();
            encode_command(
                self.backend.out(),
                [&b"HELLO"[..], v.as_bytes()].into_iter(),
            );
            let silent = self.session.take_silent();
            self.queue.push(Slot::Backend {
                hook: Hook::Replace(reply.to_bytes(new)),
                silent,
                patient: false,
            });
            return;
        }
        self.reply(reply);
    }

    /// The `HELLO` reply: what Redis reports, with the backend's version.
    pub(super) fn hello_reply(&self, proto: Proto) -> Reply {
        let version = self
            .shared
            .backend_version
            .read()
            .map(|v| v.clone())
            .unwrap_or_else(|_| "7.0.0".into());
        let kv = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
        Reply::Map(vec![
            kv("server", Reply::bulk_static("redis")),
            kv("version", Reply::Bulk(Bytes::from(version))),
            kv("proto", Reply::Int(proto.version())),
            kv("id", Reply::Int(self.session.id as i64)),
            kv("mode", Reply::bulk_static("standalone")),
            kv("role", Reply::bulk_static("master")),
            kv("modules", Reply::Array(Vec::new())),
        ])
    }

    /// Checks credentials; on success the session is authenticated. Without
    /// required authentication only the default user exists, with any password.
    fn authenticate(&mut self, user: Option<&[u8]>, pass: &[u8]) -> bool {
        let auth = &self.shared.auth;
        let ok = if auth.required() {
            auth.check(user, pass)
        } else {
            user.is_none_or(|u| u == crate::auth::DEFAULT_USER.as_bytes())
        };
        if ok {
            self.session.authenticated = true;
            self.session.user = user.map(Bytes::copy_from_slice);
        } else {
            self.shared
                .metrics
                .auth_failures
                .fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    fn set_name(&mut self, name: Bytes) {
        self.send_internal(&[b"CLIENT", b"SETNAME", &name]);
        self.session.name = (!name.is_empty()).then_some(name);
    }
}
