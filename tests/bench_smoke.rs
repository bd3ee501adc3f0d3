//! A fast smoke run of the benchmark suite's command (`bench/run.py --quick`),
//! so the suite cannot rot. It measures nothing: the full run is by hand.

#[test]
fn the_benchmark_suite_runs() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("python3")
        .arg(root.join("bench/run.py"))
        .args(["--quick", "--out"])
        .arg(out.path())
        .status()
        .expect("python3");
    assert!(status.success(), "bench/run.py --quick failed");
    let json = std::fs::read_to_string(out.path().join("latest.json")).unwrap();
    for section in [
        "passthrough",
        "locks_redis_benchmark_rps",
        "loadgen",
        "seed_library_cycles_per_sec",
        "degraded_one_master_stopped",
        "memory",
        "targets",
    ] {
        assert!(
            json.contains(&format!("\"{section}\"")),
            "{section} missing from the results"
        );
    }
    assert!(out.path().join("latest.md").exists());
}

/// Runs `bench/<script>` with `args` (its `--quick` mode) and checks that its
/// output has every one of `rows`.
#[allow(
    clippy::expect_used,
    reason = "test code: a failed expect is a failed test"
)]
fn quick_run_prints(script: &str, args: &[&str], rows: &[&str]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("bench").join(script))
        .args(args)
        .output()
        .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench/{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in rows {
        assert!(text.contains(row), "{row} missing from:\n{text}");
    }
}

#[test]
fn the_tls_benchmark_runs() {
    quick_run_prints(
        "tls.py",
        &["--quick"],
        &["| proxy TLS |", "| rediss:// masters |"],
    );
}

#[test]
fn the_thread_count_benchmark_runs() {
    quick_run_prints(
        "threads.py",
        &["--quick", "--threads", "1,2"],
        &["| proxy, 1 thread |", "| proxy, 2 threads |"],
    );
}

#[test]
fn the_cluster_benchmark_runs() {
    quick_run_prints(
        "cluster.py",
        &["--quick"],
        &["| cluster, direct", "| cluster, through the proxy |"],
    );
}

#[test]
fn the_spread_benchmark_runs() {
    quick_run_prints(
        "spread.py",
        &["--quick"],
        &[
            "| 16 | proxy, again |",
            "P=1: proxy/direct ≥ 0.90:",
            "P=16: proxy ≥ twemproxy:",
        ],
    );
}

#[test]
fn the_cpu_benchmark_runs() {
    quick_run_prints(
        "cpu.py",
        &["--quick"],
        &[
            "### SET/GET, P=16",
            "| twemproxy |",
            "### lock acquire (SET NX PX)",
            "### release (EVALSHA, key absent)",
            "### read lock (RWLOCK.READ)",
            "### semaphore release (SEMAPHORE.RELEASE, key absent)",
            "| proxy |",
        ],
    );
}

#[test]
fn the_cpu_benchmark_runs_with_acl_rules() {
    quick_run_prints(
        "cpu.py",
        &["--acl", "--quick"],
        &[
            "### SET/GET, P=1",
            "| proxy, no users |",
            "| proxy, user +@all ~* |",
            "| proxy, user with rules |",
            "### lock acquire (SET NX PX)",
        ],
    );
}

#[test]
fn the_cpu_benchmark_runs_over_tls() {
    quick_run_prints(
        "cpu.py",
        &["--tls", "--quick"],
        &[
            "### SET/GET, P=16, TLS clients",
            "| proxy, TLS clients |",
            "| proxy, rediss:// masters |",
        ],
    );
}

#[test]
fn the_cluster_voters_benchmark_runs() {
    quick_run_prints(
        "voters.py",
        &["--quick"],
        &[
            "| proxy, 3 masters |",
            "| proxy, 3 cluster voters x 3 shards |",
            "| cluster voter 2 |",
        ],
    );
}
