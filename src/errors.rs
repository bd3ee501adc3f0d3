//! Every error a client can receive from the proxy itself is built here, so the
//! texts stay consistent, follow Redis's where Redis has one, and never carry a
//! CR or LF (which would break the reply framing).

use std::fmt::Display;
use std::time::Duration;

use crate::protocol::{ProtocolError, Reply};

/// An error reply with the given code (`ERR`, `NOSCRIPT`, `EXECABORT`...).
pub(crate) fn with_code(code: &str, msg: impl Display) -> Reply {
    let mut text = format!("{code} {msg}");
    if text.contains(['\r', '\n']) {
        text = text.replace(['\r', '\n'], " ");
    }
    Reply::Error(text)
}

/// A plain `ERR ...` reply.
pub(crate) fn err(msg: impl Display) -> Reply {
    with_code("ERR", msg)
}

/// Framing errors: `ERR Protocol error: ...`; the connection is closed after it.
pub(crate) fn protocol(e: &ProtocolError) -> Reply {
    err(e)
}

/// Past `max_clients`.
pub(crate) fn max_clients() -> Reply {
    err("max number of clients reached")
}

/// The client's query buffer grew past its limit before a request completed.
pub(crate) fn query_buffer_limit(limit: usize) -> Reply {
    err(format_args!(
        "Protocol error: query buffer limit of {limit} bytes exceeded"
    ))
}

/// The passthrough backend could not be reached or dropped the connection.
pub(crate) fn backend_unavailable(reason: impl Display) -> Reply {
    err(format_args!("passthrough backend unavailable: {reason}"))
}

/// A backend connection reset by the proxy itself after a reply past one of
/// its own limits: the text says so, and blames no one else.
pub(crate) fn backend_reset(reason: impl Display) -> Reply {
    err(format_args!("passthrough {reason}"))
}

/// A command touches a lock key in a way that is not a lock operation.
pub(crate) fn lock_key_not_allowed(command: &[u8]) -> Reply {
    err(format_args!(
        "'{}' is not allowed on lock keys: lock keys accept only lock operations (SET key token NX [PX|EX|PXAT|EXAT], GET, EXISTS, PTTL, TTL, DEL, UNLINK and the lock scripts)",
        lossy_lower(command)
    ))
}

/// A command mixes lock keys with data keys.
pub(crate) fn mixed_keys(command: &[u8]) -> Reply {
    err(format_args!(
        "'{}' mixes lock keys and data keys: lock keys live only on the lock masters, so send them in separate commands",
        lossy_lower(command)
    ))
}

/// A `SORT` `BY`/`GET` pattern may form lock keys (the shape of Redis
/// Cluster's error for patterns that may reach other slots).
pub(crate) fn lock_pattern(option: &[u8], command: &[u8]) -> Reply {
    err(format_args!(
        "{} option of {} denied by redlock-proxy: keys formed by the pattern may be lock keys, which live only on the lock masters",
        String::from_utf8_lossy(option).to_uppercase(),
        String::from_utf8_lossy(command).to_uppercase(),
    ))
}

/// How [`not_holder`]'s text starts (after `ERR `).
pub(crate) const NOT_HOLDER: &str = "ERR LOCK.FENCE: the lock is not held";

/// A fencing token asked for by someone who does not hold the lock.
pub(crate) fn not_holder() -> Reply {
    Reply::Error(format!(
        "{NOT_HOLDER} with this token (a fencing token goes only to the current holder)"
    ))
}

/// Wrong number of arguments (Redis's text).
pub(crate) fn wrong_arity(command: &[u8]) -> Reply {
    err(format_args!(
        "wrong number of arguments for '{}' command",
        lossy_lower(command)
    ))
}

/// `ERR syntax error`.
pub(crate) fn syntax() -> Reply {
    err("syntax error")
}

/// Not an integer (Redis's text).
pub(crate) fn not_integer() -> Reply {
    err("value is not an integer or out of range")
}

/// Invalid expire time (Redis's text).
pub(crate) fn invalid_expire(command: &str) -> Reply {
    err(format_args!("invalid expire time in '{command}' command"))
}

/// `HELLO` with an unsupported protocol version (Redis's text).
pub(crate) fn noproto() -> Reply {
    with_code("NOPROTO", "unsupported protocol version")
}

/// A command refused while the connection is in RESP2 pub/sub mode (Redis's text).
pub(crate) fn pubsub_context(command: &[u8]) -> Reply {
    err(format_args!(
        "Can't execute '{}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context",
        lossy_lower(command)
    ))
}

/// EXEC of a transaction with a command refused while queueing (Redis's text).
pub(crate) fn execabort() -> Reply {
    with_code(
        "EXECABORT",
        "Transaction discarded because of previous errors.",
    )
}

/// A lock command inside MULTI.
pub(crate) fn lock_in_multi(command: &[u8]) -> Reply {
    err(format_args!(
        "'{}' on a lock key is not allowed inside MULTI: lock operations run on the lock masters and cannot be part of a transaction",
        lossy_lower(command)
    ))
}

/// A command the proxy refused inside MULTI because the backend connection was lost.
pub(crate) fn transaction_lost() -> Reply {
    err(
        "the passthrough backend connection was lost during MULTI; the transaction will be discarded",
    )
}

/// `EVALSHA` of a script whose text the proxy does not have (Redis's exact text).
pub(crate) fn noscript() -> Reply {
    with_code("NOSCRIPT", "No matching script. Please use EVAL.")
}

/// A command before authentication (Redis's text).
pub(crate) fn noauth() -> Reply {
    with_code("NOAUTH", "Authentication required.")
}

/// `HELLO` without `AUTH` before authentication (Redis's text).
pub(crate) fn noauth_hello() -> Reply {
    with_code(
        "NOAUTH",
        "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
    )
}

/// `AUTH` from an address past `server.auth_failure_limit`: refused unchecked.
pub(crate) fn auth_throttled(limit: u32, window: Duration, wait: Duration) -> Reply {
    err(format_args!(
        "too many failed authentication attempts from this address ({limit} within {}s, server.auth_failure_limit): try again in {}s",
        window.as_secs(),
        wait.as_secs().max(1)
    ))
}

/// An `ACL` subcommand that changes users, or reads them as Redis stores them.
pub(crate) fn acl_not_served(sub: &[u8]) -> Reply {
    err(format_args!(
        "ACL {} is not served by redlock-proxy: its users and their rules live in its configuration ([[users]] rules), reloaded on SIGHUP",
        String::from_utf8_lossy(sub).to_uppercase()
    ))
}

/// `AUTH` / `HELLO AUTH`: wrong password, unknown or disabled user (Redis's text).
pub(crate) fn wrongpass() -> Reply {
    with_code(
        "WRONGPASS",
        "invalid username-password pair or user is disabled.",
    )
}

/// `AUTH` when no password is configured (Redis's text).
pub(crate) fn auth_not_configured() -> Reply {
    err(
        "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
    )
}

/// A client name with spaces or newlines (Redis's text).
pub(crate) fn bad_client_name() -> Reply {
    err("Client names cannot contain spaces, newlines or special characters.")
}

/// A client subcommand the proxy does not know (Redis's text).
pub(crate) fn unknown_subcommand(sub: &[u8], command: &str) -> Reply {
    err(format_args!(
        "unknown subcommand '{}'. Try {command} HELP.",
        lossy(sub)
    ))
}

/// A lock operation the masters' answers do not decide: which operation, how
/// many masters must agree, and what each master that does not count did.
pub(crate) fn no_quorum(what: &str, quorum: usize, masters: usize, causes: &str) -> Reply {
    with_code(
        "NOQUORUM",
        format_args!(
            "the lock masters' answers do not decide this {what}: {quorum} of {masters} must agree, and too few answered ({causes}); its outcome is unknown, retry"
        ),
    )
}

/// A lock without expiry granted after its client closed its connection.
pub(crate) fn unreleasable_lock() -> Reply {
    err("lock without expiry not kept: the client closed its connection and could never release it")
}

fn lossy(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(128)]);
    s.replace(['\r', '\n'], " ")
}

fn lossy_lower(b: &[u8]) -> String {
    lossy(b).to_ascii_lowercase()
}

/// Redis Cluster's own: a command's keys hash to different slots.
pub(crate) fn crossslot() -> Reply {
    with_code("CROSSSLOT", "Keys in request don't hash to the same slot")
}

/// Redis Cluster's own: no master serves the slot (`cluster-require-full-coverage no`).
pub(crate) fn slot_not_served() -> Reply {
    with_code("CLUSTERDOWN", "Hash slot not served")
}

/// Redis Cluster's own answer to `SELECT n` with n other than 0.
pub(crate) fn select_in_cluster() -> Reply {
    err("SELECT is not allowed in cluster mode")
}

/// A command that concerns one backend connection, or administers the cluster:
/// with a cluster backend there is no one connection it could mean.
pub(crate) fn not_through_cluster(command: &[u8]) -> Reply {
    err(format_args!(
        "'{}' is not supported through a cluster backend: it concerns one connection or administers the cluster (send it to a node directly)",
        lossy_lower(command)
    ))
}

/// `CLIENT TRACKING ... REDIRECT id` naming a client of the proxy that has
/// no backend connection of its own, which alone could receive the
/// invalidations (a subscribed client has one).
pub(crate) fn redirect_without_connection(id: u64) -> Reply {
    err(format_args!(
        "client {id} has no backend connection of its own to receive invalidation messages: subscribe it to __redis__:invalidate first"
    ))
}

/// `AUTH` with a cluster backend and no authentication of the proxy's own:
/// each node's connection authenticates with the URL's credentials.
pub(crate) fn auth_through_cluster() -> Reply {
    err(format_args!(
        "AUTH is not passed to a cluster backend: the proxy authenticates to every node with the URL's credentials (set [server] requirepass or [[users]] to have clients authenticate to the proxy)"
    ))
}

/// `SYNC`/`PSYNC`: a replica or `redis-cli --rdb` must reach the backend
/// itself (the reply is an RDB payload and then a stream, not replies).
pub(crate) fn replication_not_proxied(command: &[u8]) -> Reply {
    err(format_args!(
        "'{}' is not served through redlock-proxy: replication does not pass through it (point the replica, or redis-cli --rdb, at the backend itself)",
        lossy_lower(command)
    ))
}

/// The cluster's topology is not known yet (no node answered).
pub(crate) fn topology_unknown(seed: impl Display) -> Reply {
    with_code(
        "CLUSTERDOWN",
        format_args!("the proxy has not learned the cluster's topology yet (seed {seed})"),
    )
}

/// A request bounced between nodes more than the proxy follows.
pub(crate) fn too_many_redirections(last: impl Display) -> Reply {
    with_code(
        "TRYAGAIN",
        format_args!("too many cluster redirections, last {last}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_crlf_in_errors() {
        let Reply::Error(text) = err("a\r\nb\nc") else {
            panic!("not an error")
        };
        assert_eq!(text, "ERR a  b c");
        let Reply::Error(text) = wrong_arity(b"x\r\ny") else {
            panic!("not an error")
        };
        assert!(!text.contains(['\r', '\n']));
    }

    #[test]
    fn redis_texts() {
        assert_eq!(
            noscript(),
            Reply::Error("NOSCRIPT No matching script. Please use EVAL.".into())
        );
        assert_eq!(
            execabort(),
            Reply::Error("EXECABORT Transaction discarded because of previous errors.".into())
        );
        assert_eq!(
            max_clients(),
            Reply::Error("ERR max number of clients reached".into())
        );
    }
}
