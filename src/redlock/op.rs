//! The engine's input: a lock operation, parsed and checked by `command::lock`
//! before it gets here, so every variant is one the engine can run.

use std::time::Duration;

use bytes::Bytes;

use super::scripts::Convention;
use crate::metrics::LockKind;

/// A lock operation, with the data it needs copied out of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOp {
    /// `SET key token NX [PX|EX|PXAT|EXAT]`, or `SETNX key token`. `ttl:
    /// None` means no expiry; `Some(ZERO)` is an absolute time already past.
    Acquire {
        /// The lock key.
        key: Bytes,
        /// The owner's token.
        token: Bytes,
        /// The TTL, from when the request was parsed.
        ttl: Option<Duration>,
        /// `PXAT`/`EXAT`: the Unix time (ms) the lock expires at, from which a
        /// later run computes its TTL afresh.
        at_ms: Option<i64>,
        /// `SETNX`: answered 1 / 0 rather than `OK` / nil.
        setnx: bool,
    },
    /// `GET key`.
    Get {
        /// The lock key.
        key: Bytes,
    },
    /// `EXISTS key...`.
    Exists {
        /// The lock keys.
        keys: Vec<Bytes>,
    },
    /// `PTTL key` (`millis`) or `TTL key`.
    Ttl {
        /// The lock key.
        key: Bytes,
        /// PTTL rather than TTL.
        millis: bool,
    },
    /// `DEL` / `UNLINK key...`: force release.
    Delete {
        /// The lock keys.
        keys: Vec<Bytes>,
    },
    /// A known lock script, run on every master (boxed: it is the largest
    /// operation, and every operation is moved through the engine's futures).
    Script(Box<ScriptOp>),
    /// `PEXPIRE key ms`, `EXPIRE key s`, `PEXPIREAT`/`EXPIREAT` (with their
    /// NX/XX/GT/LT options): an extension without an owner check, as on Redis.
    Expire {
        /// The whole command, as the masters get it.
        args: Vec<Bytes>,
        /// The TTL it sets, for validity and `max_ttl`.
        ttl: Duration,
    },
    /// `ZREM key member...` on a semaphore: a release of those seats.
    RemoveSeats {
        /// The lock key.
        key: Bytes,
        /// The seats.
        members: Vec<Bytes>,
    },
    /// `LOCK.FENCE key token`: a fencing token for the current grant.
    Fence {
        /// The lock key.
        key: Bytes,
        /// The holder's token.
        token: Bytes,
    },
    /// `LOCK.ACQUIRE key token ttl_ms`: an acquisition and its fencing token,
    /// answered `[validity_ms, fence]`.
    AcquireFenced {
        /// The lock key.
        key: Bytes,
        /// The owner's token.
        token: Bytes,
        /// The TTL.
        ttl: Duration,
    },
}

/// The tokens of a lock's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tokens {
    /// One token for every key (cloned without allocating: every mutex).
    One(Bytes),
    /// Key `i`'s token is the `i`-th (a batch acquisition).
    PerKey(std::sync::Arc<[Bytes]>),
}

impl Tokens {
    /// The token of key `i`.
    pub fn of(&self, i: usize) -> Option<&Bytes> {
        match self {
            Tokens::One(t) => Some(t),
            Tokens::PerKey(ts) => ts.get(i),
        }
    }

    /// Whether `token` is one of them.
    pub fn contains(&self, token: &Bytes) -> bool {
        match self {
            Tokens::One(t) => t == token,
            Tokens::PerKey(ts) => ts.contains(token),
        }
    }
}

/// How a holder is taken off a master (a refused acquisition, an owed
/// release): only what that holder put there, never another's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeback {
    /// Compare-and-delete of the key's token (a mutex).
    CompareAndDelete,
    /// `ZREM key <members>`: a semaphore's seats.
    Seats(Vec<Bytes>),
    /// The holder's token off a read/write set, with `__write__` when the
    /// token is there (a writer holds the key alone, so the marker is its).
    ReadWrite,
}

/// A lock script call: the client's own script, what it does, and how its
/// replies read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptOp {
    /// The call itself.
    pub call: ScriptCall,
    /// How the script's reply says success.
    pub convention: Convention,
    /// What this call does, resolved from the script's kind and arguments.
    pub action: ScriptAction,
    /// For a split script: its data part, which the caller runs on the
    /// passthrough backend after the vote (the engine never sees data keys).
    pub data_part: Option<DataPart>,
    /// How a holder is taken off a master.
    pub takeback: Takeback,
    /// A semaphore's limit: acquisitions and extensions then need the votes
    /// `quorum::quorum_for_limit` says.
    pub limit: Option<u64>,
}

/// The data part of a split script (`scripts::Split`): a request for the
/// passthrough backend, and when to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataPart {
    /// `EVAL <data part> <data keys> <argv>`, encoded.
    pub request: Bytes,
    /// When, given the lock part's reply.
    pub when: crate::redlock::scripts::DataWhen,
}

impl DataPart {
    /// Whether the data part runs after the lock part answered `reply`.
    pub fn runs_after(&self, reply: &crate::protocol::Reply) -> bool {
        use crate::redlock::scripts::DataWhen;
        match self.when {
            DataWhen::Always => true,
            DataWhen::OnInt(n) => *reply == crate::protocol::Reply::Int(n),
        }
    }
}

/// `EVALSHA sha numkeys keys... argv...`, with the text for masters that lack it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptCall {
    /// The script's SHA1, lowercase hex.
    pub sha: Bytes,
    /// Its text.
    pub text: Bytes,
    /// KEYS.
    pub keys: Vec<Bytes>,
    /// ARGV.
    pub argv: Vec<Bytes>,
}

/// What one script call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptAction {
    /// Takes the lock; on refusal the proxy releases it on every master.
    Acquire {
        /// The owner's token: one for every key, or one per key (a batch).
        tokens: Tokens,
        /// The TTL (`None`: no expiry).
        ttl: Option<Duration>,
    },
    /// Compare-and-pexpire; never releases anything when it fails.
    Extend {
        /// The new TTL when the call sets one; the time added when it `adds`.
        ttl: Option<Duration>,
        /// The TTL argument is added to the TTL left, which the engine reads
        /// first (to check `max_ttl`, and validity on the TTL that results).
        adds: bool,
        /// The owner's token.
        token: Option<Bytes>,
    },
    /// Compare-and-delete.
    Release {
        /// The owner's token, for re-sending to masters the release may have missed.
        token: Option<Bytes>,
    },
    /// Reads the lock; answered from a quorum.
    Query,
}

impl LockOp {
    /// What kind of operation this is, for metrics.
    pub fn kind(&self) -> LockKind {
        match self {
            LockOp::Acquire { .. } | LockOp::AcquireFenced { .. } => LockKind::Acquire,
            LockOp::Get { .. } | LockOp::Exists { .. } | LockOp::Ttl { .. } => LockKind::Query,
            LockOp::Delete { .. } => LockKind::Delete,
            LockOp::RemoveSeats { .. } => LockKind::Release,
            LockOp::Expire { .. } => LockKind::Extend,
            LockOp::Fence { .. } => LockKind::Fence,
            LockOp::Script(s) => match s.action {
                ScriptAction::Acquire { .. } => LockKind::Acquire,
                ScriptAction::Extend { .. } => LockKind::Extend,
                ScriptAction::Release { .. } => LockKind::Release,
                ScriptAction::Query => LockKind::Query,
            },
        }
    }
}
