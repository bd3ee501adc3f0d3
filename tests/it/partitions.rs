//! Jepsen-style: clients on two proxies that share three masters take a lock
//! on a resource, read-modify-write a store that checks fencing tokens, and
//! release, while faults run on a schedule: network partitions between a
//! proxy and a master (both ways, or one way), between clients and a proxy,
//! connections reset or cut in the middle of a reply, masters paused,
//! restarted empty, or with their wall clock stepped forward.
//!
//! The store refuses a read or a write whose fence is lower than one it has
//! seen (Kleppmann's fencing, with reads counted so that an old holder cannot
//! write over an update based on a newer read). A write whose base is not the
//! value it finds would lose an update: that must never happen. Some holders
//! pause past their lease before writing (a GC pause): the fence must refuse
//! them when another holder came in between. Grants of one resource must not
//! overlap within their validity.
//!
//! The long run is behind a flag:
//! `JEPSEN_SECONDS=300 cargo test --release --test it partitions::long_run -- --ignored --nocapture`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::common::fake_clock::FakeClock;
use crate::common::relay::{Cut, Mode, Relay};
use crate::common::*;

const TTL_MS: u64 = 500;

/// One resource in the store.
#[derive(Debug, Default)]
struct Resource {
    /// The highest fence seen on a read or a write.
    fence: i64,
    value: u64,
}

/// What the store said to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    Accepted,
    /// Its fence is lower than one the store has seen.
    Refused,
    /// Refused, and it was based on a value that changed since: without the
    /// fence an update would have been lost.
    Saved,
    /// Accepted, but it was based on a value that changed since: an update
    /// would have been lost.
    Lost,
}

/// A store that checks fencing tokens.
#[derive(Debug, Default)]
struct Store {
    resources: HashMap<usize, Resource>,
}

impl Store {
    /// The value, for a holder of `fence` (`None`: refused, a newer fence was seen).
    fn read(&mut self, key: usize, fence: i64) -> Option<u64> {
        let r = self.resources.entry(key).or_default();
        if fence < r.fence {
            return None;
        }
        r.fence = fence;
        Some(r.value)
    }

    /// Writes `base + 1` for a holder of `fence` that read `base`.
    fn write(&mut self, key: usize, fence: i64, base: u64) -> Written {
        let r = self.resources.entry(key).or_default();
        let lost = r.value != base;
        if fence < r.fence {
            return if lost {
                Written::Saved
            } else {
                Written::Refused
            };
        }
        r.fence = fence;
        r.value = base + 1;
        if lost {
            Written::Lost
        } else {
            Written::Accepted
        }
    }

    fn total(&self) -> u64 {
        self.resources.values().map(|r| r.value).sum()
    }
}

#[derive(Debug, Clone)]
struct Grant {
    key: usize,
    /// When the request left the client: the validity counts from here.
    sent: Instant,
    ok: Instant,
    /// When the holder stopped using the resource.
    end: Instant,
    validity: Duration,
    fence: i64,
}

#[derive(Debug, Default)]
struct Report {
    grants: Vec<Grant>,
    denials: u64,
    /// Acquisitions the masters' answers did not decide (an error reply).
    undecided: u64,
    /// No reply within 2 s (a partition between client and proxy), or a
    /// connection that ended.
    timeouts: u64,
    accepted: u64,
    refused_reads: u64,
    refused_writes: u64,
    /// Writes refused that would have lost an update.
    saved: u64,
    lost: u64,
    /// Holders that paused past their lease before writing.
    pauses: u64,
    faults: HashMap<&'static str, u64>,
}

impl Report {
    fn summary(&self) -> String {
        let mut faults: Vec<_> = self.faults.iter().collect();
        faults.sort();
        format!(
            "{} grants, {} denials, {} undecided, {} timeouts; store: {} writes accepted, {} reads and {} writes refused by the fence ({} of them would have lost an update), {} lost updates; {} holders paused past their lease; {} overlapping grants; faults: {faults:?}",
            self.grants.len(),
            self.denials,
            self.undecided,
            self.timeouts,
            self.accepted,
            self.refused_reads,
            self.refused_writes,
            self.saved,
            self.lost,
            self.pauses,
            overlaps(&self.grants).len(),
        )
    }
}

/// Grants of one resource that overlap, each counted as used until the
/// earlier of its end and its validity.
fn overlaps(grants: &[Grant]) -> Vec<(Grant, Grant)> {
    let mut by_key: HashMap<usize, Vec<&Grant>> = HashMap::new();
    for g in grants {
        by_key.entry(g.key).or_default().push(g);
    }
    let mut bad = Vec::new();
    for list in by_key.values_mut() {
        list.sort_by_key(|g| g.ok);
        for w in list.windows(2) {
            if w[0].end.min(w[0].sent + w[0].validity) > w[1].ok {
                bad.push((w[0].clone(), w[1].clone()));
            }
        }
    }
    bad
}

/// `[validity_ms, fence]` of a `LOCK.ACQUIRE` grant.
fn granted(reply: &[u8]) -> Option<(u64, i64)> {
    let text = std::str::from_utf8(reply).ok()?;
    let parts: Vec<&str> = text.split("\r\n").collect();
    if parts.first() != Some(&"*2") {
        return None;
    }
    Some((
        parts.get(1)?.strip_prefix(':')?.parse().ok()?,
        parts.get(2)?.strip_prefix(':')?.parse().ok()?,
    ))
}

struct State {
    store: Mutex<Store>,
    report: Mutex<Report>,
}

/// One command and its reply; `None` when the connection failed or nothing
/// came within 2 s.
async fn call(c: &mut RawClient, args: &[&str]) -> Option<Vec<u8>> {
    use tokio::io::AsyncWriteExt;
    c.stream.write_all(&enc(args)).await.ok()?;
    c.try_read(Duration::from_secs(2)).await
}

async fn worker(id: usize, addr: SocketAddr, keys: usize, until: Instant, w: Arc<State>) {
    let mut c = RawClient::connect(addr).await;
    let ttl = TTL_MS.to_string();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = fastrand::usize(..keys);
        let name = format!("lock:j{key}");
        let token = format!("w{id}-{n}");
        let sent = Instant::now();
        let Some(reply) = call(&mut c, &["LOCK.ACQUIRE", &name, &token, &ttl]).await else {
            w.report.lock().unwrap().timeouts += 1;
            c = RawClient::connect(addr).await;
            continue;
        };
        let Some((validity, fence)) = granted(&reply) else {
            {
                let mut r = w.report.lock().unwrap();
                match &reply[..] {
                    b"$-1\r\n" => r.denials += 1,
                    _ => r.undecided += 1,
                }
            }
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..5))).await;
            continue;
        };
        let ok = Instant::now();
        let base = w.store.lock().unwrap().read(key, fence);
        let Some(base) = base else {
            w.report.lock().unwrap().refused_reads += 1;
            let _ = call(&mut c, &["EVAL", RELEASE, "1", &name, &token]).await;
            continue;
        };
        // Some holders pause past their lease (a GC pause, swap) before they write.
        if fastrand::u8(..10) == 0 {
            w.report.lock().unwrap().pauses += 1;
            tokio::time::sleep(Duration::from_millis(TTL_MS + 100)).await;
        } else {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(1..5))).await;
        }
        let end = Instant::now();
        let written = w.store.lock().unwrap().write(key, fence, base);
        {
            let mut r = w.report.lock().unwrap();
            match written {
                Written::Accepted => r.accepted += 1,
                Written::Refused => r.refused_writes += 1,
                Written::Saved => {
                    r.refused_writes += 1;
                    r.saved += 1;
                }
                Written::Lost => r.lost += 1,
            }
            r.grants.push(Grant {
                key,
                sent,
                ok,
                end,
                validity: Duration::from_millis(validity),
                fence,
            });
        }
        if call(&mut c, &["EVAL", RELEASE, "1", &name, &token])
            .await
            .is_none()
        {
            w.report.lock().unwrap().timeouts += 1;
            c = RawClient::connect(addr).await;
        }
    }
}

/// The network and the servers the faults act on.
struct World {
    masters: Arc<Mutex<Vec<RedisServer>>>,
    clocks: Vec<FakeClock>,
    /// `links[p][m]`: proxy `p`'s connections to master `m`.
    links: Vec<Vec<Relay>>,
    /// Clients' connections to proxy `p`.
    fronts: Vec<Relay>,
}

/// One fault at a time, on a schedule: every kind once per round, in a
/// random order, on a random proxy and master.
async fn faults(world: Arc<World>, until: Instant, w: Arc<State>) {
    let ms = |lo, hi| Duration::from_millis(fastrand::u64(lo..hi));
    let mut kinds: Vec<u8> = Vec::new();
    while Instant::now() < until {
        if kinds.is_empty() {
            kinds = (0..9).collect();
            fastrand::shuffle(&mut kinds);
        }
        tokio::time::sleep(ms(50, 150)).await;
        let (p, m) = (fastrand::usize(..2), fastrand::usize(..3));
        let link = &world.links[p][m];
        let kind = match kinds.pop().unwrap_or_default() {
            0 => {
                link.set(Mode::Blackhole);
                tokio::time::sleep(ms(100, 500)).await;
                link.set(Mode::Pass);
                "proxy-master partition"
            }
            1 => {
                let one_way = [Mode::HoldRequests, Mode::HoldReplies][fastrand::usize(..2)];
                link.set(one_way);
                tokio::time::sleep(ms(100, 500)).await;
                link.set(Mode::Pass);
                "one-way partition"
            }
            2 => {
                // A master cut off from both proxies.
                for l in &world.links {
                    l[m].set(Mode::Blackhole);
                }
                tokio::time::sleep(ms(100, 500)).await;
                for l in &world.links {
                    l[m].set(Mode::Pass);
                }
                "master isolated"
            }
            3 => {
                // Clients cut off from their proxy; their calls time out and
                // they reconnect.
                world.fronts[p].set(Mode::Blackhole);
                tokio::time::sleep(ms(100, 500)).await;
                world.fronts[p].cut(Cut::Reset);
                world.fronts[p].set(Mode::Pass);
                "client-proxy partition"
            }
            4 => {
                link.cut(Cut::Reset);
                "connections reset"
            }
            5 => {
                link.cut(Cut::MidReply);
                "reply cut midway"
            }
            6 => {
                let masters = Arc::clone(&world.masters);
                tokio::task::spawn_blocking(move || masters.lock().unwrap()[m].pause())
                    .await
                    .unwrap();
                tokio::time::sleep(ms(100, 400)).await;
                let masters = Arc::clone(&world.masters);
                tokio::task::spawn_blocking(move || masters.lock().unwrap()[m].resume())
                    .await
                    .unwrap();
                "master paused"
            }
            7 => {
                world.clocks[m].step_forward(Duration::from_millis(TTL_MS * fastrand::u64(2..6)));
                "clock stepped forward"
            }
            _ => {
                // Restarted empty (no persistence), after the longest TTL, as
                // operators are asked to; the restart guard covers the rest.
                let masters = Arc::clone(&world.masters);
                tokio::task::spawn_blocking(move || masters.lock().unwrap()[m].kill())
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(TTL_MS + 200)).await;
                let masters = Arc::clone(&world.masters);
                tokio::task::spawn_blocking(move || masters.lock().unwrap()[m].restart())
                    .await
                    .unwrap();
                "master restarted"
            }
        };
        *w.report.lock().unwrap().faults.entry(kind).or_default() += 1;
    }
}

async fn run(seconds: u64, workers: usize, keys: usize) -> (Report, u64) {
    let clocks: Vec<FakeClock> = (0..3).map(|_| FakeClock::new()).collect();
    let masters: Vec<RedisServer> = clocks.iter().map(RedisServer::start_with_clock).collect();
    let backend = RedisServer::start();
    let shutdown = CancellationToken::new();
    let mut links = Vec::new();
    let mut fronts = Vec::new();
    for _ in 0..2 {
        let mut relays = Vec::new();
        for m in &masters {
            relays.push(Relay::start(m.port).await);
        }
        let urls: Vec<String> = relays.iter().map(Relay::url).collect();
        let (addr, _, _) = spawn_proxy(&masters, &backend, &shutdown, |c| {
            c.redlock.masters = urls
                .iter()
                .map(|u| redlock_proxy::config::RedisUrl::parse(u).unwrap())
                .collect();
        })
        .await;
        links.push(relays);
        fronts.push(Relay::start(addr.port()).await);
    }
    let world = Arc::new(World {
        masters: Arc::new(Mutex::new(masters)),
        clocks,
        links,
        fronts,
    });
    let w = Arc::new(State {
        store: Mutex::default(),
        report: Mutex::default(),
    });
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in 0..workers {
        let addr: SocketAddr = ([127, 0, 0, 1], world.fronts[id % 2].port).into();
        tasks.push(tokio::spawn(worker(id, addr, keys, until, Arc::clone(&w))));
    }
    tasks.push(tokio::spawn(faults(
        Arc::clone(&world),
        until,
        Arc::clone(&w),
    )));
    for t in tasks {
        t.await.unwrap();
    }
    shutdown.cancel();
    let total = w.store.lock().unwrap().total();
    let report = std::mem::take(&mut *w.report.lock().unwrap());
    (report, total)
}

/// What every run must show.
fn assert_safe(r: &Report, total: u64) {
    let bad = overlaps(&r.grants);
    assert!(
        bad.is_empty(),
        "overlapping grants: {:?}; {}",
        &bad[..bad.len().min(3)],
        r.summary()
    );
    assert_eq!(r.lost, 0, "lost updates: {}", r.summary());
    // Every accepted write added one, and nothing else changed the store.
    assert_eq!(total, r.accepted, "{}", r.summary());
    // Fences only grow per resource, in grant order.
    let mut by_key: HashMap<usize, Vec<&Grant>> = HashMap::new();
    for g in &r.grants {
        by_key.entry(g.key).or_default().push(g);
    }
    for list in by_key.values_mut() {
        list.sort_by_key(|g| g.ok);
        for pair in list.windows(2) {
            assert!(
                pair[0].fence < pair[1].fence,
                "fences went back: {} then {}",
                pair[0].fence,
                pair[1].fence
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_survive_partitions_pauses_clock_steps_and_restarts() {
    let (r, total) = run(8, 8, 3).await;
    println!("partitions: {}", r.summary());
    assert_safe(&r, total);
    assert!(r.grants.len() > 100, "too few grants: {}", r.summary());
    assert_eq!(
        r.faults.len(),
        9,
        "not every kind of fault ran: {}",
        r.summary()
    );
    // Paused holders came back to a store that had seen a newer fence, and
    // their updates would have been lost without it.
    assert!(
        r.saved >= 1,
        "the fence never saved an update: {}",
        r.summary()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes long: run by hand (see the module docs)"]
async fn long_run() {
    let seconds = std::env::var("JEPSEN_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (r, total) = run(seconds, 16, 4).await;
    println!("partitions, {seconds} s: {}", r.summary());
    assert_safe(&r, total);
}

#[test]
fn the_store_refuses_old_fences_and_sees_lost_updates() {
    let mut s = Store::default();
    // A (fence 1) and B (fence 2) both read 0; B writes first.
    assert_eq!(s.read(0, 1), Some(0));
    assert_eq!(s.read(0, 2), Some(0));
    assert_eq!(s.write(0, 2, 0), Written::Accepted);
    assert_eq!(s.write(0, 1, 0), Written::Saved);
    assert_eq!(s.write(0, 1, 1), Written::Refused);
    assert_eq!(s.read(0, 1), None);
    // Without the fence a write over a changed value is seen as lost.
    assert_eq!(s.write(0, 3, 0), Written::Lost);
    assert_eq!(s.total(), 1);
}
