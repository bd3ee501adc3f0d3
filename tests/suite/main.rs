//! A client library's own test suite, run through the proxy: redis-py's
//! (its sdist from PyPI, installed by `scripts/install-clients.sh`), the
//! selection of files in [`FILES`], once per protocol, against a proxy on its
//! defaults with three masters. Every test must pass but those
//! `tests/clients/redis-py-suite/deselected.txt` lists, each with its reason:
//! tests that fail against the same redis-server directly too (what they
//! need is not here), and none that fails only through the proxy.
//!
//! A binary of its own: the suite keeps two cores busy for minutes, and
//! runs after the other test binaries, not beside them.
//! `SUITE_TARGET=direct` runs it against the backend instead (to see what
//! fails there); `SUITE_PROTOCOLS=3` runs one protocol.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs,
    dead_code,
    reason = "test code: a failed unwrap is a failed test; the shared harness has more than these tests use"
)]

#[path = "../it/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The files of redis-py's suite this runs: commands, pipelines, pub/sub,
/// connections, pools, locks, scripting, encoding, monitor, functions; sync
/// and asyncio.
const FILES: &[&str] = &[
    "tests/test_commands.py",
    "tests/test_pipeline.py",
    "tests/test_pubsub.py",
    "tests/test_connection.py",
    "tests/test_connection_pool.py",
    "tests/test_lock.py",
    "tests/test_scripting.py",
    "tests/test_encoding.py",
    "tests/test_monitor.py",
    "tests/test_function.py",
    "tests/test_asyncio/test_commands.py",
    "tests/test_asyncio/test_pipeline.py",
    "tests/test_asyncio/test_pubsub.py",
    "tests/test_asyncio/test_connection.py",
    "tests/test_asyncio/test_connection_pool.py",
    "tests/test_asyncio/test_lock.py",
    "tests/test_asyncio/test_scripting.py",
    "tests/test_asyncio/test_encoding.py",
    "tests/test_asyncio/test_monitor.py",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tests not run, by node id (`# reason` after each).
fn deselected() -> Vec<String> {
    let list = root().join("tests/clients/redis-py-suite/deselected.txt");
    std::fs::read_to_string(list)
        .expect("the list of deselected tests")
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `FAILED`/`ERROR` lines of pytest's short summary.
fn failures(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| l.starts_with("FAILED ") || l.starts_with("ERROR "))
        .map(String::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_suite_passes_through_the_proxy() {
    let env = root().join("target/clients/py-redis-suite");
    assert!(
        env.join(".installed").exists(),
        "redis-py's suite is not installed: run scripts/install-clients.sh (scripts/test.sh runs it)"
    );
    let h = Harness::start(3).await;
    let port = match std::env::var("SUITE_TARGET").as_deref() {
        Ok("direct") => h.backend.port,
        _ => h.addr.port(),
    };
    let protocols = std::env::var("SUITE_PROTOCOLS").unwrap_or_else(|_| "2,3".into());
    let deselected = deselected();
    let mut report = Vec::new();
    for proto in protocols.split(',') {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(env.join("bin/python"));
        cmd.current_dir(env.join("source"))
            // `--tb=line`: a long traceback can crash pytest itself (an AST
            // recursion error in formatting it) and end the run.
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-rfE",
                "--tb=line",
            ])
            .arg(format!("--redis-url=redis://127.0.0.1:{port}/0"))
            .arg(format!("--protocol={proto}"))
            .args(FILES)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for id in &deselected {
            cmd.arg("--deselect").arg(id);
        }
        let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
            .await
            .expect("the suite finishes within 10 minutes")
            .expect("start pytest");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let summary = stdout.lines().last().unwrap_or("").to_string();
        println!(
            "RESP{proto}: {summary} ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        let failed = failures(&stdout);
        if !out.status.success() {
            report.push(format!(
                "RESP{proto}: {summary}\n{}\n(stderr: {})",
                if failed.is_empty() {
                    stdout.clone()
                } else {
                    failed.join("\n")
                },
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n\n"));
}
