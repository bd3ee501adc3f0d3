//! Bounded buffers: a client that does not read its replies holds at most the
//! high watermark in the proxy (its requests and its backend's replies stop
//! being read; the backend keeps the rest), on its own backend connection or a
//! shared one; all clients together stay under `max_client_memory`.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::process::ProxyProcess;

const MIB: usize = 1024 * 1024;

/// A backend holding a 1 MiB value under `big`.
fn backend_with_big_value() -> RedisServer {
    let backend = RedisServer::start();
    let client = redis::Client::open(backend.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(vec![b'v'; MIB])
        .query(&mut conn)
        .unwrap();
    backend
}

/// Pipelines `n` GETs of the big value on a new connection, and never reads.
async fn hog(proxy: &ProxyProcess, n: usize) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let one = enc(&["GET", "big"]);
    let mut all = Vec::with_capacity(one.len() * n);
    for _ in 0..n {
        all.extend_from_slice(&one);
    }
    s.write_all(&all).await.unwrap();
    s
}

/// Bytes waiting to be read on a socket (`FIONREAD`), without reading them.
fn readable(s: &tokio::net::TcpStream) -> usize {
    use std::os::fd::AsRawFd;
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through a valid pointer, on an open socket.
    #[allow(unsafe_code, reason = "FIONREAD: how much a client has not read")]
    let rc = unsafe { libc::ioctl(s.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0);
    n as usize
}

/// Waits until replies flow to every hog (some are waiting, unread, on its
/// socket): from then on, a proxy that does not hold back buffers fast.
async fn until_flowing(hogs: &[tokio::net::TcpStream]) {
    let deadline = Instant::now() + 3 * WAIT;
    // A receive buffer nobody reads from stays at its first size (~128 KiB).
    while !hogs.iter().all(|h| readable(h) >= 64 * 1024) {
        assert!(Instant::now() < deadline, "replies never started to flow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The highest RSS of the proxy over `time`, sampled while another client
/// keeps being served (each of its requests answered within `WAIT`).
async fn peak_rss_while_served(proxy: &ProxyProcess, time: Duration) -> usize {
    let mut other = RawClient::connect(proxy.addr).await;
    let until = Instant::now() + time;
    let mut peak = 0;
    let mut i = 0;
    while Instant::now() < until {
        peak = peak.max(proxy.rss());
        let sent = Instant::now();
        assert_eq!(
            other.cmd_str(&["SET", "small", &i.to_string()]).await,
            "+OK\r\n",
            "after {:?}",
            sent.elapsed()
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    peak
}

/// GETs of the 1 MiB value one client pipelines: 256 MiB of replies, 16 times
/// what a proxy that holds back may buffer. More only loads the backend (it
/// copies every reply into its output buffer in one turn of its event loop:
/// 2,000 stalled it past the reply timeout on a slow host).
const PIPELINED: usize = 256;

/// One client pipelines `PIPELINED` GETs of a 1 MB value and does not read
/// while others are served: RSS must grow less than `bound`; then it reads,
/// and every reply arrives whole.
async fn one_client_that_never_reads(env: &[(&str, &str)], label: &str, bound: usize) {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = backend_with_big_value();
    let proxy = ProxyProcess::start(&masters, &backend, env);
    let base = proxy.rss();
    let mut slow = hog(&proxy, PIPELINED).await;
    until_flowing(std::slice::from_ref(&slow)).await;
    let peak = peak_rss_while_served(&proxy, Duration::from_secs(1)).await;
    let grown = peak.saturating_sub(base);
    println!(
        "one client that never reads, {label}: RSS {} MiB -> peak {} MiB",
        base / MIB,
        peak / MIB
    );
    assert!(grown < bound, "RSS grew by {} MiB", grown / MIB);
    let mut reader = RawClient::from_stream(std::mem::replace(
        &mut slow,
        tokio::net::TcpStream::connect(proxy.addr).await.unwrap(),
    ));
    for i in 0..PIPELINED {
        assert_eq!(reader.read().await.len(), MIB + 12, "reply {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_holds_about_the_high_watermark() {
    // A backend connection of its own, which the proxy stops reading.
    let env = [("PASSTHROUGH_MULTIPLEX", "false")];
    one_client_that_never_reads(&env, "multiplex off", 16 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_that_never_read_stay_within_a_hundred_watermarks() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = backend_with_big_value();
    let proxy = ProxyProcess::start(&masters, &backend, &[("PASSTHROUGH_MULTIPLEX", "false")]);
    let base = proxy.rss();
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(hog(&proxy, 4).await);
    }
    until_flowing(&hogs).await;
    let peak = peak_rss_while_served(&proxy, Duration::from_secs(1)).await;
    let grown = peak.saturating_sub(base);
    println!(
        "100 clients that never read: RSS {} MiB -> peak {} MiB; buffers {} MiB",
        base / MIB,
        peak / MIB,
        proxy.metric("redlock_proxy_client_buffer_bytes") as usize / MIB
    );
    // 100 watermarks of 1 MiB, plus a base for the connections themselves.
    assert!(
        grown < 100 * MIB + 32 * MIB,
        "RSS grew by {} MiB",
        grown / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_defaults_a_client_that_never_reads_holds_one_window_of_replies() {
    // Multiplexed: 32 requests in flight on the shared connection at most; the
    // first 1 MB reply moves the client to a connection of its own, which the
    // proxy stops reading. The window (measured: +32 MiB), plus what is in
    // transit when the client moves: its own connection's watermark and read
    // buffers, the shared connection's read buffer.
    one_client_that_never_reads(&[], "defaults", 32 * MIB + 32 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_on_a_shared_connection_never_stalls_the_others() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = backend_with_big_value();
    let env = [
        ("PASSTHROUGH_MULTIPLEX", "true"),
        ("MAX_OUTPUT_BUFFER", "16777216"),
    ];
    let proxy = ProxyProcess::start(&masters, &backend, &env);
    let base = proxy.rss();
    // The shared connection must take its replies off: it cannot stop for it.
    let _slow = hog(&proxy, 200).await;
    let peak = peak_rss_while_served(&proxy, Duration::from_secs(2)).await;
    let grown = peak.saturating_sub(base);
    println!(
        "a slow client on a shared connection: RSS {} MiB -> peak {} MiB",
        base / MIB,
        peak / MIB
    );
    poll(|| proxy.metric("redlock_proxy_output_limit_disconnects_total") >= 1.0).await;
    assert!(
        grown < 16 * MIB + 32 * MIB,
        "RSS grew by {} MiB",
        grown / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_clients_together_stay_near_max_client_memory() {
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = backend_with_big_value();
    let env = [
        ("PASSTHROUGH_MULTIPLEX", "true"),
        ("MAX_OUTPUT_BUFFER", "0"),
        ("MAX_CLIENT_MEMORY", "67108864"),
    ];
    let proxy = ProxyProcess::start(&masters, &backend, &env);
    let base = proxy.rss();
    let mut hogs = Vec::new();
    for _ in 0..8 {
        hogs.push(hog(&proxy, 30).await);
    }
    let peak = peak_rss_while_served(&proxy, Duration::from_secs(2)).await;
    let grown = peak.saturating_sub(base);
    println!(
        "8 slow clients, a 64 MiB cap: RSS {} MiB -> peak {} MiB",
        base / MIB,
        peak / MIB
    );
    poll(|| proxy.metric("redlock_proxy_client_memory_evictions_total") >= 1.0).await;
    // The cap, and what arrives between two looks of the guard.
    assert!(
        grown < 64 * MIB + 96 * MIB,
        "RSS grew by {} MiB",
        grown / MIB
    );
    assert!(proxy.metric("redlock_proxy_client_buffer_bytes") <= (64 * MIB) as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_acquisitions_against_a_stalled_master_do_not_pile_up() {
    use tokio::io::AsyncWriteExt;
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = RedisServer::start();
    let proxy = ProxyProcess::start(&masters, &backend, &[]);
    // Another token holds the lock on two masters; the third stalls.
    for m in &masters[..2] {
        m.query(&["SET", "lock:c", "other", "PX", "600000"]);
    }
    masters[2].pause();
    let base = proxy.rss();
    let mut c = RawClient::connect(proxy.addr).await;
    let port = masters[2].port;
    let metric = |name: &str| {
        proxy.metric(&format!(
            "redlock_proxy_master_{name}{{master=\"127.0.0.1:{port}\","
        ))
    };
    // Every refusal owes the stalled master a release: owed or shed, once its
    // task has taken the debt in (it may lag behind the client).
    let taken_in = |n: usize| async move {
        poll(|| metric("owed_releases") + metric("owed_shed_total") >= n as f64).await;
    };
    let n = 300_000;
    let mut peak = 0;
    let mut at_200k = 0;
    for batch in 0..(n / 10_000) {
        let mut pipeline = Vec::new();
        for i in 0..10_000 {
            let token = format!("t{}", batch * 10_000 + i);
            pipeline.extend(enc(&["SET", "lock:c", &token, "NX", "PX", "600000"]));
        }
        c.stream.write_all(&pipeline).await.unwrap();
        for _ in 0..10_000 {
            assert_eq!(c.read().await, b"$-1\r\n");
        }
        peak = peak.max(proxy.rss());
        if (batch + 1) * 10_000 == 200_000 {
            taken_in(200_000).await;
            at_200k = proxy.rss();
        }
    }
    taken_in(n).await;
    let at_end = proxy.rss();
    peak = peak.max(at_end);
    let grown = peak.saturating_sub(base);
    let (owed, shed) = (metric("owed_releases"), metric("owed_shed_total"));
    println!(
        "{n} refusals, one master stalled: RSS {} MiB -> peak {} MiB; owed {owed}, shed {shed}",
        base / MIB,
        peak / MIB
    );
    assert!(
        owed <= 100_000.0 && shed >= (n - 100_000) as f64,
        "owed {owed}, shed {shed}"
    );
    // A plateau: past the cap on owed releases, refusals cost nothing more.
    let last = at_end.saturating_sub(at_200k);
    assert!(
        last < 8 * MIB,
        "the last 100,000 refusals took {} MiB",
        last / MIB
    );
    // 100,000 owed, and up to as many on their way to the master's task.
    assert!(grown < 128 * MIB, "RSS grew by {} MiB", grown / MIB);
    masters[2].resume();
}

/// The case, on the defaults: 100 clients each pipeline 10 GETs of a
/// 1 MiB value and never read (1 GiB of replies; the 20 each only
/// load the backend more, see `PIPELINED`). The proxy stays near `max_client_memory`
/// (256 MiB), closing the hogs, while a client of small commands and one
/// that reads the large value again and again are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_that_never_read_stay_bounded_on_the_defaults() {
    use tokio::io::AsyncWriteExt;
    let masters: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let backend = backend_with_big_value();
    let proxy = ProxyProcess::start(&masters, &backend, &[]);
    let base = proxy.rss();
    // A reader of the large value, reading each reply whole before the next.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (addr, stop) = (proxy.addr, stop.clone());
        tokio::spawn(async move {
            let mut c = RawClient::connect(addr).await;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                c.stream.write_all(&enc(&["GET", "big"])).await.unwrap();
                assert_eq!(c.read().await.len(), MIB + 12, "read {n}");
                n += 1;
            }
            n
        })
    };
    let mut hogs = Vec::new();
    for _ in 0..100 {
        hogs.push(hog(&proxy, 10).await);
    }
    // Until a quarter of the hogs are closed (before the fix, none was, and
    // RSS passed 500 MiB), then a second more; 15 s at most.
    let evictions = || proxy.metric("redlock_proxy_client_memory_evictions_total");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut peak = 0;
    while evictions() < 25.0 && Instant::now() < deadline {
        peak = peak.max(peak_rss_while_served(&proxy, Duration::from_millis(100)).await);
    }
    peak = peak.max(peak_rss_while_served(&proxy, Duration::from_secs(1)).await);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.await.unwrap();
    let grown = peak.saturating_sub(base);
    let evicted = evictions();
    println!(
        "100 clients x 10 GETs of 1 MiB, never read, defaults: RSS {} MiB -> peak {} MiB; {evicted} evicted; the reader read {reads} replies",
        base / MIB,
        peak / MIB
    );
    assert!(reads > 10, "the reader read {reads} replies");
    assert!(grown < 320 * MIB, "RSS grew by {} MiB", grown / MIB);
}
