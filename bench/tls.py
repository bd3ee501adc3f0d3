#!/usr/bin/env python3
"""What TLS costs, on each side of the proxy, against plain in the same run.

Client side: one proxy listening on a plain port and a TLS port (same masters,
same backend); redis-benchmark SET/GET at P=1 and P=16 on each port, and on a
Redis serving both (`port` and `tls-port`) for reference.

Master side: two proxies, one with plain masters and one with the same kind of
masters over `rediss://`; redis-benchmark `SET lock:… NX PX` and loadgen at
concurrency 1 and 50 through each.

Rounds are interleaved; medians are reported. Certificates are made with
openssl in a temporary directory.

    cargo build --release --bins --examples && python3 bench/tls.py [--rounds 3]
"""

import argparse
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as b  # noqa: E402


def make_certs(d):
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=bench CA")
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return {k: os.path.join(d, f) for k, f in
            (("ca", "ca.crt"), ("cert", "server.crt"), ("key", "server.key"))}


def wait_listening(port, proc, timeout=10.0):
    """A TLS port answers no plaintext PING: a connection accepted is enough."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process on port {port} exited ({proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


class TlsCluster(b.Cluster):
    """Plain and TLS Redis servers, and the proxies measured."""

    def start(self, proxy_bin):
        self.certs = make_certs(self.dir)
        self.backend = self.redis_tls()
        self.masters = [self.redis_tls() for _ in range(3)]
        self.tls_port = b.free_port()
        tls_env = {
            "REDLOCK_PROXY_TLS_LISTEN": f"127.0.0.1:{self.tls_port}",
            "REDLOCK_PROXY_TLS_CERT_FILE": self.certs["cert"],
            "REDLOCK_PROXY_TLS_KEY_FILE": self.certs["key"],
            "REDLOCK_PROXY_TLS_CA_CERT_FILE": self.certs["ca"],
        }
        self.proxy_port, self.proxy = self.start_proxy(proxy_bin, tls_env)
        wait_listening(self.tls_port, self.proxy)
        self.rediss_port, self.rediss = self.start_proxy(
            proxy_bin, tls_env | {"REDLOCK_PROXY_TLS_LISTEN": ""}, scheme="rediss")

    def redis_tls(self):
        """A Redis on a plain port and a TLS port (the pair: plain, tls)."""
        port, tls = b.free_port(), b.free_port()
        d = os.path.join(self.dir, f"redis-{port}")
        os.makedirs(d)
        p = subprocess.Popen(
            ["redis-server", "--port", str(port), "--tls-port", str(tls), "--bind", "127.0.0.1",
             "--tls-cert-file", self.certs["cert"], "--tls-key-file", self.certs["key"],
             "--tls-ca-cert-file", self.certs["ca"], "--tls-auth-clients", "no",
             "--save", "", "--appendonly", "no", "--dir", d, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        self.pids = getattr(self, "pids", {}) | {port: p.pid, tls: p.pid}
        b.wait_port(port, p)
        wait_listening(tls, p)
        return port, tls

    def start_proxy(self, proxy_bin, extra_env, scheme="redis"):
        port = b.free_port()
        pick = 1 if scheme == "rediss" else 0
        args = [proxy_bin, "--listen", f"127.0.0.1:{port}",
                "--passthrough", f"{scheme}://127.0.0.1:{self.backend[pick]}"]
        for m in self.masters:
            args += ["--master", f"{scheme}://127.0.0.1:{m[pick]}"]
        env = dict(os.environ, RUST_LOG="warn", **extra_env)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        b.wait_port(port, proc)
        return port, proc


def benchmark(port, pipeline, n, tls=None, command=None, tests=None):
    """`redis_benchmark` of run.py, over TLS when `tls` (the CA file) is given."""
    args = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(n),
            "-P", str(pipeline), "--csv"]
    if tls:
        args += ["--tls", "--cacert", tls]
    if tests:
        args += ["-t", ",".join(tests)]
    if command:
        args += ["-r", "10000000"] + command
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, check=True).stdout
    rps = []
    for line in out.splitlines():
        cells = [c.strip('"') for c in line.split('","')]
        if len(cells) > 4 and cells[0] != "test":
            try:
                rps.append(float(cells[1]))
            except ValueError:
                pass
    return sum(rps) / len(rps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="tiny counts, one round, debug build")
    args = ap.parse_args()
    proxy_bin = b.built("redlock-proxy", args.quick)
    loadgen_bin = b.built(os.path.join("examples", "loadgen"), args.quick)
    rounds = 1 if args.quick else args.rounds
    n1, n16, nlock = (2000, 20000, 2000) if args.quick else (100_000, 1_000_000, 200_000)
    secs = 0.5 if args.quick else 3
    c = TlsCluster(proxy_bin)
    ca = c.certs["ca"]
    client = {  # name: (port, tls)
        "direct plain": (c.backend[0], None), "direct TLS": (c.backend[1], ca),
        "proxy plain": (c.proxy_port, None), "proxy TLS": (c.tls_port, ca),
    }
    masters = {"plain masters": c.proxy_port, "rediss:// masters": c.rediss_port}
    res = {(k, p): [] for k in client for p in (1, 16)}
    res |= {(k, "lock"): [] for k in masters}
    gen = {(k, conc): [] for k in masters for conc in (1, 50)}
    try:
        for r in range(rounds):
            order = list(client)
            order = order[r % len(order):] + order[:r % len(order)]
            for pipeline, n in ((1, n1), (16, n16)):
                for k in order:
                    port, tls = client[k]
                    res[(k, pipeline)].append(benchmark(port, pipeline, n, tls, tests=["set", "get"]))
            morder = list(masters) if r % 2 == 0 else list(reversed(masters))
            for k in morder:
                res[(k, "lock")].append(benchmark(masters[k], 1, nlock, command=b.LOCK_CMD))
                for conc in (1, 50):
                    gen[(k, conc)].append(b.loadgen(loadgen_bin, masters[k], conc, secs))
    finally:
        c.stop()
    med = b.median
    print(f"rounds: {rounds}; {b.machine()['cpu']}")
    print("\n| client side, SET/GET mean req/s | P=1 | P=16 |\n|---|---|---|")
    for k in client:
        print(f"| {k} | {med(res[(k, 1)]):,.0f} | {med(res[(k, 16)]):,.0f} |")
    tls_ratio = [med(res[("proxy TLS", p)]) / med(res[("proxy plain", p)]) for p in (1, 16)]
    direct_ratio = [med(res[("direct TLS", p)]) / med(res[("direct plain", p)]) for p in (1, 16)]
    print(f"| proxy TLS / proxy plain | {tls_ratio[0]:.2f}× | {tls_ratio[1]:.2f}× |")
    print(f"| direct TLS / direct plain | {direct_ratio[0]:.2f}× | {direct_ratio[1]:.2f}× |")
    print("\n| master side | SET NX PX req/s (c=50) | loadgen c=1 cycles/s | c=1 acquire p50 µs "
          "| loadgen c=50 cycles/s |\n|---|---|---|---|---|")
    for k in masters:
        g1 = gen[(k, 1)]
        g50 = gen[(k, 50)]
        print(f"| {k} | {med(res[(k, 'lock')]):,.0f} | {med([g['cycles_per_sec'] for g in g1]):,.0f} "
              f"| {med([g['acquire_us']['p50'] for g in g1]):.0f} "
              f"| {med([g['cycles_per_sec'] for g in g50]):,.0f} |")


if __name__ == "__main__":
    main()
