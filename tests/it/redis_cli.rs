//! redis-cli, the tool people test locks with by hand, as a real client.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::common::*;

fn redis_cli(h: &Harness, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &h.addr.port().to_string()])
        .args(args)
        .output()
        .expect("redis-cli is installed (scripts/test.sh installs redis-tools)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_a_hand_session() {
    let h = Harness::start(3).await;
    assert_eq!(redis_cli(&h, &["ping"]), "PONG\n");
    // The README's hand session: acquire, query, release.
    assert_eq!(
        redis_cli(&h, &["SET", "lock:report", "me", "NX", "PX", "30000"]),
        "OK\n"
    );
    assert_eq!(
        redis_cli(&h, &["SET", "lock:report", "you", "NX", "PX", "30000"]),
        "\n"
    );
    assert_eq!(redis_cli(&h, &["GET", "lock:report"]), "me\n");
    let pttl: i64 = redis_cli(&h, &["PTTL", "lock:report"])
        .trim()
        .parse()
        .unwrap();
    assert!((25_000..=30_000).contains(&pttl));
    assert_eq!(
        redis_cli(&h, &["EVAL", RELEASE, "1", "lock:report", "you"]),
        "0\n"
    );
    assert_eq!(
        redis_cli(&h, &["EVAL", RELEASE, "1", "lock:report", "me"]),
        "1\n"
    );
    assert_eq!(redis_cli(&h, &["GET", "lock:report"]), "\n");
    // In RESP3 mode too.
    assert_eq!(
        redis_cli(&h, &["-3", "SET", "lock:report", "me", "NX", "PX", "30000"]),
        "OK\n"
    );
    // Interactive-style errors are shown as such.
    assert!(redis_cli(&h, &["INCR", "lock:report"]).contains("not allowed on lock keys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_mode() {
    let h = Harness::start(3).await;
    let mut input = Vec::new();
    for i in 0..1000 {
        input.extend(enc(&["SET", &format!("pipe:{i}"), &i.to_string()]));
    }
    input.extend(enc(&["SET", "lock:pipe", "t", "NX", "PX", "30000"]));
    let mut child = Command::new("redis-cli")
        .args(["-p", &h.addr.port().to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("errors: 0, replies: 1001"), "{out}");
    assert_eq!(h.backend.get("pipe:999").as_deref(), Some("999"));
    poll(|| {
        h.masters
            .iter()
            .all(|m| m.get("lock:pipe").as_deref() == Some("t"))
    })
    .await;
}
