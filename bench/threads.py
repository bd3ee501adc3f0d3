#!/usr/bin/env python3
"""The proxy's defaults at several worker-thread counts (`[server] threads`),
side by side in one run: passthrough SET/GET at P=1 and P=16, and quorum
acquisitions (`SET lock:… NX PX` on 3 masters), against direct Redis.

    cargo build --release --bins && python3 bench/threads.py [--threads 1,2,4] [--rounds 3]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as b  # noqa: E402


class ThreadsCluster(b.Cluster):
    """A backend, 3 masters, a lone Redis, and one proxy per thread count."""

    counts = ()

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.lone = self.redis()
        self.ports = {n: self.start_proxy(proxy_bin, {"REDLOCK_PROXY_THREADS": str(n)})[0]
                      for n in self.counts}


def mean_rps(res):
    return sum(v["rps"] for v in res.values()) / len(res) if res else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny counts, one round, debug build")
    args = ap.parse_args()
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    n1, n16, nlock = (2000, 20000, 2000) if args.quick else (100_000, 1_000_000, 200_000)
    ThreadsCluster.counts = tuple(int(t) for t in args.threads.split(","))
    c = ThreadsCluster(proxy_bin)
    names = [f"{n} thread{'s' if n > 1 else ''}" for n in c.counts]
    ports = dict(zip(names, c.ports.values()))
    pass_targets = {"direct": c.backend[0]} | ports
    lock_targets = {"single master": c.lone[0]} | ports
    res = {(t, k): [] for t in pass_targets for k in ("1", "16")}
    res |= {(t, "lock"): [] for t in lock_targets}
    try:
        for r in range(rounds):
            order = list(pass_targets)
            order = order[r % len(order):] + order[:r % len(order)]
            for pipeline, n in ((1, n1), (16, n16)):
                for t in order:
                    res[(t, str(pipeline))].append(
                        mean_rps(b.redis_benchmark(pass_targets[t], pipeline, n, tests=["set", "get"])))
            order = list(lock_targets)
            order = order[r % len(order):] + order[:r % len(order)]
            for t in order:
                res[(t, "lock")].append(mean_rps(b.redis_benchmark(lock_targets[t], 1, nlock,
                                                                   command=b.LOCK_CMD)))
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); rounds: {rounds} (medians)\n")
    print("| setup | SET/GET P=1 req/s | ×direct | P=16 req/s | ×direct | SET NX PX req/s | ×single master |")
    print("|---|---|---|---|---|---|---|")
    d1, d16 = b.median(res[("direct", "1")]), b.median(res[("direct", "16")])
    lone = b.median(res[("single master", "lock")])
    print(f"| direct Redis / single master | {d1:,.0f} | 1.00 | {d16:,.0f} | 1.00 | {lone:,.0f} | 1.00 |")
    for t in names:
        p1, p16, lk = (b.median(res[(t, k)]) for k in ("1", "16", "lock"))
        print(f"| proxy, {t} | {p1:,.0f} | {p1 / d1:.2f} | {p16:,.0f} | {p16 / d16:.2f} "
              f"| {lk:,.0f} | {lk / lone:.2f} |")


if __name__ == "__main__":
    main()
