#!/usr/bin/env python3
"""Passthrough to a Redis Cluster: the proxy in front of a 3-master cluster,
next to redis-benchmark speaking cluster mode to the nodes directly
(`--cluster`), and next to the proxy and Redis with a single backend.

redis-benchmark SET/GET, 50 clients, random keys (spread over every slot), at
P=1 and P=16. Rounds are interleaved; medians are reported.

    cargo build --release --bins && python3 bench/cluster.py [--rounds 3]
"""

import argparse
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as b  # noqa: E402


class ClusterBench(b.Cluster):
    """A single Redis, a 3-master cluster, lock masters, and the proxies."""

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.nodes = [self.redis(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                  "--cluster-port", str(b.free_port())]) for _ in range(3)]
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p, _ in self.nodes], "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_cluster_ok()
        self.single_port, _ = self.start_proxy(proxy_bin, {})
        seed = f"redis://127.0.0.1:{self.nodes[0][0]}"
        cluster = {"REDLOCK_PROXY_PASSTHROUGH": seed, "REDLOCK_PROXY_PASSTHROUGH_CLUSTER": "true"}
        self.cluster_port, _ = self.start_proxy(proxy_bin, cluster)
        self.cluster_own_port, _ = self.start_proxy(
            proxy_bin, cluster | {"REDLOCK_PROXY_PASSTHROUGH_MULTIPLEX": "false"})
        for port in (self.cluster_port, self.cluster_own_port):
            self.wait_routed(port)

    def redis(self, extra=()):
        port = b.free_port()
        d = os.path.join(self.dir, f"redis-{port}")
        os.makedirs(d)
        p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", d, "--loglevel", "warning", *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        b.wait_port(port, p)
        return port, p

    def start_proxy(self, proxy_bin, extra_env):
        # The flag would win over the environment: pass the backend by env.
        port = b.free_port()
        args = [proxy_bin, "--listen", f"127.0.0.1:{port}"]
        for p, _ in self.masters:
            args += ["--master", f"redis://127.0.0.1:{p}"]
        env = dict(os.environ, RUST_LOG="warn",
                   REDLOCK_PROXY_PASSTHROUGH=f"redis://127.0.0.1:{self.backend[0]}")
        env.update(extra_env)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        b.wait_port(port, proc)
        return port, proc

    def wait_cluster_ok(self):
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            infos = [subprocess.run(["redis-cli", "-p", str(p), "CLUSTER", "INFO"],
                                    capture_output=True, text=True).stdout for p, _ in self.nodes]
            if all("cluster_state:ok" in i for i in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster never became ok")

    def wait_routed(self, port):
        """The proxy learns the topology in the background."""
        import time
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "proxy"],
                                 capture_output=True, text=True).stdout
            if "cluster_slots_unserved:0" in out:
                return
            time.sleep(0.05)
        raise RuntimeError(f"the proxy on {port} never learned the topology")


def benchmark(port, pipeline, n, cluster=False):
    """Mean SET/GET req/s, on random keys (spread over every slot)."""
    extra = ["-r", "1000000"] + (["--cluster"] if cluster else [])
    res = b.redis_benchmark(port, pipeline, n, tests=["set", "get"], extra=extra)
    return sum(r["rps"] for r in res.values()) / len(res)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny counts, one round, debug build")
    args = ap.parse_args()
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    n1, n16 = (2000, 20000) if args.quick else (200_000, 1_000_000)
    c = ClusterBench(proxy_bin)
    setups = {  # name: (port, cluster mode client)
        "cluster, direct (redis-benchmark --cluster)": (c.nodes[0][0], True),
        "cluster, through the proxy": (c.cluster_port, False),
        "cluster, through the proxy, multiplex off": (c.cluster_own_port, False),
        "single Redis, direct": (c.backend[0], False),
        "single Redis, through the proxy": (c.single_port, False),
    }
    res = {(k, p): [] for k in setups for p in (1, 16)}
    try:
        for r in range(rounds):
            order = list(setups)
            order = order[r % len(order):] + order[:r % len(order)]
            for pipeline, n in ((1, n1), (16, n16)):
                for k in order:
                    port, cl = setups[k]
                    res[(k, pipeline)].append(benchmark(port, pipeline, n, cl))
    finally:
        c.stop()
    med = b.median
    print(f"rounds: {rounds}; {b.machine()['cpu']}")
    print("\n| SET/GET mean req/s, 50 clients | P=1 | P=16 |\n|---|---|---|")
    for k in setups:
        print(f"| {k} | {med(res[(k, 1)]):,.0f} | {med(res[(k, 16)]):,.0f} |")
    for p in (1, 16):
        direct = med(res[("cluster, direct (redis-benchmark --cluster)", p)])
        proxy = med(res[("cluster, through the proxy", p)])
        print(f"proxy / direct cluster at P={p}: {proxy / direct:.2f}×")


if __name__ == "__main__":
    main()
