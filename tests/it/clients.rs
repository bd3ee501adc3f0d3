//! Zero code change, proven: real client libraries, installed at pinned versions
//! by `scripts/install-clients.sh`, each pointed at one proxy with 3 masters
//! behind it. Every script inspects the masters directly.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An installed client environment (`target/clients/<name>`).
pub(crate) fn client_env(name: &str) -> PathBuf {
    let dir = root().join("target/clients").join(name);
    assert!(
        dir.join(".installed").exists(),
        "client libraries are not installed: run scripts/install-clients.sh (scripts/test.sh runs it)"
    );
    dir
}

async fn harness() -> Harness {
    Harness::start_with(3, |c| {
        // pottery's keys are redlock:NAME, redis-semaphore's mutex:NAME and
        // semaphore:NAME, npm redis-lock's lock.NAME, simple-redis-mutex's
        // @simple-redis-mutex:lock-NAME.
        c.redlock.lock_patterns = [
            "lock:*",
            "redlock:*",
            "mutex:*",
            "semaphore:*",
            "lock.*",
            "@simple-redis-mutex:lock-*",
        ]
        .map(String::from)
        .to_vec();
        // The scripts check that a grant reaches every master shortly after
        // the quorum. With the default 50 ms node timeout, a master starved of
        // CPU for that long by the rest of the suite is left out (its request
        // is dropped or answered too late), which RedLock allows but the
        // check does not: these masters are healthy, so votes wait for them
        // (up to a tenth of the TTL).
        patient(c);
    })
    .await
}

fn ports(h: &Harness) -> String {
    h.masters
        .iter()
        .map(|m| m.port.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs a test program against the harness; fails the test with its output if it fails.
pub(crate) async fn run(
    h: &Harness,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .env("PROXY_PORT", h.addr.port().to_string())
        .env("MASTER_PORTS", ports(h))
        .env("BACKEND_PORT", h.backend.port.to_string())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish", program.display()))
        .expect("start the test program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        program.display(),
        out.status
    );
    stdout
}

async fn python(env: &str, script: &str, extra: &[(&str, &str)]) -> String {
    let h = harness().await;
    let py = client_env(env).join("bin/python");
    let script = root().join("tests/clients/python").join(script);
    run(&h, &py, &[script.to_str().unwrap()], extra).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_extensions_obey_max_ttl_and_are_judged_on_the_ttl_that_results() {
    let h = Harness::start_with(3, |c| {
        c.redlock.max_ttl = Duration::from_secs(60);
    })
    .await;
    let py = client_env("py-redis8").join("bin/python");
    let script = root().join("tests/clients/python/redis_py_ttl_policy.py");
    let out = run(&h, &py, &[script.to_str().unwrap()], &[]).await;
    assert!(out.contains("redis-py ttl policy: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_8_default_resp3() {
    let out = python("py-redis8", "redis_py_lock.py", &[("PROTOCOL", "default")]).await;
    assert!(out.contains("redis-py 8.1.0-default: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_8_resp2() {
    let out = python("py-redis8", "redis_py_lock.py", &[("PROTOCOL", "2")]).await;
    assert!(out.contains("redis-py 8.1.0-2: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_5_resp2() {
    let out = python("py-redis5", "redis_py_lock.py", &[("PROTOCOL", "2")]).await;
    assert!(out.contains("redis-py 5.3.1-2: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_5_resp3() {
    let out = python("py-redis5", "redis_py_lock.py", &[("PROTOCOL", "3")]).await;
    assert!(out.contains("redis-py 5.3.1-3: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_library_redlock_1_2_0() {
    let out = python("py-redis8", "seed_redlock.py", &[]).await;
    assert!(out.contains("redlock 1.2.0"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_py_1_0_8() {
    let out = python("py-redlockpy", "redlock_py.py", &[]).await;
    assert!(out.contains("redlock-py 1.0.8: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pottery_3_0_1() {
    let out = python("py-redis8", "pottery_redlock.py", &[]).await;
    assert!(out.contains("pottery 3.0.1: ok"), "{out}");
}

async fn node(env: &str, script: &str) -> String {
    let h = harness().await;
    let dir = client_env(env);
    let script = root().join("tests/clients/node").join(script);
    run(
        &h,
        Path::new("node"),
        &[script.to_str().unwrap()],
        &[("CLIENT_ENV", dir.to_str().unwrap())],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redlock_4_with_ioredis_4() {
    let out = node("node-redlock4", "redlock4.js").await;
    assert!(out.contains("node-redlock 4.2.0 + ioredis 4: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_redlock_5_with_ioredis_6() {
    let out = node("node-redlock5", "redlock5.js").await;
    assert!(
        out.contains("node-redlock 5.0.0-beta.2 + ioredis 6: ok"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sesamecare_redlock_with_ioredis_5() {
    let out = node("node-sesame", "sesame.js").await;
    assert!(
        out.contains("@sesamecare-oss/redlock 1.4.0 + ioredis 5: ok"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_semaphore_mutex_semaphore_multisemaphore_with_ioredis_5() {
    let out = node("node-semaphore", "semaphore.js").await;
    assert!(
        out.contains("redis-semaphore 5.8.0 Mutex, Semaphore, MultiSemaphore + ioredis 5: ok"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_universal_simple_lock_with_ioredis_5() {
    let out = node("node-universal", "universal.js").await;
    assert!(
        out.contains("redlock-universal 0.8.5 + ioredis 5: ok"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aioredlock_with_the_proxy_as_its_one_instance() {
    let out = python("py-aioredlock", "aioredlock_check.py", &[]).await;
    assert!(out.contains("aioredlock 0.7.3: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_redis_lock_waiters_wake_at_release() {
    let out = python("py-redis-lock", "python_redis_lock_check.py", &[]).await;
    assert!(out.contains("python-redis-lock 4.0.1: ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rslock_with_the_proxy_as_its_single_node() {
    let h = harness().await;
    let rl = rslock::LockManager::new(vec![format!("redis://{}", h.addr)]);
    let lock = rl
        .lock("lock:rs", Duration::from_secs(10))
        .await
        .expect("rslock acquires");
    let token = lock.val.clone();
    let held = |h: &Harness| {
        h.masters
            .iter()
            .filter(|m| match m.query(&["GET", "lock:rs"]) {
                redis::Value::BulkString(v) => v == token,
                _ => false,
            })
            .count()
    };
    poll(|| held(&h) == 3).await;
    assert!(
        rl.lock("lock:rs", Duration::from_secs(10)).await.is_err(),
        "a second lock is refused"
    );
    let lock = rl
        .extend(&lock, Duration::from_secs(30))
        .await
        .expect("rslock extends");
    poll(|| h.masters.iter().all(|m| m.pttl("lock:rs") > 25_000)).await;
    rl.unlock(&lock).await;
    assert_eq!(held(&h), 0);
    assert!(h.masters.iter().all(|m| m.get("lock:rs").is_none()));
}

/// 16 workers across three Python lock libraries contend for one key through one
/// proxy: never two holders at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_across_16_python_workers() {
    let h = harness().await;
    let script = root().join("tests/clients/python/mutex_worker.py");
    let script = script.to_str().unwrap();
    let mut workers = Vec::new();
    for i in 0..16 {
        let (env, lib) = match i % 3 {
            0 => ("py-redis8", "redis-py"),
            1 => ("py-redis8", "redlock"),
            _ => ("py-redlockpy", "redlock-py"),
        };
        let py = client_env(env).join("bin/python");
        workers.push((py, lib));
    }
    let args: Vec<[&str; 3]> = workers.iter().map(|(_, lib)| [script, *lib, "3"]).collect();
    let runs = workers
        .iter()
        .zip(&args)
        .map(|((py, _), args)| run(&h, py, args, &[]));
    let outputs = futures_util::future::join_all(runs).await;
    let mut intervals: Vec<(f64, f64, String)> = Vec::new();
    let mut by_lib = std::collections::BTreeMap::<String, u64>::new();
    for out in &outputs {
        let line = out.lines().last().unwrap_or_default();
        let lib = json_field(line, "lib");
        let grants: u64 = json_field(line, "grants").parse().unwrap();
        let violations: u64 = json_field(line, "violations").parse().unwrap();
        assert_eq!(violations, 0, "a worker saw another holder inside: {line}");
        *by_lib.entry(lib.clone()).or_default() += grants;
        for (s, e) in parse_intervals(line) {
            intervals.push((s, e, lib.clone()));
        }
    }
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in intervals.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "overlapping grants: {:?} and {:?}",
            w[0],
            w[1]
        );
    }
    let total: u64 = by_lib.values().sum();
    println!("mutual exclusion: {total} grants, by library {by_lib:?}, no overlap");
    assert!(total >= 50, "too few grants to mean anything: {by_lib:?}");
    assert_eq!(by_lib.len(), 3, "every library got the lock: {by_lib:?}");
    assert!(h.masters.iter().all(|m| m.get("lock:mutex").is_none()));
}

/// A scalar field of the worker's one-line JSON.
fn json_field(line: &str, field: &str) -> String {
    let start = line
        .find(&format!("\"{field}\": "))
        .unwrap_or_else(|| panic!("{field} in {line}"))
        + field.len()
        + 4;
    let rest = &line[start..];
    let end = rest.find([',', '}']).unwrap();
    rest[..end].trim().trim_matches('"').to_string()
}

fn parse_intervals(line: &str) -> Vec<(f64, f64)> {
    let start = line.find("\"intervals\": [").unwrap() + "\"intervals\": [".len();
    let body = &line[start..line.rfind(']').unwrap()];
    body.split(']')
        .filter_map(|pair| {
            let pair = pair.trim_start_matches([',', ' ', '[']);
            let (a, b) = pair.split_once(',')?;
            Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
        })
        .collect()
}

/// Symfony Lock's `RedisStore` (Debian's `php-symfony-lock`), unchanged,
/// over php-redis or Predis (`client`).
async fn symfony(client: &str) -> String {
    let h = harness().await;
    let script = root().join("tests/clients/php/symfony_lock.php");
    run(
        &h,
        Path::new("php"),
        &[script.to_str().unwrap(), client],
        &[],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symfony_lock_with_php_redis() {
    let out = symfony("phpredis").await;
    assert!(out.contains("symfony lock 5.4 (phpredis): ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symfony_lock_with_predis() {
    let out = symfony("predis").await;
    assert!(out.contains("symfony lock 5.4 (predis): ok"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_redis_mutex_and_redis_lock() {
    let out = node("node-mutexes", "mutexes.js").await;
    assert!(
        out.contains("simple-redis-mutex 3.0.0 + redis 5, redis-lock 1.0.0 + redis 4: ok"),
        "{out}"
    );
}
