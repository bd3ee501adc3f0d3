//! Mutual exclusion under chaos: workers on two proxy instances that share three
//! masters loop acquire -> hold briefly -> read -> release on a few keys, while a
//! chaos task pauses, kills and restarts masters one at a time, or stalls two at
//! once (`DEBUG SLEEP`). Every grant's interval is recorded; no two grants of one
//! key may overlap. Every read and release of a held lock answered within the
//! lock's validity must say so (its token, and 1): the masters were slow, not
//! wrong. Only a killed holder may leave them undecided (`NOQUORUM`).
//!
//! A killed master is restarted only after the longest TTL has passed, as the
//! book (limitations) asks of operators (the masters here have no persistence): that is the
//! RedLock precondition the proxy cannot yet enforce by itself.
//!
//! The soak version runs for minutes outside CI:
//! `SOAK_SECONDS=300 cargo test --release --test it chaos::soak -- --ignored --nocapture`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TTL_MS: u64 = 500;

#[derive(Debug, Clone)]
struct Grant {
    key: usize,
    /// When the SET left the client: validity counts from here.
    sent: Instant,
    /// When the OK arrived.
    ok: Instant,
    /// When the worker stopped using the lock (before its release).
    end: Instant,
    worker: usize,
}

#[derive(Debug, Default)]
struct Report {
    grants: Vec<Grant>,
    denials: u64,
    /// No reply in time, or one of no expected form.
    errors: u64,
    /// Reads and releases the masters' answers did not decide (NOQUORUM).
    undecided: u64,
    /// Reads of a held lock, answered within its validity, that did not give its token.
    bad_reads: Vec<String>,
    /// Releases of a held lock, answered within its validity, that did not answer 1.
    bad_releases: Vec<String>,
    faults: u64,
}

/// What faults the chaos task injects.
#[derive(Debug, Clone, Copy)]
struct Faults {
    /// Kill a master and restart it (empty) after the longest TTL.
    kill: bool,
    /// Stall two masters at once with DEBUG SLEEP.
    stall: bool,
}

/// A lock's validity from when its SET was sent: TTL minus drift.
fn validity() -> Duration {
    let ttl = Duration::from_millis(TTL_MS);
    ttl - ttl.mul_f64(0.01) - Duration::from_millis(2)
}

/// Sends one command and reads its reply; `None` after 5 s.
async fn call(c: &mut RawClient, args: &[&str]) -> Option<Vec<u8>> {
    c.send(&enc(args)).await;
    c.try_read(Duration::from_secs(5)).await
}

async fn worker(
    id: usize,
    addr: SocketAddr,
    keys: usize,
    until: Instant,
    report: Arc<Mutex<Report>>,
) {
    let mut c = RawClient::connect(addr).await;
    let mut n = 0u64;
    let ttl = TTL_MS.to_string();
    while Instant::now() < until {
        n += 1;
        let key = fastrand::usize(..keys);
        let name = format!("lock:chaos{key}");
        let token = format!("w{id}-{n}");
        let sent = Instant::now();
        c.send(&enc(&["SET", &name, &token, "NX", "PX", &ttl]))
            .await;
        let Some(reply) = c.try_read(Duration::from_secs(5)).await else {
            report.lock().unwrap().errors += 1;
            c = RawClient::connect(addr).await;
            continue;
        };
        match &reply[..] {
            b"+OK\r\n" => {
                let ok = Instant::now();
                tokio::time::sleep(Duration::from_millis(fastrand::u64(1..5))).await;
                let end = Instant::now();
                let valid_until = sent + validity();
                let read = call(&mut c, &["GET", &name]).await;
                check(
                    &report,
                    read.as_deref(),
                    valid_until,
                    format!("${}\r\n{token}\r\n", token.len()),
                    true,
                );
                let release = call(&mut c, &["EVAL", RELEASE, "1", &name, &token]).await;
                check(
                    &report,
                    release.as_deref(),
                    valid_until,
                    ":1\r\n".into(),
                    false,
                );
                if release.is_none() {
                    c = RawClient::connect(addr).await;
                }
                report.lock().unwrap().grants.push(Grant {
                    key,
                    sent,
                    ok,
                    end,
                    worker: id,
                });
            }
            b"$-1\r\n" => {
                report.lock().unwrap().denials += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
            }
            other => {
                eprintln!("worker {id}: unexpected reply {}", text(other));
                report.lock().unwrap().errors += 1;
            }
        }
    }
}

/// Checks a read's or a release's reply against what a held lock must give,
/// when it came back within the lock's validity.
fn check(
    report: &Mutex<Report>,
    reply: Option<&[u8]>,
    valid_until: Instant,
    want: String,
    read: bool,
) {
    let within = Instant::now() < valid_until;
    let mut r = report.lock().unwrap();
    match reply {
        None => r.errors += 1,
        Some(got) if got.starts_with(b"-NOQUORUM ") => r.undecided += 1,
        Some(got) if got == want.as_bytes() || !within => {}
        Some(got) => {
            let line = format!("wanted {want:?}, got {:?}", text(got));
            if read {
                r.bad_reads.push(line)
            } else {
                r.bad_releases.push(line)
            }
        }
    }
}

/// One fault at a time: pause a master briefly, stall two at once, or kill one
/// and restart it after the longest TTL.
async fn chaos(
    masters: Arc<Mutex<Vec<RedisServer>>>,
    until: Instant,
    report: Arc<Mutex<Report>>,
    faults: Faults,
) {
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..300))).await;
        let i = fastrand::usize(..3);
        let m = Arc::clone(&masters);
        let kind = fastrand::u8(0..3);
        if faults.stall && kind == 2 {
            // DEBUG SLEEP on two masters at once (a fork, an fsync, a slow script).
            let seconds = fastrand::u64(50..150) as f64 / 1000.0;
            let urls: Vec<String> = {
                let all = m.lock().unwrap();
                [i, (i + 1) % 3].iter().map(|&j| all[j].url()).collect()
            };
            let sleepers: Vec<_> = urls
                .into_iter()
                .map(|url| {
                    tokio::task::spawn_blocking(move || {
                        let client = redis::Client::open(url).unwrap();
                        let mut conn = client.get_connection().unwrap();
                        let _: redis::RedisResult<redis::Value> = redis::cmd("DEBUG")
                            .arg("SLEEP")
                            .arg(seconds)
                            .query(&mut conn);
                    })
                })
                .collect();
            for s in sleepers {
                s.await.unwrap();
            }
        } else if !faults.kill || kind == 0 {
            let ms = fastrand::u64(50..300);
            tokio::task::spawn_blocking(move || m.lock().unwrap()[i].pause())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let m = Arc::clone(&masters);
            tokio::task::spawn_blocking(move || m.lock().unwrap()[i].resume())
                .await
                .unwrap();
        } else {
            tokio::task::spawn_blocking(move || m.lock().unwrap()[i].kill())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(TTL_MS + 200)).await;
            let m = Arc::clone(&masters);
            tokio::task::spawn_blocking(move || m.lock().unwrap()[i].restart())
                .await
                .unwrap();
        }
        report.lock().unwrap().faults += 1;
    }
}

/// Grants of one key that overlap, each counted as used until the earlier of its
/// end and its validity (TTL minus drift, from when its SET was sent).
fn violations(grants: &[Grant]) -> Vec<(Grant, Grant)> {
    let ttl = Duration::from_millis(TTL_MS);
    let validity = ttl - ttl.mul_f64(0.01) - Duration::from_millis(2);
    let mut by_key: HashMap<usize, Vec<&Grant>> = HashMap::new();
    for g in grants {
        by_key.entry(g.key).or_default().push(g);
    }
    let mut bad = Vec::new();
    for list in by_key.values_mut() {
        list.sort_by_key(|g| g.ok);
        for w in list.windows(2) {
            let used_until = w[0].end.min(w[0].sent + validity);
            if used_until > w[1].ok {
                bad.push((w[0].clone(), w[1].clone()));
            }
        }
    }
    bad
}

async fn run(seconds: u64, workers: usize, keys: usize, faults: Faults) -> Report {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    let shutdown = CancellationToken::new();
    let addrs = [
        spawn_proxy(&masters, &backend, &shutdown, |_| {}).await.0,
        spawn_proxy(&masters, &backend, &shutdown, |_| {}).await.0,
    ];
    let masters = Arc::new(Mutex::new(masters));
    let report = Arc::new(Mutex::new(Report::default()));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in 0..workers {
        tasks.push(tokio::spawn(worker(
            id,
            addrs[id % 2],
            keys,
            until,
            Arc::clone(&report),
        )));
    }
    tasks.push(tokio::spawn(chaos(
        Arc::clone(&masters),
        until,
        Arc::clone(&report),
        faults,
    )));
    for t in tasks {
        t.await.unwrap();
    }
    shutdown.cancel();
    let mut r = report.lock().unwrap();
    std::mem::take(&mut *r)
}

fn summarize(r: &Report) -> String {
    format!(
        "{} grants, {} denials, {} errors, {} undecided, {} bad reads, {} bad releases, {} faults injected, {} violations",
        r.grants.len(),
        r.denials,
        r.errors,
        r.undecided,
        r.bad_reads.len(),
        r.bad_releases.len(),
        r.faults,
        violations(&r.grants).len()
    )
}

/// What every chaos run must show.
fn assert_sound(r: &Report) {
    let bad = violations(&r.grants);
    assert!(
        bad.is_empty(),
        "overlapping grants: {:?}",
        &bad[..bad.len().min(3)]
    );
    assert!(
        r.grants.len() > 100,
        "too few grants to mean anything: {}",
        summarize(r)
    );
    assert!(r.faults >= 5, "too few faults injected: {}", summarize(r));
    assert_eq!(
        r.errors,
        0,
        "no client may hang or get an error: {}",
        summarize(r)
    );
    assert!(
        r.bad_reads.is_empty(),
        "{:?}",
        &r.bad_reads[..r.bad_reads.len().min(3)]
    );
    assert!(
        r.bad_releases.is_empty(),
        "{:?}",
        &r.bad_releases[..r.bad_releases.len().min(3)]
    );
    let workers: std::collections::HashSet<usize> = r.grants.iter().map(|g| g.worker).collect();
    assert!(
        workers.len() >= 6,
        "grants went to few workers: {workers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_exclusion_under_chaos() {
    let r = run(
        6,
        8,
        3,
        Faults {
            kill: true,
            stall: true,
        },
    )
    .await;
    println!("chaos: {}", summarize(&r));
    assert_sound(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_masters_delay_answers_but_never_change_them() {
    let r = run(
        5,
        8,
        3,
        Faults {
            kill: false,
            stall: true,
        },
    )
    .await;
    println!("stalls: {}", summarize(&r));
    assert_sound(&r);
    // Nothing was down: every read and release was decided.
    assert_eq!(r.undecided, 0, "{}", summarize(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run by hand (see the module docs)"]
async fn soak() {
    let seconds = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let r = run(
        seconds,
        16,
        4,
        Faults {
            kill: true,
            stall: true,
        },
    )
    .await;
    println!("soak, {seconds} s: {}", summarize(&r));
    assert!(violations(&r.grants).is_empty());
    assert!(
        r.bad_reads.is_empty() && r.bad_releases.is_empty(),
        "{}",
        summarize(&r)
    );
}

#[test]
fn the_checker_catches_an_overlap() {
    let t0 = Instant::now();
    let ms = Duration::from_millis;
    let g = |key, sent: u64, ok: u64, end: u64| Grant {
        key,
        sent: t0 + ms(sent),
        ok: t0 + ms(ok),
        end: t0 + ms(end),
        worker: 0,
    };
    assert!(violations(&[g(0, 0, 1, 10), g(0, 11, 12, 20)]).is_empty());
    assert_eq!(violations(&[g(0, 0, 1, 10), g(0, 5, 6, 20)]).len(), 1);
    // Different keys never conflict.
    assert!(violations(&[g(0, 0, 1, 10), g(1, 5, 6, 20)]).is_empty());
    // A holder that overstays its validity is not a violation of the lock.
    assert!(violations(&[g(0, 0, 1, 900), g(0, 600, 601, 700)]).is_empty());
}
