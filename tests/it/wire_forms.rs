//! What libraries that cannot run here (Go redsync and bsm/redislock, Java Spring
//! RedisLockRegistry, ShedLock and Redisson, Ruby redlock-rb) send on the wire,
//! from `clients.md` and `lock-scripts.tsv`. Their script texts are not available
//! here, so these tests cover their acquisition forms and the NOSCRIPT handshake
//! they rely on; the reply conventions of their scripts are unit-tested in
//! `src/redlock/vote.rs`.

use crate::common::*;

const NOSCRIPT: &str = "-NOSCRIPT No matching script. Please use EVAL.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redsync_go_redis_and_redigo_acquisition_forms() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    // go-redis: lowercase, seconds when the expiry is whole seconds (default 8 s).
    assert_eq!(
        c.cmd_str(&["set", "lock:rs1", "v1", "ex", "8", "nx"]).await,
        "+OK\r\n"
    );
    poll(|| {
        h.masters
            .iter()
            .all(|m| (7_000..=8_000).contains(&m.pttl("lock:rs1")))
    })
    .await;
    assert_eq!(
        c.cmd_str(&["set", "lock:rs2", "v2", "px", "1500", "nx"])
            .await,
        "+OK\r\n"
    );
    // redigo: uppercase, NX first.
    assert_eq!(
        c.cmd_str(&["SET", "lock:rs3", "v3", "NX", "PX", "1500"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(
        c.cmd_str(&["set", "lock:rs1", "other", "ex", "8", "nx"])
            .await,
        "$-1\r\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_clients_get_the_noscript_prefix_they_test_for() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    for sha in [
        "e950836ed1e694540c503ef9972b8de518044d3b", // redsync v4.12+ release
        "d75bb8b5bd13532ddedd17762e772346e39b321e", // redsync v4 extend
        "00583931c4e4d483f6233879c133c71ed5393f9d", // redsync release
        "cf0e94b2e9ffc7e04395cf88f7583fc309985910", // bsm/redislock release
        "a7aba3bc5d6e99b3003da8b9d80a63b9f4092ecf", // bsm/redislock refresh
        "6484da7d58920897fdc22b7f9afd1a3d47524ea8", // bsm/redislock TTL
        "eb0c00d98f6f33b4262419a509002884540f30be", // bsm/redislock 0.10 obtain (multi-key)
    ] {
        // go-redis sends lowercase evalsha and detects "NOSCRIPT " by prefix.
        let r = c
            .cmd_str(&["evalsha", sha, "1", "lock:g", "value", "8000"])
            .await;
        assert_eq!(r, NOSCRIPT, "{sha}");
        assert!(r[1..].starts_with("NOSCRIPT "));
        assert_eq!(c.cmd_str(&["script", "exists", sha]).await, "*1\r\n:0\r\n");
    }
    // The same SHA on a data key is not the proxy's business: the backend answers.
    let r = c
        .cmd_str(&[
            "evalsha",
            "e950836ed1e694540c503ef9972b8de518044d3b",
            "1",
            "data",
            "v",
        ])
        .await;
    assert!(r.starts_with("-NOSCRIPT"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spring_redis_lock_registry_and_redlock_rb_handshakes() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    // Spring Data Redis: EVALSHA, EVAL on NOSCRIPT. SPIN_LOCK's scripts are supported.
    for sha in [
        "175897a4e379e99e79a54937be09226f76cdcfe5", // obtain
        "879e0f7b8d83c3266d4e996627438c05dbda0b89", // renew
        "f0f9038aa2b6d6c3436c72d147573ea2a58f0ef2", // SPIN_LOCK release
        // redlock-rb: EVALSHA of the precomputed SHA, SCRIPT LOAD on NOSCRIPT.
        "ceb2b2062e40c51a2b3963fd078bc71f11bdc65c",
        "8e4905cee18e7c3188d10f2b8b170e403baed34f",
        "78d2ca48a6dc9ef6892059792a3a0c5237733d64",
    ] {
        assert_eq!(
            c.cmd_str(&["EVALSHA", sha, "1", "lock:sp", "client-1", "30000"])
                .await,
            NOSCRIPT
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_lock_scripts_say_why() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    let r = c
        .cmd_str(&[
            "EVALSHA",
            "149c5a8bf18676fd99e9e6e24923bd64d9b62f94",
            "1",
            "lock:rd",
            "30000",
            "id:1",
        ])
        .await;
    assert!(
        r.starts_with("-ERR Redisson RLock acquire script") && r.contains("reentrancy"),
        "{r}"
    );
    let r = c
        .cmd_str(&[
            "EVALSHA",
            "7a71e9443a2a41539fb115a5a27d5a748a871aed",
            "1",
            "lock:sp",
            "id",
            "chan",
        ])
        .await;
    assert!(r.contains("PUB_SUB_LOCK") && r.contains("SPIN_LOCK"), "{r}");
    assert!(h.masters.iter().all(|m| m.get("lock:rd").is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shedlock_default_mode() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    // Acquire with SET NX PX, unlock with a plain DEL: both supported.
    assert_eq!(
        c.cmd_str(&["SET", "lock:job", "ADDED:host", "NX", "PX", "30000"])
            .await,
        "+OK\r\n"
    );
    assert_eq!(c.cmd_str(&["DEL", "lock:job"]).await, ":1\r\n");
    assert!(h.masters.iter().all(|m| m.get("lock:job").is_none()));
    // Its "keep until lockAtLeastFor" update is SET XX PX, with no owner check: refused.
    let r = c
        .cmd_str(&["SET", "lock:job", "ADDED:host", "XX", "PX", "1000"])
        .await;
    assert!(
        r.starts_with("-ERR lock keys accept only lock operations"),
        "{r}"
    );
}
