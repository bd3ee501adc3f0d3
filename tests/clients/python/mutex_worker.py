"""One worker of the mutual-exclusion test: loops acquire -> hold briefly ->
release on one key with the library named on the command line, for a fixed
time, and prints its grants as JSON intervals (monotonic clock, shared by the
processes of one machine). Inside the critical section it also counts holders on
the passthrough backend, so an overlap is caught even between intervals."""

import json
import random
import sys
import time

from checks import BACKEND, PROXY_URL

lib, seconds = sys.argv[1], float(sys.argv[2])
KEY = "lock:mutex"
TTL_MS = 5_000

if lib == "redis-py":
    import redis

    client = redis.Redis.from_url(PROXY_URL)

    def acquire():
        lk = client.lock(KEY, timeout=TTL_MS / 1000, sleep=0.005, blocking_timeout=0.5)
        return lk if lk.acquire() else None

    def release(lk):
        lk.release()
elif lib == "redlock":
    from redlock import RedLock

    def acquire():
        lk = RedLock(KEY, connection_details=[{"url": PROXY_URL}], retry_times=1, ttl=TTL_MS)
        return lk if lk.acquire() else None

    def release(lk):
        lk.release()
elif lib == "redlock-py":
    from redlock import Redlock

    dlm = Redlock([PROXY_URL], retry_count=1)

    def acquire():
        return dlm.lock(KEY, TTL_MS) or None

    def release(lk):
        dlm.unlock(lk)
else:
    sys.exit(f"unknown library {lib}")

grants, violations, intervals = 0, 0, []
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    lk = acquire()
    if lk is None:
        time.sleep(random.uniform(0, 0.005))
        continue
    start = time.monotonic()
    if BACKEND.incr("mutex:inside") != 1:
        violations += 1
    time.sleep(random.uniform(0.001, 0.005))
    BACKEND.decr("mutex:inside")
    end = time.monotonic()
    release(lk)
    grants += 1
    intervals.append((start, end))

print(json.dumps({"lib": lib, "grants": grants, "violations": violations, "intervals": intervals}))
