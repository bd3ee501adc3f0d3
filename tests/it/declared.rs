//! Scripts declared in `[[redlock.scripts]]` with the conventions real
//! libraries use: the token in another argument than the first, and failure by
//! error reply. Whatever the declaration, a refusal never reads as a grant.

use crate::common::*;
use redlock_proxy::config::{ScriptConfig, ScriptFailure, ScriptKind, ScriptSuccess};

/// An acquire script in the style of libraries that refuse with an error and
/// read any other reply as success; the database index comes first, then the
/// token and the TTL.
const ACQUIRE: &str = "if redis.call('exists', KEYS[1]) == 1 then return redis.error_reply('ERROR') end redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3]) return ARGV[2]";
/// Its release: an error for "not yours".
const RELEASE: &str = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return redis.error_reply('not yours') end";

fn sha(text: &str) -> String {
    sha1_smol::Sha1::from(text).digest().to_string()
}

fn declaration(text: &str, kind: ScriptKind) -> ScriptConfig {
    ScriptConfig {
        sha1: sha(text).try_into().unwrap(),
        kind,
        ttl_arg: std::num::NonZeroUsize::new(3),
        token_arg: std::num::NonZeroUsize::new(2),
        success: Some(ScriptSuccess::Any),
        failure: None,
    }
}

async fn harness() -> Harness {
    Harness::start_with(3, |c| {
        c.redlock
            .scripts
            .push(declaration(ACQUIRE, ScriptKind::Acquire));
        c.redlock.scripts.push(ScriptConfig {
            ttl_arg: None,
            token_arg: None,
            success: Some(ScriptSuccess::One),
            failure: Some(ScriptFailure::Error),
            ..declaration(RELEASE, ScriptKind::Release)
        });
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_error_reply_is_never_a_grant() {
    let h = harness().await;
    let mut a = h.client().await;
    let mut b = h.client().await;
    let acquire = |token: &'static str| ["EVAL", ACQUIRE, "1", "lock:e", "0", token, "30000"];
    assert_eq!(a.cmd_str(&acquire("alice")).await, "$5\r\nalice\r\n");
    poll(|| holders(&h, "lock:e", "alice") == 3).await;
    // Every master refuses with an error: the library must read failure.
    let r = b.cmd_str(&acquire("bob")).await;
    assert!(r.starts_with("-LOCKFAILED "), "{r}");
    assert_eq!(holders(&h, "lock:e", "alice"), 3);
    // The same by EVALSHA.
    let r = b
        .cmd_str(&["EVALSHA", &sha(ACQUIRE), "1", "lock:e", "0", "bob", "30000"])
        .await;
    assert!(r.starts_with("-LOCKFAILED "), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_acquisition_is_cleaned_up_with_the_declared_token_argument() {
    let h = harness().await;
    // Two masters hold another owner's lock; the third grants, alone.
    h.masters[0].query(&["SET", "lock:t", "other"]);
    h.masters[1].query(&["SET", "lock:t", "other"]);
    let mut c = h.client().await;
    let r = c
        .cmd_str(&["EVAL", ACQUIRE, "1", "lock:t", "0", "mine", "30000"])
        .await;
    assert!(r.starts_with("-LOCKFAILED "), "{r}");
    // Released where it was set: the token is ARGV[2], not the "0" before it.
    poll(|| holders(&h, "lock:t", "mine") == 0).await;
    assert_eq!(holders(&h, "lock:t", "other"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_fails_by_error_never_reads_as_released() {
    let h = harness().await;
    let mut a = h.client().await;
    assert_eq!(
        a.cmd_str(&["EVAL", ACQUIRE, "1", "lock:r", "0", "alice", "30000"])
            .await,
        "$5\r\nalice\r\n"
    );
    poll(|| holders(&h, "lock:r", "alice") == 3).await;
    let r = a.cmd_str(&["EVAL", RELEASE, "1", "lock:r", "bob"]).await;
    assert!(r.starts_with('-'), "not an error: {r}");
    assert_eq!(holders(&h, "lock:r", "alice"), 3);
    assert_eq!(
        a.cmd_str(&["EVAL", RELEASE, "1", "lock:r", "alice"]).await,
        ":1\r\n"
    );
    poll(|| holders(&h, "lock:r", "alice") == 0).await;
}
