"""redis-py's redis.lock.Lock through the proxy, as is. Run with PROTOCOL=2 or 3
(or "default": redis-py 8 speaks RESP3 by default)."""

import os
import threading
import time

import redis
from redis.exceptions import LockError, LockNotOwnedError

from checks import (PROXY_URL, MASTERS, assert_free, assert_held, check, done, holders,
                    wait_pttls)

proto = os.environ.get("PROTOCOL", "default")
kwargs = {} if proto == "default" else {"protocol": int(proto)}
r = redis.Redis.from_url(PROXY_URL, **kwargs)
tag = f"{redis.__version__}-{proto}"
if proto in ("3", "default") and redis.__version__.startswith("8"):
    check(r.connection_pool.get_connection().protocol in (3, "3"), "RESP3 expected")


def key(name):
    return f"lock:rp-{tag}-{name}"


# Non-blocking acquire, locked(), owned(), and the token on the masters.
k = key("basic")
lock = r.lock(k, timeout=10)
check(lock.acquire(blocking=False), "non-blocking acquire")
token = lock.local.token
assert_held(k, token)
check(lock.locked() and lock.owned(), "locked and owned")
wait_pttls(k, lambda p: 8_000 < p <= 10_000, "pttl")

# Another owner cannot take it, with or without waiting.
other = r.lock(k, timeout=10, sleep=0.05)
check(not other.acquire(blocking=False), "second non-blocking acquire refused")
check(not other.owned(), "not owned by the other")
t0 = time.monotonic()
check(not other.acquire(blocking=True, blocking_timeout=0.3), "blocking_timeout acquire refused")
# redis-py gives up when the next try would pass the timeout.
check(time.monotonic() - t0 >= 0.2, "blocking_timeout waited")

# extend adds to the TTL; replace_ttl sets it; reacquire resets it to the timeout.
lock.extend(10)
wait_pttls(k, lambda p: p > 15_000, "extend add")
lock.extend(5, replace_ttl=True)
wait_pttls(k, lambda p: 0 < p <= 5_000, "extend replace")
lock.reacquire()
wait_pttls(k, lambda p: 8_000 < p <= 10_000, "reacquire")

# Release clears every master.
lock.release()
assert_free(k)
check(not lock.locked(), "not locked after release")

# A blocking acquire gets the lock when its holder releases it.
k = key("blocking")
holder = r.lock(k, timeout=5, thread_local=False)  # released from another thread
check(holder.acquire(), "holder acquires")
threading.Timer(0.3, holder.release).start()
waiter = r.lock(k, timeout=5, sleep=0.02)
t0 = time.monotonic()
check(waiter.acquire(blocking=True, blocking_timeout=5), "waiter acquires after release")
check(time.monotonic() - t0 >= 0.25, "waiter waited for the release")
assert_held(k, waiter.local.token)
waiter.release()

# The with block.
k = key("with")
with r.lock(k, timeout=5) as held:
    assert_held(k, held.local.token)
assert_free(k)

# LockNotOwnedError when the token was replaced behind the owner's back.
k = key("stolen")
lock = r.lock(k, timeout=10)
check(lock.acquire(), "acquire before theft")
assert_held(k, lock.local.token)
for m in MASTERS:
    m.set(k, "thief", px=10_000)
try:
    lock.extend(5)
    raise AssertionError("extend of a stolen lock succeeded")
except LockNotOwnedError:
    pass
try:
    lock.release()
    raise AssertionError("release of a stolen lock succeeded")
except LockNotOwnedError:
    pass
check(holders(k, "thief") == len(MASTERS), "the thief's lock is untouched")
for m in MASTERS:
    m.delete(k)

# timeout=None: held until released.
k = key("forever")
lock = r.lock(k, timeout=None)
check(lock.acquire(), "acquire without timeout")
assert_held(k, lock.local.token)
wait_pttls(k, lambda p: p == -1, "no expiry")
try:
    lock.extend(5)
    raise AssertionError("extend of a lock without timeout succeeded")
except LockError:
    pass
lock.release()
assert_free(k)

# Data commands on the same client still work.
r.set(f"data:{tag}", "v")
check(r.get(f"data:{tag}") == b"v", "data round trip")

done(f"redis-py {tag}")
