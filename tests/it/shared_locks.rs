//! Read/write locks and counting semaphores under contention and a killed
//! master, with the libraries' own scripts: Symfony Lock's `RedisStore`
//! (read from Debian's `php-symfony-lock`, which the test script installs)
//! and redis-semaphore's `Semaphore` (from its npm package). Workers loop
//! acquire -> hold briefly -> release on one key; every grant's interval is
//! recorded, from its reply to the earlier of its release and its validity.
//! A writer may share no instant with another holder; a semaphore never has
//! more holders at once than its limit. A sixth of the way in, one master is
//! paused (SIGSTOP) for 200 ms; a third of the way in, another is killed:
//! read/write locks go on with the other two; a semaphore of limit 2 needs
//! all three (`quorum_for_limit`) and grants nothing more.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::clients::root;
use crate::common::*;

const TTL_MS: u64 = 2000;

/// Symfony Lock 5.4's scripts, with the server's `TIME` as the clock (what
/// it sends to Redis 5 and later): `save`, `saveRead`, `delete`.
fn symfony_scripts() -> [String; 3] {
    let path = "/usr/share/php/Symfony/Component/Lock/Store/RedisStore.php";
    let src = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (scripts/test.sh installs php-symfony-lock)"));
    let now_code = {
        let at = src
            .find("return '\n                local now = redis.call(\"TIME\")")
            .expect("TIME code");
        let rest = &src[at + "return '".len()..];
        rest[..rest.find("';").expect("end of the TIME code")].to_string()
    };
    let script_of = |function: &str| -> String {
        let at = src
            .find(&format!("public function {function}("))
            .expect(function);
        let rest = &src[at..];
        let start = rest.find("$script = '").expect("script") + "$script = '".len();
        let rest = &rest[start..];
        rest[..rest.find("';").expect("end of script")]
            .replace("'.$this->getNowCode().'", &now_code)
    };
    ["save", "saveRead", "delete"].map(script_of)
}

/// redis-semaphore 5.8.0's `Semaphore` acquire script.
fn semaphore_acquire() -> String {
    let path = root().join(
        "target/clients/node-semaphore/node_modules/redis-semaphore/lib/semaphore/acquire/lua.js",
    );
    let src = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-clients.sh)", path.display()));
    let start = src.find("createEval)(`").expect("script") + "createEval)(`".len();
    src[start..start + src[start..].find("`, 1)").expect("end")].to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
    Seat,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    kind: Kind,
    /// When the acquisition left the client: validity counts from here.
    sent: Instant,
    /// When the grant arrived.
    ok: Instant,
    /// When the holder stopped using it (before its release).
    end: Instant,
}

impl Held {
    fn used_until(&self) -> Instant {
        let ttl = Duration::from_millis(TTL_MS);
        self.end
            .min(self.sent + ttl - ttl.mul_f64(0.01) - Duration::from_millis(2))
    }
}

#[derive(Debug, Default)]
struct Report {
    held: Vec<Held>,
    refused: u64,
    /// Replies that were neither a grant nor a refusal (errors, timeouts).
    other: u64,
}

/// Pairs of holders that shared an instant where one of them wrote.
fn write_overlaps(held: &[Held]) -> Vec<(Held, Held)> {
    let mut bad = Vec::new();
    for (i, a) in held.iter().enumerate() {
        for b in &held[i + 1..] {
            let together = a.ok < b.used_until() && b.ok < a.used_until();
            if together && (a.kind == Kind::Write || b.kind == Kind::Write) {
                bad.push((*a, *b));
            }
        }
    }
    bad
}

/// The most holders at one instant.
fn most_at_once(held: &[Held]) -> usize {
    let mut events: Vec<(Instant, i32)> = held
        .iter()
        .flat_map(|h| [(h.ok, 1), (h.used_until(), -1)])
        .collect();
    // At the same instant an end comes before a start.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn now_ms() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    ms.to_string()
}

/// Loops acquire -> hold 0-3 ms -> release until `until`.
async fn worker(
    id: usize,
    addr: SocketAddr,
    scripts: Arc<Scripts>,
    until: Instant,
    report: Arc<Mutex<Report>>,
) {
    let mut c = RawClient::connect(addr).await;
    let ttl = TTL_MS.to_string();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let token = format!("w{id}-{n}");
        let (kind, acquire, release): (Kind, Vec<String>, Vec<String>) = match &*scripts {
            Scripts::ReadWrite { save, read, delete } => {
                let write = fastrand::u8(..3) == 0;
                let script = if write { save } else { read };
                let kind = if write { Kind::Write } else { Kind::Read };
                let args = [script, "1", "lock:rw", &now_ms(), &token, &ttl];
                let release = [delete.as_str(), "1", "lock:rw", &token];
                (kind, strings(&args), strings(&release))
            }
            Scripts::Semaphore { acquire } => {
                let args = [acquire, "1", "semaphore:s", "2", &token, &ttl, &now_ms()];
                let release = ["ZREM", "semaphore:s", &token];
                (Kind::Seat, strings(&args), strings(&release))
            }
        };
        let sent = Instant::now();
        let acquire: Vec<&str> = acquire.iter().map(String::as_str).collect();
        c.send(&enc(&["EVAL"]
            .into_iter()
            .chain(acquire)
            .collect::<Vec<_>>()))
            .await;
        let Some(reply) = c.try_read(Duration::from_secs(5)).await else {
            report.lock().unwrap().other += 1;
            c = RawClient::connect(addr).await;
            continue;
        };
        match &reply[..] {
            b":1\r\n" => {
                let ok = Instant::now();
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..4))).await;
                let end = Instant::now();
                report.lock().unwrap().held.push(Held {
                    kind,
                    sent,
                    ok,
                    end,
                });
                let release: Vec<&str> = release.iter().map(String::as_str).collect();
                let release = match release[0] {
                    "ZREM" => release,
                    _ => ["EVAL"].into_iter().chain(release).collect(),
                };
                c.send(&enc(&release)).await;
                if c.try_read(Duration::from_secs(5)).await.is_none() {
                    c = RawClient::connect(addr).await;
                }
            }
            b"$-1\r\n" | b":0\r\n" => {
                report.lock().unwrap().refused += 1;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..3))).await;
            }
            _ => report.lock().unwrap().other += 1,
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

enum Scripts {
    ReadWrite {
        save: String,
        read: String,
        delete: String,
    },
    Semaphore {
        acquire: String,
    },
}

/// Runs 6 workers for `seconds` on one proxy over 3 masters, pauses master 1
/// for 200 ms a sixth of the way in and kills master 0 a third of the way in;
/// returns the report and when the kill was done.
async fn run(scripts: Scripts, seconds: u64) -> (Report, Instant) {
    let h = Harness::start_with(3, |c| {
        c.redlock.lock_patterns = vec!["lock:*".into(), "semaphore:*".into()];
    })
    .await;
    let scripts = Arc::new(scripts);
    let report = Arc::new(Mutex::new(Report::default()));
    let start = Instant::now();
    let until = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..6)
        .map(|id| {
            tokio::spawn(worker(
                id,
                h.addr,
                Arc::clone(&scripts),
                until,
                Arc::clone(&report),
            ))
        })
        .collect();
    tokio::time::sleep_until(start + Duration::from_millis(seconds * 1000 / 6)).await;
    h.masters[1].pause();
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.masters[1].resume();
    tokio::time::sleep_until(start + Duration::from_millis(seconds * 1000 / 3)).await;
    let mut h = h;
    h.masters[0].kill();
    let killed = Instant::now();
    for w in workers {
        w.await.unwrap();
    }
    let report = std::mem::take(&mut *report.lock().unwrap());
    (report, killed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_writers_never_overlap_under_contention_and_a_killed_master() {
    let [save, read, delete] = symfony_scripts();
    let (report, killed) = run(Scripts::ReadWrite { save, read, delete }, 3).await;
    let summary = format!(
        "{} held ({} writes), {} refused, {} other",
        report.held.len(),
        report.held.iter().filter(|h| h.kind == Kind::Write).count(),
        report.refused,
        report.other
    );
    eprintln!("read/write: {summary}");
    let bad = write_overlaps(&report.held);
    assert!(bad.is_empty(), "{summary}: {bad:#?}");
    // Contention happened, readers shared, and two masters of three go on.
    assert!(report.refused > 0, "{summary}");
    assert!(
        most_at_once(&report.held) >= 2,
        "{summary}: no readers together"
    );
    let after = report.held.iter().filter(|h| h.sent > killed).count();
    assert!(after > 0, "{summary}: nothing granted after the kill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_never_has_more_holders_than_its_limit() {
    let acquire = semaphore_acquire();
    let (report, killed) = run(Scripts::Semaphore { acquire }, 3).await;
    let summary = format!(
        "{} held, {} refused, {} other",
        report.held.len(),
        report.refused,
        report.other
    );
    eprintln!("semaphore: {summary}");
    assert!(most_at_once(&report.held) <= 2, "{summary}");
    assert!(report.refused > 0, "{summary}");
    assert_eq!(
        most_at_once(&report.held),
        2,
        "{summary}: never two at once"
    );
    // A limit of 2 over 3 voters needs all three: nothing is granted once one
    // is gone (only an acquisition sent before the kill may still be).
    let after = report.held.iter().filter(|h| h.sent > killed).count();
    assert_eq!(after, 0, "{summary}");
}

#[test]
fn the_checkers_catch_what_they_look_for() {
    let t = Instant::now();
    let at = |ms: u64| t + Duration::from_millis(ms);
    let held = |kind, from, to| Held {
        kind,
        sent: at(from),
        ok: at(from),
        end: at(to),
    };
    let readers = [held(Kind::Read, 0, 10), held(Kind::Read, 5, 15)];
    assert!(write_overlaps(&readers).is_empty());
    assert_eq!(most_at_once(&readers), 2);
    let writer = [held(Kind::Read, 0, 10), held(Kind::Write, 9, 15)];
    assert_eq!(write_overlaps(&writer).len(), 1);
    let after = [held(Kind::Write, 0, 10), held(Kind::Write, 10, 15)];
    assert!(write_overlaps(&after).is_empty());
    assert_eq!(most_at_once(&after), 1);
    let seats = [
        held(Kind::Seat, 0, 10),
        held(Kind::Seat, 1, 10),
        held(Kind::Seat, 2, 10),
    ];
    assert_eq!(most_at_once(&seats), 3);
}

/// The proxy's own commands: the same quorum operations over the same data
/// (a read/write set with its write marker, a set of seats).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rwlock_and_semaphore_commands() {
    let h = Harness::start(3).await;
    let zcard = |key: &str, n: i64| {
        (h.masters.iter()).all(|m| m.query(&["ZCARD", key]) == redis::Value::Int(n))
    };
    let mut c = h.client().await;
    let mut say = async |args: &[&str], want: &str| {
        assert_eq!(c.cmd_str(args).await, want, "{args:?}");
    };
    say(&["RWLOCK.READ", "lock:n", "r1", "5000"], ":1\r\n").await;
    say(&["RWLOCK.READ", "lock:n", "r2", "5000"], ":1\r\n").await;
    say(&["RWLOCK.WRITE", "lock:n", "w", "5000"], ":0\r\n").await;
    poll(|| zcard("lock:n", 2)).await;
    say(&["RWLOCK.RELEASE", "lock:n", "r1"], ":1\r\n").await;
    say(&["RWLOCK.RELEASE", "lock:n", "r2"], ":1\r\n").await;
    say(&["RWLOCK.RELEASE", "lock:n", "r2"], ":0\r\n").await;
    say(&["RWLOCK.WRITE", "lock:n", "w", "5000"], ":1\r\n").await;
    say(&["RWLOCK.READ", "lock:n", "r3", "5000"], ":0\r\n").await;
    poll(|| {
        (h.masters.iter()).all(|m| m.query(&["ZSCORE", "lock:n", "__write__"]) != redis::Value::Nil)
    })
    .await;
    say(&["RWLOCK.REFRESH", "lock:n", "w", "60000"], ":1\r\n").await;
    poll(|| h.masters.iter().all(|m| m.pttl("lock:n") > 50_000)).await;
    say(&["RWLOCK.REFRESH", "lock:n", "r3", "60000"], ":0\r\n").await;
    say(&["RWLOCK.RELEASE", "lock:n", "w"], ":1\r\n").await;
    poll(|| zcard("lock:n", 0)).await;

    say(
        &["SEMAPHORE.ACQUIRE", "lock:s", "s1", "2", "5000"],
        ":1\r\n",
    )
    .await;
    say(
        &["SEMAPHORE.ACQUIRE", "lock:s", "s2", "2", "5000"],
        ":1\r\n",
    )
    .await;
    say(
        &["SEMAPHORE.ACQUIRE", "lock:s", "s3", "2", "5000"],
        ":0\r\n",
    )
    .await;
    poll(|| zcard("lock:s", 2)).await;
    say(
        &["SEMAPHORE.REFRESH", "lock:s", "s2", "2", "60000"],
        ":1\r\n",
    )
    .await;
    say(
        &["SEMAPHORE.REFRESH", "lock:s", "s3", "2", "60000"],
        ":0\r\n",
    )
    .await;
    say(&["SEMAPHORE.RELEASE", "lock:s", "s1"], ":1\r\n").await;
    say(
        &["SEMAPHORE.ACQUIRE", "lock:s", "s3", "2", "5000"],
        ":1\r\n",
    )
    .await;
    say(&["SEMAPHORE.RELEASE", "lock:s", "s1"], ":0\r\n").await;
    let refused = c
        .cmd_str(&["SEMAPHORE.ACQUIRE", "data:s", "s", "2", "5000"])
        .await;
    assert!(refused.contains("is not a lock key"), "{refused}");
}
