#!/usr/bin/env python3
"""How far to trust a passthrough ratio on this host.

The proxy's defaults started twice, twemproxy and direct Redis, measured in many
interleaved rounds (redis-benchmark -c 50, the five tests of bench/run.py). Each
round gives each target one ratio: the median over the five tests of
target/direct, the way the performance targets are stated. Two instances of one
build show what the host alone moves; the rounds give the ratio's mean, spread
and 95% confidence interval, and a target is called met or missed only when the
interval is clear of it ("cannot tell" otherwise).

    cargo build --release --bins && python3 bench/spread.py [--pipeline 1,16] [--rounds 16]
"""

import argparse
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as b  # noqa: E402

TESTS = ["set", "get", "incr", "lpush", "lrange_100"]
# The targets of the performance issue: proxy/direct with the defaults.
TARGETS = {1: 0.90, 16: 0.65}


class SpreadCluster(b.Cluster):
    """A backend, 3 masters (the proxy needs them), twemproxy, and two proxies
    with the defaults."""

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.twemproxy = self.nutcracker(self.backend[0])
        self.proxy_port, _ = self.start_proxy(proxy_bin, {})
        self.second_port, _ = self.start_proxy(proxy_bin, {})


# Student's t, two-sided 95%, by degrees of freedom; between entries, the one
# for fewer degrees (a slightly wider interval, never a narrower one).
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       11: 2.20, 12: 2.18, 13: 2.16, 14: 2.14, 15: 2.13, 16: 2.12, 17: 2.11, 18: 2.10, 19: 2.09,
       20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00}


def t95(df):
    return T95[max(k for k in T95 if k <= df)]


def interval(xs):
    """Mean and the half-width of its 95% confidence interval (Student's t:
    rounds are few)."""
    mean = statistics.mean(xs)
    if len(xs) < 2:
        return mean, float("inf")
    return mean, t95(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))


def verdict(lo, hi, goal):
    if lo >= goal:
        return "met"
    if hi < goal:
        return "missed"
    return "cannot tell"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default="1,16", help="pipeline depths, comma-separated")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="tiny counts, two rounds, debug build")
    args = ap.parse_args()
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 2 if args.quick else args.rounds
    depths = [int(p) for p in args.pipeline.split(",")]
    c = SpreadCluster(proxy_bin)
    targets = {"proxy": c.proxy_port, "proxy, again": c.second_port,
               "twemproxy": c.twemproxy[0], "direct": c.backend[0]}
    # ratios[(depth, target)]: one per round; per_test[(depth, target, test)] likewise.
    ratios, per_test = {}, {}
    try:
        for r in range(rounds):
            for depth in depths:
                n = (2000 if depth == 1 else 20000) if args.quick else (100_000 if depth == 1 else 1_000_000)
                order = list(targets)
                order = order[r % len(order):] + order[:r % len(order)]
                got = {t: b.redis_benchmark(targets[t], depth, n, tests=TESTS) for t in order}
                direct = got["direct"]
                for t in targets:
                    if t == "direct":
                        continue
                    each = {k: got[t][k]["rps"] / direct[k]["rps"] for k in direct if k in got[t]}
                    ratios.setdefault((depth, t), []).append(statistics.median(each.values()))
                    for k, v in each.items():
                        per_test.setdefault((depth, t, k), []).append(v)
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); {rounds} rounds; ratio = median over "
          f"{', '.join(TESTS)} of target/direct, one per round\n")
    print("| P | target | mean | 95% interval | sd | min – max | " + " | ".join(TESTS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(TESTS))
    for depth in depths:
        for t in targets:
            if t == "direct":
                continue
            xs = ratios[(depth, t)]
            mean, half = interval(xs)
            sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
            tests = " | ".join(f"{statistics.median(per_test[(depth, t, k)]):.3f}"
                               if (depth, t, k) in per_test else "—" for k in TESTS)
            print(f"| {depth} | {t} | {mean:.3f} | {mean - half:.3f} – {mean + half:.3f} | {sd:.3f} "
                  f"| {min(xs):.3f} – {max(xs):.3f} | {tests} |")
    print()
    for depth in depths:
        goal = TARGETS.get(depth)
        # One value per round (the two instances' mean): rounds, not
        # instances, are the independent samples.
        both = [(x + y) / 2 for x, y in zip(ratios[(depth, "proxy")], ratios[(depth, "proxy, again")])]
        mean, half = interval(both)
        if goal is not None:
            print(f"P={depth}: proxy/direct ≥ {goal:.2f}: {verdict(mean - half, mean + half, goal)} "
                  f"(the instances' mean per round: mean {mean:.3f}, 95% interval {mean - half:.3f} – {mean + half:.3f})")
        # Against twemproxy: the difference within each round, which cancels
        # what the round as a whole got from the host.
        diffs = [p - w for p, w in zip(both, ratios[(depth, "twemproxy")])]
        dm, dh = interval(diffs)
        print(f"P={depth}: proxy ≥ twemproxy: {verdict(dm - dh, dm + dh, 0.0)} "
              f"(proxy − twemproxy per round: mean {dm:+.3f}, 95% interval {dm - dh:+.3f} – {dm + dh:+.3f})")


if __name__ == "__main__":
    main()
