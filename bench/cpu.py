#!/usr/bin/env python3
"""CPU per request: what each process spends (user + sys, from /proc) on one
request, next to what Redis itself spends on it directly.

Throughput on a 2-core machine mostly measures who gets the cores; CPU time
per request is steadier and says what a deployment pays. Each workload runs
against every target in interleaved rounds (A B C A B C ...); a process's CPU
per request is its CPU time over the run divided by the requests served.

    cargo build --release --bins && python3 bench/cpu.py [--rounds 3] [--compare OLD_BINARY]
    python3 bench/cpu.py --tls [--rounds 3]   # the same over TLS (below)
    python3 bench/cpu.py --acl [--rounds 3]   # the ACL check's cost (below)
    python3 bench/cpu.py --quick        # smoke run: tiny counts, one round, debug build

Workloads (redis-benchmark, 50 clients):
- SET/GET at P=1 and P=16: direct Redis, twemproxy, the proxy (and the
  servers behind each, for the proxy its backend).
- a script on a data key (EVAL "return 1", P=16): the held lanes of the
  shared connections.
- lock acquire (SET lock:<rand> tok NX PX 10000): the proxy over 3 masters,
  against one master directly; release (the compare-and-delete by EVALSHA on a
  key mostly absent) likewise.
- read/write locks and semaphores (RWLOCK.READ, RWLOCK.WRITE, SEMAPHORE.ACQUIRE
  with a limit of 1,000 on random keys, and their releases on keys mostly
  absent): the proxy over 3 masters, against one master running the same
  script (by EVALSHA; a seat's release is ZREM).

With --acl: SET/GET at P=1 and P=16 and the lock acquisition through the
proxy with no users, logged in as a user with `+@all ~*` (only pub/sub
commands need a look), and as one with rules that must be checked on every
request (`~key:* ~lock:* &* +@all -@dangerous`: the command's categories,
each key against the patterns), against Redis's own CPU.

With --tls: SET/GET at P=1 and P=16 with clients on TLS (the proxy's TLS
listener, its backend plain) against Redis's own TLS port, and the lock
acquisition with the proxy's masters on rediss:// against one master's TLS port.

Prints one table per workload: each process's CPU per request (µs, median
over the rounds, min–max), throughput, and the proxy's CPU as a multiple of
Redis's own (direct) CPU for the same request.
"""

import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as b  # noqa: E402

RELEASE = ('if redis.call("get",KEYS[1]) == ARGV[1] then return redis.call("del",KEYS[1]) '
           'else return 0 end')
RELEASE_SHA = "b70c2384248f88e6b75b9f89241a180f856ad852"
TICK = os.sysconf("SC_CLK_TCK")


def native_scripts():
    """The texts of the proxy's own RWLOCK/SEMAPHORE scripts, read from
    src/redlock/scripts/native.rs: the string literals of each, joined as
    concat! joins them, with the macros' literals in place of their calls."""
    import re
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "redlock",
                        "scripts", "native.rs")
    src = open(path).read()
    literal = r'"((?:[^"\\]|\\[\s\S])*)"'

    def unescape(text):
        # A backslash ending a line continues the string past the next
        # line's leading whitespace.
        return re.sub(r"\\\n\s*", "", text)

    macros = {}
    for name, body in re.findall(r"macro_rules! (\w+) \{\s*\(\) => \{(.*?)\};\s*\}", src, re.S):
        macros[name] = "".join(unescape(t) for t in re.findall(literal, body))
    scripts = {}
    for name, body in re.findall(r"pub static (\w+): Native = native\((.*?)\);\n", src, re.S):
        parts = re.findall(r"(\w+)!\(\)|" + literal, body)
        scripts[name] = "".join(macros[m] if m and m != "concat" else unescape(t)
                                for m, t in parts if m != "concat")
    return scripts


def cpu_seconds(pid):
    """User + system CPU time of a process so far, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # The command name may hold spaces: fields count from after its ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class CpuCluster(b.Cluster):
    """A backend, 3 masters, one lone master (the single-master floor),
    twemproxy and the proxy with its defaults (and another build's)."""

    def start(self, proxy_bin):
        self.backend = self.redis()
        self.masters = [self.redis() for _ in range(3)]
        self.lone = self.redis()
        self.twemproxy = self.nutcracker(self.backend[0])
        self.proxy_port, self.proxy = self.start_proxy(proxy_bin, {})


def command(port, *args):
    """One command on a fresh connection (RESP): its reply's first line, or
    a bulk string's value."""
    import socket
    with socket.create_connection(("127.0.0.1", port)) as s:
        req = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
        s.sendall(req)
        lines = s.recv(4096).split(b"\r\n")
        # A bulk string's value is on its second line.
        return (lines[1] if lines[0].startswith(b"$") else lines[0]).decode()


def measure(target_port, watched, pipeline, n, tests=None, cmd=None, tls=None, extra=()):
    """Runs redis-benchmark against `target_port` (over TLS with `tls`, the
    CA file; `extra`: more of its arguments, a login); returns rps and, for
    each (name, pid) in `watched`, its CPU µs per request."""
    before = {name: cpu_seconds(pid) for name, pid in watched}
    if tls:
        import tls as t
        rps = t.benchmark(target_port, pipeline, n, tls, command=cmd, tests=tests)
    else:
        got = b.redis_benchmark(target_port, pipeline, n, tests=tests, command=cmd, extra=extra)
        rps = statistics.mean(v["rps"] for v in got.values()) if got else 0.0
    after = {name: cpu_seconds(pid) for name, pid in watched}
    served = n * (len(tests) if tests else 1)
    return rps, {name: (after[name] - before[name]) * 1e6 / served for name, _ in watched}


def record(results, key, rps, per, servers):
    """Keeps one run: requests/s, the target's own CPU per request, and its
    servers' together (`None` when nothing is behind it)."""
    servers_cpu = sum(v for k, v in per.items() if k != "own") if servers else None
    results.setdefault(key, []).append((rps, per["own"], servers_cpu))


def print_tables(results, names, targets, direct):
    """One table per workload in `names`: each of `targets` that ran it, its
    own CPU against `direct`'s."""
    for name in names:
        print(f"### {name}\n")
        print("| target | requests/s | own CPU/request | servers' CPU/request | own ÷ Redis direct |")
        print("|---|---|---|---|---|")
        direct_med = statistics.median(o for _, o, _ in results[(name, direct)])
        for t in targets:
            rows = results.get((name, t))
            if not rows:
                continue
            rps = statistics.median(r for r, _, _ in rows)
            own = [o for _, o, _ in rows]
            servers = [s for _, _, s in rows if s is not None]
            ratio = statistics.median(own) / direct_med if direct_med else float("nan")
            print(f"| {t} | {rps:,.0f} | {cell(own)} | {cell(servers)} | {ratio:.2f}× |")
        print()


def cell(xs):
    """Median (min–max), or a dash."""
    if not xs:
        return "—"
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def main_tls(args):
    """CPU per request with TLS on the client side and on the master side."""
    import tls as t
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    scale = 50 if args.quick else 1
    c = t.TlsCluster(proxy_bin)
    ca = c.certs["ca"]
    lone = c.redis_tls()
    pid = c.pids
    backend, masters = pid[c.backend[0]], [pid[m[0]] for m in c.masters]
    # workload -> (pipeline, n, tests, command, {target: (port, CA or None, own pid, behind pids)})
    setget = ["set", "get"]
    client_side = {
        "direct TLS": (c.backend[1], ca, backend, []),
        "proxy, TLS clients": (c.tls_port, ca, c.proxy.pid, [backend]),
    }
    lock_side = {
        "direct TLS": (lone[1], ca, pid[lone[0]], []),
        "proxy, rediss:// masters": (c.rediss_port, None, c.rediss.pid, masters),
    }
    workloads = {
        "SET/GET, P=1, TLS clients": (1, 100_000, setget, None, client_side),
        "SET/GET, P=16, TLS clients": (16, 1_000_000, setget, None, client_side),
        "lock acquire (SET NX PX), TLS to the masters": (1, 100_000, None, b.LOCK_CMD, lock_side),
    }
    results = {}
    try:
        for r in range(rounds):
            for name, (p, n, tests, cmd, targets) in workloads.items():
                n = max(n // scale, 200)
                order = list(targets)
                order = order[r % len(order):] + order[:r % len(order)]
                for tname in order:
                    port, cafile, own, servers = targets[tname]
                    watch = [("own", own)] + [(f"s{i}", q) for i, q in enumerate(servers)]
                    rps, per = measure(port, watch, p, n, tests, cmd, tls=cafile)
                    record(results, (name, tname), rps, per, servers)
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); {rounds} round(s); TLS; CPU µs per request, "
          "median (min–max) over the rounds\n")
    targets = [*client_side, *(k for k in lock_side if k not in client_side)]
    print_tables(results, workloads, targets, "direct TLS")


def main_acl(args):
    """CPU per request with users and ACL rules, against none."""
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    scale = 50 if args.quick else 1
    c = CpuCluster(proxy_bin, None)
    conf = os.path.join(c.dir, "users.toml")
    with open(conf, "w") as f:
        f.write('[[users]]\nname = "all"\nrules = "on >pw +@all ~*"\n\n'
                '[[users]]\nname = "rules"\n'
                'rules = "on >pw ~key:* ~lock:* &* +@all -@dangerous"\n')
    users_port, users_proc = c.start_proxy(proxy_bin, {}, ["--config", conf])
    backend, lone = c.backend[1].pid, c.lone[1].pid
    masters = [p.pid for _, p in c.masters]
    setget = ["set", "get"]
    # target -> (port, own pid, redis-benchmark's login)
    proxies = {
        "proxy, no users": (c.proxy_port, c.proxy.pid, ()),
        "proxy, user +@all ~*": (users_port, users_proc.pid, ("--user", "all", "-a", "pw")),
        "proxy, user with rules": (users_port, users_proc.pid, ("--user", "rules", "-a", "pw")),
    }
    # workload -> (pipeline, n, tests, command, direct port, direct pid, behind-the-proxy pids)
    workloads = {
        "SET/GET, P=1": (1, 100_000, setget, None, c.backend[0], backend, [backend]),
        "SET/GET, P=16": (16, 1_000_000, setget, None, c.backend[0], backend, [backend]),
        "lock acquire (SET NX PX)": (1, 100_000, None, b.LOCK_CMD, c.lone[0], lone, masters),
    }
    results = {}
    try:
        for r in range(rounds):
            for name, (p, n, tests, cmd, dport, dpid, behind) in workloads.items():
                n = max(n // scale, 200)
                targets = {"direct": (dport, dpid, [], ())}
                for t, (port, pid, login) in proxies.items():
                    targets[t] = (port, pid, behind, login)
                order = list(targets)
                order = order[r % len(order):] + order[:r % len(order)]
                for t in order:
                    port, own, servers, login = targets[t]
                    watch = [("own", own)] + [(f"server{i}", q) for i, q in enumerate(servers)]
                    rps, per = measure(port, watch, p, n, tests, cmd, extra=login)
                    record(results, (name, t), rps, per, servers)
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); {rounds} round(s); ACL rules; CPU µs per request, "
          "median (min–max) over the rounds\n")
    print_tables(results, workloads, ["direct", *proxies], "direct")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tls", action="store_true", help="the client side and the masters on TLS")
    ap.add_argument("--acl", action="store_true", help="users with ACL rules against none")
    ap.add_argument("--compare", help="another build of the proxy, measured in the same rounds")
    ap.add_argument("--quick", action="store_true", help="tiny counts, one round, debug build")
    ap.add_argument("--only", help="run only these workloads (names as printed, separated by ;)")
    args = ap.parse_args()
    if args.tls:
        return main_tls(args)
    if args.acl:
        return main_acl(args)
    proxy_bin = b.built("redlock-proxy", args.quick)
    rounds = 1 if args.quick else args.rounds
    c = CpuCluster(proxy_bin, args.compare)
    backend, lone = c.backend[1].pid, c.lone[1].pid
    masters = [p.pid for _, p in c.masters]
    proxies = {"proxy": (c.proxy_port, c.proxy.pid)}
    if c.compare_port:
        proxies["compare"] = (c.compare_port, c.procs[-1].pid)
    # The proxies learn the release script's text; the lone master loads it,
    # and the scripts behind RWLOCK/SEMAPHORE.
    for port, _ in proxies.values():
        command(port, "SCRIPT", "LOAD", RELEASE)
    command(c.lone[0], "SCRIPT", "LOAD", RELEASE)
    native = {name: command(c.lone[0], "SCRIPT", "LOAD", text)
              for name, text in native_scripts().items()}
    key = "lock:__rand_int__"
    sem_key = "lock:sem:__rand_int__"
    scale = 50 if args.quick else 1
    setget = ["set", "get"]
    # workload -> (pipeline, n, tests, command, direct port, direct pid, behind-the-proxy pids)
    workloads = {
        "SET/GET, P=1": (1, 100_000, setget, None, c.backend[0], backend, [backend]),
        "SET/GET, P=16": (16, 1_000_000, setget, None, c.backend[0], backend, [backend]),
        "EVAL on a data key, P=16": (16, 500_000, None, ["EVAL", "return 1", "0"], c.backend[0],
                                     backend, [backend]),
        "lock acquire (SET NX PX)": (1, 100_000, None, b.LOCK_CMD, c.lone[0], lone, masters),
        "release (EVALSHA, key absent)": (1, 100_000, None,
                                          ["EVALSHA", RELEASE_SHA, "1", "lock:__rand_int__", "tok"],
                                          c.lone[0], lone, masters),
        "read lock (RWLOCK.READ)": (1, 100_000, None, ["RWLOCK.READ", key, "tok", "10000"],
                                    c.lone[0], lone, masters,
                                    ["EVALSHA", native["RW_READ"], "1", key, "tok", "10000"]),
        "write lock (RWLOCK.WRITE)": (1, 100_000, None, ["RWLOCK.WRITE", key, "tok", "10000"],
                                      c.lone[0], lone, masters,
                                      ["EVALSHA", native["RW_WRITE"], "1", key, "tok", "10000"]),
        "read/write release (RWLOCK.RELEASE, key absent)": (
            1, 100_000, None, ["RWLOCK.RELEASE", key, "tok"], c.lone[0], lone, masters,
            ["EVALSHA", native["RW_RELEASE"], "1", key, "tok"]),
        "semaphore seat (SEMAPHORE.ACQUIRE, limit 1000)": (
            1, 100_000, None, ["SEMAPHORE.ACQUIRE", sem_key, "tok", "1000", "10000"],
            c.lone[0], lone, masters,
            ["EVALSHA", native["SEM_ACQUIRE"], "1", sem_key, "1000", "tok", "10000"]),
        "semaphore release (SEMAPHORE.RELEASE, key absent)": (
            1, 100_000, None, ["SEMAPHORE.RELEASE", sem_key, "tok"], c.lone[0], lone, masters,
            ["ZREM", sem_key, "tok"]),
    }
    if args.only:
        workloads = {k: v for k, v in workloads.items() if any(o == k for o in args.only.split(";"))}
    # results[(workload, target)] -> [(rps, own µs/request, servers' µs/request or None)]
    results = {}
    try:
        for r in range(rounds):
            for name, (p, n, tests, cmd, dport, dpid, behind, *direct_cmd) in workloads.items():
                n = max(n // scale, 200)
                # target -> (port, its own process, the servers behind it)
                targets = {"direct": (dport, dpid, [])}
                if tests:
                    targets["twemproxy"] = (c.twemproxy[0], c.twemproxy[1].pid, [backend])
                for t, (port, pid) in proxies.items():
                    # Another build may not have these commands.
                    if t == "compare" and cmd and cmd[0].startswith(("RWLOCK.", "SEMAPHORE.")):
                        continue
                    targets[t] = (port, pid, behind)
                order = list(targets)
                order = order[r % len(order):] + order[:r % len(order)]
                for t in order:
                    port, own, servers = targets[t]
                    watch = [("own", own)] + [(f"server{i}", q) for i, q in enumerate(servers)]
                    # One master runs the script the proxy's command runs on each.
                    run_cmd = direct_cmd[0] if t == "direct" and direct_cmd else cmd
                    rps, per = measure(port, watch, p, n, tests, run_cmd)
                    record(results, (name, t), rps, per, servers)
    finally:
        c.stop()
    m = b.machine()
    print(f"{m['cpus']} CPUs ({m['cpu']}); {rounds} round(s); CPU µs per request, "
          "median (min–max) over the rounds\n")
    print_tables(results, workloads, ["direct", "twemproxy", *proxies], "direct")


if __name__ == "__main__":
    main()
