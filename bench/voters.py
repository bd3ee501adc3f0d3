#!/usr/bin/env python3
"""Cluster voters: quorum acquisitions through three voters that are Redis
Clusters of three shards each, next to three plain masters and one master
alone, in interleaved rounds.

    cargo build --release --bins && python3 bench/voters.py [--rounds 3]
    python3 bench/voters.py --quick      # smoke run: tiny counts, one round, debug build

Prints, per target: acquisitions per second (redis-benchmark, 50 clients,
SET lock:<rand> tok NX PX 10000), the proxy's CPU per acquisition, the
servers' CPU per acquisition (all masters, or all shards), and how the shards'
work spread (commands each shard processed, as a share of its voter's).

On a 2-core machine every process shares the same cores, so the shards add
processes, not capacity: the spread says what a larger deployment gains (each
shard takes about a third of its voter's keys), the throughput here does not.
"""

import argparse
import time
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu  # noqa: E402
import run as b  # noqa: E402

SHARDS = 3


def info_field(port, section, field):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", section],
                         capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":", 1)[1])
    return 0


class VoterCluster(b.Cluster):
    """One master alone, three plain masters, three cluster voters of three
    shards, a backend, and a proxy over each kind of voter."""

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.lone = self.redis()
        self.clusters = [self.cluster() for _ in range(3)]
        self.proxy_port, self.proxy = self.start_proxy(proxy_bin, {})
        seeds = ",".join(f"redis://127.0.0.1:{c[0][0]}" for c in self.clusters)
        self.voters_port, self.voters_proxy = self.start_proxy_with(
            proxy_bin, {"REDLOCK_PROXY_CLUSTER_MASTERS": seeds})

    def start_proxy_with(self, proxy_bin, extra_env):
        port = b.free_port()
        args = [proxy_bin, "--listen", f"127.0.0.1:{port}",
                "--passthrough", f"redis://127.0.0.1:{self.backend[0]}"]
        env = dict(os.environ, RUST_LOG="warn", **extra_env)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        b.wait_port(port, proc)
        # The voters learn their slot maps in the background.
        for _ in range(200):
            out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "proxy"],
                                 capture_output=True, text=True).stdout
            if out.count("state=up,shards=") == 3:
                break
            time.sleep(0.05)
        return port, proc

    def cluster(self):
        """Three cluster nodes joined by `redis-cli --cluster create`."""
        nodes = []
        for _ in range(SHARDS):
            port = b.free_port()
            d = os.path.join(self.dir, f"node-{port}")
            os.makedirs(d)
            p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                                  "--save", "", "--appendonly", "no", "--dir", d,
                                  "--cluster-enabled", "yes", "--cluster-port", str(b.free_port()),
                                  "--loglevel", "warning"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(p)
            b.wait_port(port, p)
            nodes.append((port, p))
        subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p, _ in nodes],
                        "--cluster-replicas", "0", "--cluster-yes"],
                       capture_output=True, check=True, timeout=60)
        for _ in range(200):
            if all("cluster_state:ok" in subprocess.run(["redis-cli", "-p", str(p), "CLUSTER", "INFO"],
                                                        capture_output=True, text=True).stdout
                   for p, _ in nodes):
                break
            time.sleep(0.05)
        return nodes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny counts, one round, debug build")
    args = ap.parse_args()
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    n = 2000 if args.quick else 200_000
    c = VoterCluster(proxy_bin)
    shards = [node for cl in c.clusters for node in cl]
    targets = {
        "one master, direct": (c.lone[0], c.lone[1].pid, [c.lone]),
        "proxy, 3 masters": (c.proxy_port, c.proxy.pid, c.masters),
        "proxy, 3 cluster voters x 3 shards": (c.voters_port, c.voters_proxy.pid, shards),
    }
    results = {}
    spread = []
    try:
        for r in range(rounds):
            order = list(targets)
            order = order[r % len(order):] + order[:r % len(order)]
            for t in order:
                port, pid, servers = targets[t]
                before = {p: info_field(p, "stats", "total_commands_processed") for p, _ in shards}
                watch = [("own", pid)] + [(f"s{i}", s[1].pid) for i, s in enumerate(servers)]
                rps, per = cpu.measure(port, watch, 1, n, cmd=b.LOCK_CMD)
                own = per["own"] if t != "one master, direct" else None
                servers_cpu = sum(v for k, v in per.items() if k != "own")
                if t == "one master, direct":
                    servers_cpu = per["own"]
                results.setdefault(t, []).append((rps, own, servers_cpu))
                if t.startswith("proxy, 3 cluster"):
                    done = {p: info_field(p, "stats", "total_commands_processed") - before[p]
                            for p, _ in shards}
                    spread.append(done)
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); {rounds} round(s); 50 clients; acquisitions "
          "(SET lock:<rand> tok NX PX 10000); medians (min–max) over the rounds\n")
    print("| target | acquisitions/s | proxy CPU/acquisition (µs) | servers' CPU/acquisition (µs) |")
    print("|---|---|---|---|")
    for t, rows in results.items():
        rps = statistics.median(r for r, _, _ in rows)
        own = [o for _, o, _ in rows if o is not None]
        servers = [s for _, _, s in rows]
        print(f"| {t} | {rps:,.0f} | {cpu.cell(own)} | {cpu.cell(servers)} |")
    print("\n| voter | shard commands, share of the voter's (last round) |")
    print("|---|---|")
    last = spread[-1] if spread else {}
    for i, cl in enumerate(c.clusters):
        counts = [last.get(p, 0) for p, _ in cl]
        total = sum(counts) or 1
        shares = " / ".join(f"{100 * x / total:.0f}%" for x in counts)
        print(f"| cluster voter {i} | {shares} |")


if __name__ == "__main__":
    main()
