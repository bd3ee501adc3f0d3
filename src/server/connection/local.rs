//! The commands the proxy answers itself: the protocol switch, authentication,
//! the client's name and library, `CLIENT REPLY`, `PING`/`ECHO`, `QUIT`,
//! `RESET` before a backend connection exists, lock-script bookkeeping.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::State;
use super::queue::{Hook, Slot};
use crate::acl::{Context, Reason};
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
            Local::Auth(None, _) if self.live.users.default_user().nopass() => {
                self.reply(errors::auth_not_configured());
            }
            Local::Auth(user, pass) => match self.login(b"AUTH", user.as_deref(), &pass) {
                Ok(()) => self.reply(Reply::OK),
                Err(e) => self.reply(e),
            },
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
            Local::AclWhoami => {
                let name = self.session.user.clone();
                self.reply(Reply::Bulk(name.unwrap_or(Bytes::from_static(
                    crate::auth::DEFAULT_USER.as_bytes(),
                ))));
            }
            Local::AclUsers => {
                let names = self.live.users.names();
                self.reply(Reply::Array(
                    names
                        .into_iter()
                        .map(|n| Reply::Bulk(Bytes::copy_from_slice(n.as_bytes())))
                        .collect(),
                ));
            }
            Local::AclCat(category) => match crate::acl::cat(category.as_deref()) {
                Some(r) => self.reply(r),
                None => self.reply(errors::err(format_args!(
                    "Unknown category '{}'",
                    String::from_utf8_lossy(category.as_deref().unwrap_or_default())
                ))),
            },
            Local::AclLog(count) => {
                let mut log = self
                    .shared
                    .acl
                    .log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let r = match count {
                    None => {
                        log.reset();
                        Reply::OK
                    }
                    Some(n) => {
                        let n = usize::try_from(n).unwrap_or(usize::MAX);
                        log.reply(n, std::time::Instant::now())
                    }
                };
                drop(log);
                self.reply(r);
            }
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
            if let Err(e) = self.login(b"HELLO", Some(user), pass) {
                self.reply(e);
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

    /// Logs the client in as `user` (`None`: the default user) with
    /// `pass`, checked against the proxy's users: on success the session is
    /// that user's, permissions and all (and with `passthrough.identity =
    /// client` its backend connection logs in the same). A failure is
    /// counted, logged in `ACL LOG` as Redis logs it (`command` is what
    /// tried: `AUTH`, `HELLO`) and against the client's address; past
    /// `server.auth_failure_limit` the address's tries are refused unchecked.
    pub(super) fn login(
        &mut self,
        command: &[u8],
        user: Option<&[u8]>,
        pass: &[u8],
    ) -> Result<(), Reply> {
        let now = std::time::Instant::now();
        let ip = self.me.ip();
        let (limit, window) = self.settings.auth_limit;
        let shared = Arc::clone(&self.shared);
        let (acl, m) = (&shared.acl, &shared.metrics);
        if let Err(wait) = acl.limiter.check(ip, (limit, window), now) {
            m.auth_throttled.fetch_add(1, Ordering::Relaxed);
            return Err(errors::auth_throttled(limit, window, wait));
        }
        let Some(found) = self.live.users.login(user, pass).map(Arc::clone) else {
            m.auth_failures.fetch_add(1, Ordering::Relaxed);
            acl.limiter.failed(ip, window, now);
            self.publish_cmd();
            let mut info = String::new();
            self.me.line(&mut info, self.session.id);
            let name = user.unwrap_or(crate::auth::DEFAULT_USER.as_bytes());
            acl.log.lock().unwrap_or_else(|p| p.into_inner()).add(
                (Reason::Auth, Context::Toplevel),
                command,
                name,
                info,
                now,
            );
            return Err(errors::wrongpass());
        };
        if self.settings.client_identity {
            // The login goes on to the backend on the client's own
            // connection, opened as whoever the client was so far (the
            // backend answers the login itself, not a failed handshake).
            self.attach();
        }
        let s = &mut self.session;
        s.authenticated = true;
        s.user = user.map(Bytes::copy_from_slice);
        s.perms = Some(found);
        if self.settings.client_identity {
            // Set before the backend answers: the requests pipelined after
            // this one must not take a shared connection (the proxy's
            // identity), and a new connection must log in as this user.
            s.backend_auth = Some((s.user.clone(), Bytes::copy_from_slice(pass)));
        }
        self.changed.profile = true;
        Ok(())
    }

    fn set_name(&mut self, name: Bytes) {
        self.send_internal(&[b"CLIENT", b"SETNAME", &name]);
        self.session.name = (!name.is_empty()).then_some(name);
    }
}
