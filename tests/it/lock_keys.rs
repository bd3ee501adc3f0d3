//! Every key of every command is checked: a command that would touch a lock
//! key on the passthrough backend is refused, including the keys Redis's key
//! specs cannot locate (`SORT ... STORE`, `BY`/`GET` patterns, `MIGRATE KEYS`).

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sort_and_migrate_never_reach_lock_keys() {
    let h = Harness::start(3).await;
    let mut c = h.client().await;
    for setup in [
        &["RPUSH", "l", "3", "1", "2"][..],
        &["MSET", "w_1", "30", "w_2", "20", "w_3", "10"],
        &["HSET", "h_1", "f", "one"],
    ] {
        assert!(!c.cmd_str(setup).await.starts_with('-'), "{setup:?}");
    }

    let refused: &[(&[&str], &str)] = &[
        (&["SORT", "l", "STORE", "lock:x"], "mixes lock keys"),
        (
            &["sort", "l", "ALPHA", "store", "lock:x"],
            "mixes lock keys",
        ),
        // The last STORE wins in SORT (its getkeys proc sees only `by`).
        (
            &["SORT", "l", "STORE", "by", "STORE", "lock:x"],
            "mixes lock keys",
        ),
        (&["SORT", "lock:x"], "lock keys accept only lock operations"),
        (&["SORT", "l", "BY", "lock:*"], "BY option of SORT denied"),
        (&["SORT", "l", "BY", "lo*->f"], "BY option of SORT denied"),
        (
            &["SORT", "l", "GET", "#", "GET", "lock:*"],
            "GET option of SORT denied",
        ),
        (
            &["SORT_RO", "l", "GET", "*->f"],
            "GET option of SORT_RO denied",
        ),
        (
            &[
                "MIGRATE",
                "127.0.0.1",
                "1",
                "",
                "0",
                "5",
                "KEYS",
                "lock:a",
                "KEYS",
                "b",
            ],
            "mixes lock keys",
        ),
        (
            &["MIGRATE", "127.0.0.1", "1", "lock:a", "0", "5"],
            "lock keys accept only lock operations",
        ),
    ];
    for (args, error) in refused {
        let r = c.cmd_str(args).await;
        assert!(r.starts_with("-ERR") && r.contains(error), "{args:?}: {r}");
    }
    assert_eq!(
        h.backend.query(&["KEYS", "lock:*"]),
        redis::Value::Array(vec![])
    );
    // Not for nothing: sent straight to Redis, the third one creates the key.
    assert_eq!(
        h.backend
            .query(&["SORT", "l", "STORE", "by", "STORE", "lock:x"]),
        redis::Value::Int(3)
    );
    assert_eq!(h.backend.query_str(&["TYPE", "lock:x"]), "list");

    // Patterns that cannot form a lock key, and data keys, pass through.
    for (args, reply) in [
        (
            &["SORT", "l", "BY", "w_*"][..],
            "*3\r\n$1\r\n3\r\n$1\r\n2\r\n$1\r\n1\r\n",
        ),
        (
            &["SORT", "l", "BY", "nosort", "GET", "#", "GET", "h_*->f"],
            "*6\r\n$1\r\n3\r\n$-1\r\n$1\r\n1\r\n$3\r\none\r\n$1\r\n2\r\n$-1\r\n",
        ),
        (&["SORT", "l", "STORE", "dst"], ":3\r\n"),
        (&["SORT_RO", "l", "LIMIT", "0", "1"], "*1\r\n$1\r\n1\r\n"),
    ] {
        assert_eq!(c.cmd_str(args).await, reply, "{args:?}");
    }
}
