"""Acquire + release cycles with the seed library (PyPI `redlock` 1.2.0), either
against the masters directly (the library runs RedLock itself) or through the
proxy as its one node. Prints cycles per second as JSON.

python seed_redlock.py SECONDS PORT [PORT...]
"""

import json
import sys
import time

from redlock import RedLockFactory

seconds = float(sys.argv[1])
ports = [int(p) for p in sys.argv[2:]]
factory = RedLockFactory(connection_details=[{"host": "127.0.0.1", "port": p} for p in ports])
n = 0
refused = 0
start = time.monotonic()
deadline = start + seconds
while time.monotonic() < deadline:
    lock = factory.create_lock(f"lock:seed:{n % 10000}", ttl=10_000, retry_times=1)
    if lock.acquire():
        lock.release()
        n += 1
    else:
        refused += 1
elapsed = time.monotonic() - start
print(json.dumps({"nodes": len(ports), "cycles": n, "refused": refused, "cycles_per_sec": n / elapsed}))
