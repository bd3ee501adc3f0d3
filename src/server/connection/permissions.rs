//! Every request is checked against the client's user before it runs
//! (`acl`): a refusal takes the request's place in the reply order like any
//! other refusal, is logged for `ACL LOG`, and inside `MULTI` makes `EXEC`
//! abort, as in Redis. With `passthrough.identity = client`, a login the
//! proxy accepted goes on to the backend, which must accept it too.

use std::sync::atomic::Ordering;

use super::State;
use crate::acl::{self, Context, Refusal};
use crate::command::{Command, CommandSpec, Effect, Local, access};
use crate::metrics::LockKind;
use crate::protocol::{ArgList, Args, Reply};

impl State {
    /// Whether the client's user may run `cmd` (classified from `args`).
    /// The proxy's own refusals come after permissions, as a Redis
    /// command's own errors do; those Redis reports before permissions
    /// (unknown command, wrong arity) pass here (see [`acl::User::check`]).
    pub(super) fn permitted(
        &self,
        args: &Args<'_>,
        cmd: &Command,
        spec: Option<&'static CommandSpec>,
    ) -> Result<(), Refusal> {
        if !self.session.authenticated {
            return Ok(());
        }
        let user = match &self.session.perms {
            Some(u) => u,
            None => self.live.users.default_user(),
        };
        // A lock operation needs what it does, whatever the command that
        // carries it: a script the proxy knows only reads, or writes.
        let need = match cmd {
            Command::Lock(op) if op.kind() == LockKind::Query => Some(access::READ),
            Command::Lock(_) => Some(access::WRITE),
            _ => None,
        };
        user.check(args, spec, need)
    }

    /// Counts and logs a refusal, and gives its reply.
    pub(super) fn refused_by_acl(&mut self, args: &Args<'_>, r: &Refusal) -> Reply {
        self.shared
            .metrics
            .acl_denied
            .fetch_add(1, Ordering::Relaxed);
        let context = if self.session.transaction.in_multi() {
            Context::Multi
        } else {
            Context::Toplevel
        };
        let Some((reason, object)) = acl::log_object(r, args) else {
            return acl::noperm(r);
        };
        self.publish_cmd();
        let mut info = String::new();
        self.me.line(&mut info, self.session.id);
        let user = self
            .session
            .user
            .as_deref()
            .unwrap_or(crate::auth::DEFAULT_USER.as_bytes());
        self.shared
            .acl
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(
                (reason, context),
                object,
                user,
                info,
                std::time::Instant::now(),
            );
        acl::noperm(r)
    }

    /// With `passthrough.identity = client`: a login (`AUTH`, `HELLO ...
    /// AUTH`) is checked by the proxy, and once it passes, sent on to the
    /// backend, whose answer the client gets. Any other command is as it was.
    pub(super) fn login_through(&mut self, args: &Args<'_>, cmd: Command) -> Command {
        if !self.settings.client_identity {
            return cmd;
        }
        match cmd {
            Command::Local(Local::Auth(user, pass))
                if user.is_some() || !self.live.users.default_user().nopass() =>
            {
                match self.login(args.arg(0), user.as_deref(), &pass) {
                    Ok(()) => Command::Forward(Effect::Auth(user, pass)),
                    Err(e) => Command::Refuse(e),
                }
            }
            Command::Local(Local::Hello {
                proto,
                auth: Some((user, pass)),
                setname,
            }) => match self.login(args.arg(0), Some(&user), &pass) {
                Ok(()) => Command::Forward(Effect::HelloAuth {
                    proto,
                    user,
                    pass,
                    setname,
                }),
                Err(e) => Command::Refuse(e),
            },
            other => other,
        }
    }
}
