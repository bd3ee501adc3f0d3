"""Shared helpers for the client-library tests: where the proxy and the masters
are (from the environment the Rust test sets), and direct inspection of the
masters, so nothing passes by accident through the passthrough backend."""

import os
import sys
import time

import redis

PROXY_HOST = "127.0.0.1"
PROXY_PORT = int(os.environ["PROXY_PORT"])
PROXY_URL = f"redis://{PROXY_HOST}:{PROXY_PORT}"
MASTER_PORTS = [int(p) for p in os.environ["MASTER_PORTS"].split(",")]
BACKEND_PORT = int(os.environ["BACKEND_PORT"])
MASTERS = [redis.Redis(host="127.0.0.1", port=p, protocol=2) for p in MASTER_PORTS]
BACKEND = redis.Redis(host="127.0.0.1", port=BACKEND_PORT, protocol=2)
QUORUM = len(MASTERS) // 2 + 1


def as_bytes(v):
    if v is None or isinstance(v, bytes):
        return v
    return str(v).encode()


def holders(key, token):
    """How many masters hold `key` with value `token`."""
    token = as_bytes(token)
    return sum(1 for m in MASTERS if m.get(key) == token)


def values(key):
    return [m.get(key) for m in MASTERS]


def wait_until(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.005)


def assert_held(key, token):
    """The lock is on a quorum of masters at once, and on all of them shortly after."""
    assert holders(key, token) >= QUORUM, f"{key}: {values(key)} (token {token!r})"
    wait_until(lambda: holders(key, token) == len(MASTERS), f"{key} on every master")
    assert BACKEND.get(key) is None, f"{key} reached the passthrough backend"


def assert_free(key):
    """Gone from a quorum at once (the proxy answered after a quorum), and from
    every master shortly after."""
    assert sum(1 for v in values(key) if v is None) >= QUORUM, f"{key} still on masters: {values(key)}"
    wait_until(lambda: all(v is None for v in values(key)), f"{key} gone from every master")


def wait_pttls(key, pred, what):
    """Every master's PTTL of `key` satisfies `pred`, soon."""
    wait_until(lambda: all(pred(p) for p in pttls(key)), f"{what}: {pttls(key)}")


def pttls(key):
    return [m.pttl(key) for m in MASTERS]


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def done(name):
    print(f"{name}: ok")
    sys.stdout.flush()
