//! Lock load generator for the benchmark suite (`bench/run.py`): workers that
//! loop acquire (`SET key token NX PX ttl`) + release (the compare-and-delete
//! script, by EVALSHA) against a proxy, or against one Redis as the floor.
//!
//! `cargo run --release --example loadgen -- --addr 127.0.0.1:7379 --concurrency 50 --seconds 5`
//!
//! Prints one JSON object: cycles/s and acquire/cycle latency percentiles (µs).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark tool: any failure should stop the run loudly"
)]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use redlock_proxy::protocol::ReplyScanner;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RELEASE: &str = r#"if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) else return 0 end"#;

struct Args {
    addr: String,
    concurrency: usize,
    seconds: f64,
    ttl_ms: u64,
}

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:7379".into(),
        concurrency: 1,
        seconds: 5.0,
        ttl_ms: 10_000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i + 1 < argv.len() {
        let v = &argv[i + 1];
        match argv[i].as_str() {
            "--addr" => a.addr = v.clone(),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency N"),
            "--seconds" => a.seconds = v.parse().expect("--seconds S"),
            "--ttl" => a.ttl_ms = v.parse().expect("--ttl MS"),
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    a
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    scanner: ReplyScanner,
    out: Vec<u8>,
}

impl Conn {
    async fn call(&mut self, args: &[&[u8]]) -> Vec<u8> {
        self.out.clear();
        encode(&mut self.out, args);
        self.stream.write_all(&self.out).await.expect("write");
        loop {
            if let Some(info) = self.scanner.scan(&self.buf).expect("reply") {
                return self.buf.split_to(info.len).to_vec();
            }
            if self.stream.read_buf(&mut self.buf).await.expect("read") == 0 {
                panic!("connection closed");
            }
        }
    }
}

struct Stats {
    acquire: Histogram<u64>,
    cycle: Histogram<u64>,
    cycles: u64,
    refused: u64,
}

async fn worker(id: usize, addr: String, until: Instant, ttl: String) -> Stats {
    let stream = TcpStream::connect(&addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let mut c = Conn {
        stream,
        buf: BytesMut::with_capacity(4096),
        scanner: ReplyScanner::new(16),
        out: Vec::with_capacity(256),
    };
    let sha = c.call(&[b"SCRIPT", b"LOAD", RELEASE.as_bytes()]).await;
    let sha = sha
        .split(|&b| b == b'\n')
        .nth(1)
        .expect("sha")
        .strip_suffix(b"\r")
        .expect("sha")
        .to_vec();
    let mut s = Stats {
        acquire: Histogram::new(3).unwrap(),
        cycle: Histogram::new(3).unwrap(),
        cycles: 0,
        refused: 0,
    };
    let token = format!("tok-{id}");
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = format!("lock:lg:{id}:{}", n % 10_000);
        let start = Instant::now();
        let r = c
            .call(&[
                b"SET",
                key.as_bytes(),
                token.as_bytes(),
                b"NX",
                b"PX",
                ttl.as_bytes(),
            ])
            .await;
        let acquired = start.elapsed();
        if r != b"+OK\r\n" {
            s.refused += 1;
            continue;
        }
        let r = c
            .call(&[b"EVALSHA", &sha, b"1", key.as_bytes(), token.as_bytes()])
            .await;
        assert_eq!(r, b":1\r\n", "release");
        let _ = s.acquire.record(acquired.as_micros() as u64);
        let _ = s.cycle.record(start.elapsed().as_micros() as u64);
        s.cycles += 1;
    }
    s
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let until = Instant::now() + Duration::from_secs_f64(a.seconds);
        let started = Instant::now();
        let ttl = a.ttl_ms.to_string();
        let tasks: Vec<_> = (0..a.concurrency)
            .map(|id| tokio::spawn(worker(id, a.addr.clone(), until, ttl.clone())))
            .collect();
        let mut total = Stats {
            acquire: Histogram::new(3).unwrap(),
            cycle: Histogram::new(3).unwrap(),
            cycles: 0,
            refused: 0,
        };
        for t in tasks {
            let s = t.await.unwrap();
            total.acquire.add(&s.acquire).unwrap();
            total.cycle.add(&s.cycle).unwrap();
            total.cycles += s.cycles;
            total.refused += s.refused;
        }
        let secs = started.elapsed().as_secs_f64();
        let q = |h: &Histogram<u64>, p: f64| h.value_at_quantile(p);
        println!(
            "{{\"concurrency\": {}, \"seconds\": {:.2}, \"cycles\": {}, \"refused\": {}, \"cycles_per_sec\": {:.0}, \
             \"acquire_us\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}}}, \"cycle_us\": {{\"p50\": {}, \"p99\": {}, \"p999\": {}}}}}",
            a.concurrency,
            secs,
            total.cycles,
            total.refused,
            total.cycles as f64 / secs,
            q(&total.acquire, 0.5),
            q(&total.acquire, 0.99),
            q(&total.acquire, 0.999),
            q(&total.cycle, 0.5),
            q(&total.cycle, 0.99),
            q(&total.cycle, 0.999),
        );
    });
}
