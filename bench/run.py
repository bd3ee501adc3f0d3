#!/usr/bin/env python3
"""redlock-proxy benchmark suite: the proxy side by side with direct Redis and
twemproxy, in the same run, interleaved (A B C A B C ...), medians of the rounds.

    bench/run.py            # full run (a few minutes); needs a release build
    bench/run.py --quick    # smoke run: tiny counts, one round, debug binaries
    bench/run.py --compare OLD_BINARY   # also measures another build (defaults), same run

Starts its own servers on free loopback ports: a passthrough backend, 3 masters,
one lone Redis (the single-master floor for locks), twemproxy (`nutcracker`, one
backend, server_connections: 1) and the proxy. Prints a table and writes
`bench/results/latest.md` and `latest.json` (or under --out).

Needs redis-server, redis-benchmark (redis-tools), nutcracker, and for the seed
library comparison the venv made by scripts/install-clients.sh.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PASS_TESTS = ["set", "get", "incr", "lpush", "lrange_100"]
LOCK_CMD = ["SET", "lock:__rand_int__", "tok", "NX", "PX", "10000"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc=None, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited ({proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"*1\r\n$4\r\nPING\r\n")
                if s.recv(64):
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise RuntimeError(f"nothing answers on port {port}")


class Cluster:
    """Every server of one run; stopped on exit."""

    def __init__(self, proxy_bin, compare_bin=None):
        self.dir = tempfile.mkdtemp(prefix="redlock-bench-")
        self.procs = []
        self.compare_port = None
        try:
            self.start(proxy_bin)
            if compare_bin:
                self.compare_port, _ = self.start_proxy(compare_bin, {})
        except BaseException:
            self.stop()
            raise

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.lone = self.redis()
        self.twemproxy = self.nutcracker(self.backend[0])
        # The proxy with its defaults (multiplexed, a thread per core), on one
        # thread, and with a backend connection per client (passthrough only).
        self.proxy_port, self.proxy = self.start_proxy(proxy_bin, {})
        self.one_port, self.one = self.start_proxy(proxy_bin, {"REDLOCK_PROXY_THREADS": "1"})
        self.dedicated_port, _ = self.start_proxy(
            proxy_bin, {"REDLOCK_PROXY_PASSTHROUGH_MULTIPLEX": "false"})

    def start_proxy(self, proxy_bin, extra_env, extra_args=()):
        port = free_port()
        args = [proxy_bin, "--listen", f"127.0.0.1:{port}",
                "--passthrough", f"redis://127.0.0.1:{self.backend[0]}", *extra_args]
        for p, _ in self.masters:
            args += ["--master", f"redis://127.0.0.1:{p}"]
        env = dict(os.environ, RUST_LOG="warn", **extra_env)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        wait_port(port, proc)
        return port, proc

    def redis(self):
        port = free_port()
        d = os.path.join(self.dir, f"redis-{port}")
        os.makedirs(d)
        p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", d, "--loglevel", "warning"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port, p)
        return port, p

    def nutcracker(self, backend):
        port = free_port()
        conf = os.path.join(self.dir, "nutcracker.yml")
        with open(conf, "w") as f:
            f.write(f"""pool:
  listen: 127.0.0.1:{port}
  hash: fnv1a_64
  distribution: ketama
  redis: true
  server_connections: 1
  auto_eject_hosts: false
  timeout: 10000
  servers:
   - 127.0.0.1:{backend}:1
""")
        # A stats port of its own: the default (22222) is taken when two
        # benchmarks run at once (the suite runs its smoke tests in parallel).
        p = subprocess.Popen(["nutcracker", "-c", conf, "-o", os.path.join(self.dir, "nutcracker.log"),
                              "-a", "127.0.0.1", "-s", str(free_port())],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        wait_port(port, p)
        return port, p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


def redis_benchmark(port, pipeline, requests, tests=None, command=None, clients=50, extra=()):
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(requests),
            "-P", str(pipeline), "--csv", *extra]
    if tests:
        args += ["-t", ",".join(tests)]
    if command:
        args += ["-r", "10000000"] + command
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True).stdout
    results = {}
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split('","')]
        if len(cells) < 2 or cells[0] == "test":
            continue
        name = cells[0].strip('"').split(" ")[0].lower()
        if name.startswith("lrange_100"):
            name = "lrange_100"
        try:
            results[name] = {"rps": float(cells[1]), "p50_ms": float(cells[4])}
        except (ValueError, IndexError):
            continue
    return results


def loadgen(binary, port, concurrency, seconds):
    out = subprocess.run([binary, "--addr", f"127.0.0.1:{port}", "--concurrency", str(concurrency),
                          "--seconds", str(seconds)], capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed(python, seconds, ports):
    script = os.path.join(ROOT, "bench", "seed_redlock.py")
    out = subprocess.run([python, script, str(seconds)] + [str(p) for p in ports],
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def info_clients(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"INFO clients\r\n")
        data = b""
        while b"connected_clients" not in data or not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode().splitlines():
        if line.startswith("connected_clients:"):
            return int(line.split(":")[1])
    return -1


def memory(cluster, idle, port, proc):
    """RSS of a proxy with `idle` idle clients, and backend connections opened
    by clients that only lock."""
    pid = proc.pid
    before = rss_kib(pid)
    socks = []
    for _ in range(idle):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
    for s in socks:  # every connection is served, then left idle
        s.sendall(b"PING\r\n")
    for s in socks:
        assert s.recv(16) == b"+PONG\r\n"
    after = rss_kib(pid)
    for s in socks:
        s.close()
    backend_before = info_clients(cluster.backend[0])
    lockers = []
    for i in range(min(idle, 1000)):
        s = socket.create_connection(("127.0.0.1", port))
        key = f"lock:mem:{port}:{i}".encode()
        s.sendall(b"*6\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$1\r\nt\r\n$2\r\nNX\r\n$2\r\nPX\r\n$4\r\n5000\r\n" % (len(key), key))
        lockers.append(s)
    for s in lockers:
        assert s.recv(16) == b"+OK\r\n"
    backend_after = info_clients(cluster.backend[0])
    for s in lockers:
        s.close()
    return {
        "idle_clients": idle,
        "rss_before_kib": before,
        "rss_with_idle_kib": after,
        "per_connection_bytes": (after - before) * 1024 / max(idle, 1),
        "lock_only_clients": len(lockers),
        "backend_connections_opened": backend_after - backend_before,
    }


def median(values):
    return statistics.median(values) if values else 0.0


def built(path, quick):
    """`target/<release or debug>/<path>` (a quick run uses the debug build);
    exits with the cargo command to run when it is missing."""
    full = os.path.join(ROOT, "target", "debug" if quick else "release", path)
    if not os.path.exists(full):
        sys.exit(f"{full} is missing: cargo build{'' if quick else ' --release'} --bins --examples")
    return full


def run(args):
    proxy_bin = built("redlock-proxy", args.quick)
    loadgen_bin = built(os.path.join("examples", "loadgen"), args.quick)
    rounds = 1 if args.quick else args.rounds
    n1, n16, nlock = (2000, 20000, 2000) if args.quick else (100_000, 1_000_000, 200_000)
    secs = 0.5 if args.quick else 3
    idle = 200 if args.quick else 10_000
    python = os.path.join(ROOT, "target", "clients", "py-redis8", "bin", "python")

    c = Cluster(proxy_bin, args.compare)
    results = {"machine": machine(), "rounds": rounds, "quick": args.quick}
    try:
        targets = {"direct": c.backend[0], "twemproxy": c.twemproxy[0], "proxy": c.proxy_port,
                   "proxy-1t": c.one_port, "proxy-dedicated": c.dedicated_port}
        lock_targets = {"single-master": c.lone[0], "proxy": c.proxy_port, "proxy-1t": c.one_port}
        if c.compare_port:
            targets["compare"] = c.compare_port
            lock_targets["compare"] = c.compare_port
        passthrough = {p: {t: {k: [] for k in PASS_TESTS} for t in targets} for p in (1, 16)}
        locks = {t: [] for t in lock_targets}
        gens = {(t, conc): [] for t in lock_targets for conc in (1, 50, 500)}
        seeds = {"direct-3-masters": [], "through-proxy": []}
        for r in range(rounds):
            order = list(targets)
            order = order[r % len(order):] + order[:r % len(order)]
            for pipeline, n in ((1, n1), (16, n16)):
                for t in order:
                    res = redis_benchmark(targets[t], pipeline, n, tests=PASS_TESTS)
                    for k in PASS_TESTS:
                        if k in res:
                            passthrough[pipeline][t][k].append(res[k]["rps"])
            lock_order = list(lock_targets.items())
            lock_order = lock_order[r % len(lock_order):] + lock_order[:r % len(lock_order)]
            for t, port in lock_order:
                res = redis_benchmark(port, 1, nlock, command=LOCK_CMD)
                locks[t].append(next(iter(res.values()))["rps"])
            for conc in (1, 50, 500):
                for t, port in lock_order:
                    gens[(t, conc)].append(loadgen(loadgen_bin, port, conc, secs))
            if os.path.exists(python):
                masters = [p for p, _ in c.masters]
                for name, ports in (("direct-3-masters", masters), ("through-proxy", [c.proxy_port])):
                    seeds[name].append(seed(python, secs, ports)["cycles_per_sec"])
        # Degraded: one master of three stopped (SIGSTOP: connected, silent).
        degraded = {}
        c.masters[2][1].send_signal(signal.SIGSTOP)
        try:
            for conc in (1, 50):
                degraded[conc] = loadgen(loadgen_bin, c.proxy_port, conc, secs)
        finally:
            c.masters[2][1].send_signal(signal.SIGCONT)
        # Memory on fresh proxies: the ones above keep what the load made them grow.
        port, proc = c.start_proxy(proxy_bin, {})
        mem = memory(c, idle, port, proc)
        port, proc = c.start_proxy(proxy_bin, {"REDLOCK_PROXY_THREADS": "1"})
        mem_1t = memory(c, idle, port, proc)
    finally:
        c.stop()

    results["passthrough"] = {
        str(p): {t: {k: median(v) for k, v in tests.items()} for t, tests in by_target.items()}
        for p, by_target in passthrough.items()
    }
    results["locks_redis_benchmark_rps"] = {t: median(v) for t, v in locks.items()}

    def med_gen(runs):
        keys = ("cycles_per_sec",)
        m = {k: median([r[k] for r in runs]) for k in keys}
        for part in ("acquire_us", "cycle_us"):
            m[part] = {q: median([r[part][q] for r in runs]) for q in ("p50", "p99", "p999")}
        return m

    results["loadgen"] = {f"{t}@{conc}": med_gen(v) for (t, conc), v in gens.items()}
    results["seed_library_cycles_per_sec"] = {k: median(v) for k, v in seeds.items()}
    results["degraded_one_master_stopped"] = {str(k): v for k, v in degraded.items()}
    results["memory"] = mem
    results["memory_1t"] = mem_1t
    results["targets"] = targets_met(results)
    if c.compare_port:
        results["compare"] = {"binary": args.compare, "table": comparison(results)}
    return results


def comparison(r):
    """This build's defaults against the --compare build's defaults, same run."""
    pt, lk, lg = r["passthrough"], r["locks_redis_benchmark_rps"], r["loadgen"]

    def ratio(p, t):
        vals = [pt[p][t][k] / pt[p]["direct"][k] for k in PASS_TESTS if pt[p]["direct"].get(k)]
        return statistics.median(vals) if vals else 0.0

    rows = [("passthrough -P 1, x direct (median of tests)", ratio("1", "compare"), ratio("1", "proxy")),
            ("passthrough -P 16, x direct", ratio("16", "compare"), ratio("16", "proxy")),
            ("SET NX PX on 3 masters, req/s", lk["compare"], lk["proxy"])]
    for conc in (1, 50, 500):
        rows.append((f"loadgen c={conc}, cycles/s", lg[f"compare@{conc}"]["cycles_per_sec"],
                     lg[f"proxy@{conc}"]["cycles_per_sec"]))
    rows.append(("loadgen c=1, acquire p50 (µs)", lg["compare@1"]["acquire_us"]["p50"],
                 lg["proxy@1"]["acquire_us"]["p50"]))
    return rows


def targets_met(r):
    return {name: targets_for(r, name) for name in ("proxy", "proxy-1t")}


def targets_for(r, name):
    pt = r["passthrough"]

    def ratio(p, t):
        vals = [pt[p][t][k] / pt[p]["direct"][k] for k in PASS_TESTS if pt[p]["direct"].get(k)]
        return statistics.median(vals) if vals else 0.0

    lk = r["locks_redis_benchmark_rps"]
    lg = r["loadgen"]
    seed_r = r["seed_library_cycles_per_sec"]
    mem = r["memory"] if name == "proxy" else r["memory_1t"]
    out = {
        "passthrough_p1_ratio": ratio("1", name),
        "passthrough_p16_ratio": ratio("16", name),
        "twemproxy_p1_ratio": ratio("1", "twemproxy"),
        "twemproxy_p16_ratio": ratio("16", "twemproxy"),
        "quorum_acquire_ratio": lk[name] / lk["single-master"] if lk["single-master"] else 0.0,
        "lock_p50_c1_extra_ms": (lg[f"{name}@1"]["acquire_us"]["p50"] - lg["single-master@1"]["acquire_us"]["p50"]) / 1000,
        "seed_speedup": seed_r["through-proxy"] / seed_r["direct-3-masters"] if seed_r.get("direct-3-masters") else 0.0,
        "idle_10k_rss_mib": (mem["rss_before_kib"] * 1024 + mem["per_connection_bytes"] * 10_000) / 2**20,
        "lock_only_backend_connections": mem["backend_connections_opened"],
    }
    out["met"] = {
        "passthrough >= 0.90x direct at -P 1": out["passthrough_p1_ratio"] >= 0.90,
        "passthrough >= 0.65x direct at -P 16": out["passthrough_p16_ratio"] >= 0.65,
        "ahead of twemproxy at -P 1": out["passthrough_p1_ratio"] > out["twemproxy_p1_ratio"],
        "ahead of twemproxy at -P 16": out["passthrough_p16_ratio"] > out["twemproxy_p16_ratio"],
        "quorum acquire >= 0.55x single-master SET NX PX": out["quorum_acquire_ratio"] >= 0.55,
        "lock p50 at c=1 <= single-master p50 + 0.08 ms": out["lock_p50_c1_extra_ms"] <= 0.08,
        "seed library through the proxy >= 1.5x direct": out["seed_speedup"] >= 1.5,
        "10,000 idle clients <= 200 MiB RSS": out["idle_10k_rss_mib"] <= 200,
        "no backend connection for lock-only clients": out["lock_only_backend_connections"] <= 0,
    }
    return out


def machine():
    cpus = os.cpu_count()
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass

    def version(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
        except (OSError, IndexError):
            return "?"

    return {"cpus": cpus, "cpu": model, "redis": version(["redis-server", "--version"]),
            "nutcracker": version(["nutcracker", "--version"]) or "?", "kernel": os.uname().release}


def markdown(r):
    lines = [f"Machine: {r['machine']['cpus']} CPUs ({r['machine']['cpu']}), kernel {r['machine']['kernel']}; "
             f"{r['machine']['redis']}; rounds: {r['rounds']} (medians)", ""]
    for p in ("1", "16"):
        lines += [f"### Passthrough, redis-benchmark -c 50 -P {p} (requests/s)", "",
                  "| test | direct | twemproxy | proxy | proxy, 1 thread | proxy, multiplex off | proxy/direct | 1 thread/direct | multiplex off/direct | twemproxy/direct |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        pt = r["passthrough"][p]
        for k in PASS_TESTS:
            d, t = pt["direct"].get(k, 0), pt["twemproxy"].get(k, 0)
            x, m, o = pt["proxy"].get(k, 0), pt["proxy-1t"].get(k, 0), pt["proxy-dedicated"].get(k, 0)
            f = lambda v: f"{v / d if d else 0:.2f}"
            lines.append(f"| {k} | {d:,.0f} | {t:,.0f} | {x:,.0f} | {m:,.0f} | {o:,.0f} | {f(x)} | {f(m)} | {f(o)} | {f(t)} |")
        lines.append("")
    lk = r["locks_redis_benchmark_rps"]
    lines += ["### Locks", "", "| measure | single master | proxy, 3 masters | proxy, 1 thread, 3 masters |", "|---|---|---|---|",
              f"| redis-benchmark SET NX PX, -c 50 (req/s) | {lk['single-master']:,.0f} | {lk['proxy']:,.0f} | {lk['proxy-1t']:,.0f} |"]
    for conc in (1, 50, 500):
        a, b, m = (r["loadgen"][f"{t}@{conc}"] for t in ("single-master", "proxy", "proxy-1t"))
        lines.append(f"| loadgen c={conc}: cycles/s | {a['cycles_per_sec']:,.0f} | {b['cycles_per_sec']:,.0f} | {m['cycles_per_sec']:,.0f} |")
        q = lambda x: f"{x['acquire_us']['p50']} / {x['acquire_us']['p99']} / {x['acquire_us']['p999']}"
        lines.append(f"| loadgen c={conc}: acquire p50 / p99 / p99.9 (µs) | {q(a)} | {q(b)} | {q(m)} |")
    s = r["seed_library_cycles_per_sec"]
    lines += [f"| seed library (PyPI redlock) cycles/s | {s.get('direct-3-masters', 0):,.0f} (its own RedLock over 3 masters) | {s.get('through-proxy', 0):,.0f} | |", ""]
    lines += ["### Degraded: 1 of 3 masters stopped (SIGSTOP)", "", "| concurrency | cycles/s | acquire p50 (µs) | acquire p99 (µs) |", "|---|---|---|---|"]
    for conc, d in r["degraded_one_master_stopped"].items():
        lines.append(f"| {conc} | {d['cycles_per_sec']:,.0f} | {d['acquire_us']['p50']} | {d['acquire_us']['p99']} |")
    lines += ["", "### Memory", ""]
    for label, key in (("proxy", "memory"), ("proxy, 1 thread", "memory_1t")):
        m = r[key]
        lines += [f"- {label}: RSS {m['rss_before_kib'] / 1024:.1f} MiB before, {m['rss_with_idle_kib'] / 1024:.1f} MiB with "
                  f"{m['idle_clients']:,} idle clients ({m['per_connection_bytes']:,.0f} bytes per connection); "
                  f"{m['lock_only_clients']} clients that only locked opened {m['backend_connections_opened']} backend connections"]
    if "compare" in r:
        lines += ["", f"### This build against {r['compare']['binary']} (both with their defaults)", "",
                  "| measure | compared build | this build | this / compared |", "|---|---|---|---|"]
        for name, old, new in r["compare"]["table"]:
            lines.append(f"| {name} | {old:,.2f} | {new:,.2f} | {new / old if old else 0:.2f} |")
    lines += ["", "### Targets", "", "| target | proxy (defaults) | met | proxy, 1 thread | met |", "|---|---|---|---|---|"]

    def values(t):
        return [f"{t['passthrough_p1_ratio']:.2f}", f"{t['passthrough_p16_ratio']:.2f}",
                f"{t['passthrough_p1_ratio']:.2f} vs {t['twemproxy_p1_ratio']:.2f}",
                f"{t['passthrough_p16_ratio']:.2f} vs {t['twemproxy_p16_ratio']:.2f}",
                f"{t['quorum_acquire_ratio']:.2f}", f"+{t['lock_p50_c1_extra_ms']:.3f} ms",
                f"{t['seed_speedup']:.2f}x", f"{t['idle_10k_rss_mib']:.0f} MiB",
                f"{t['lock_only_backend_connections']}"]

    a, b = r["targets"]["proxy"], r["targets"]["proxy-1t"]
    for (name, met_a), va, vb, met_b in zip(a["met"].items(), values(a), values(b), b["met"].values()):
        lines.append(f"| {name} | {va} | {'yes' if met_a else 'NO'} | {vb} | {'yes' if met_b else 'NO'} |")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny counts, one round, debug build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--compare", metavar="BINARY",
                    help="another redlock-proxy build to measure beside this one (its defaults), e.g. the last release")
    args = ap.parse_args()
    results = run(args)
    os.makedirs(args.out, exist_ok=True)
    md = markdown(results)
    with open(os.path.join(args.out, "latest.md"), "w") as f:
        f.write(md)
    with open(os.path.join(args.out, "latest.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(md)


if __name__ == "__main__":
    main()
