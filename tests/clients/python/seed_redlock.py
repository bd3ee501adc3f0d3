"""The seed library, PyPI `redlock` 1.2.0, pointed at the proxy as its one node."""

import threading
import time

from redlock import RedLock, RedLockError, RedLockFactory, ReentrantRedLock

from checks import PROXY_URL, assert_free, assert_held, check, done, holders, values, wait_until


def nodes():
    # RedLock pops 'url' from the dict: a fresh list each time.
    return [{"url": PROXY_URL}]


lock = RedLock("lock:seed", connection_details=nodes(), ttl=10_000)
check(lock.acquire(), "acquire")
assert_held("lock:seed", lock.lock_key)
rival = RedLock("lock:seed", connection_details=nodes(), retry_times=1, ttl=10_000)
check(not rival.acquire(), "rival refused")
assert_held("lock:seed", lock.lock_key)
lock.release()
assert_free("lock:seed")

with RedLock("lock:seed-with", connection_details=nodes(), ttl=5_000) as _:
    pass
assert_free("lock:seed-with")
held = RedLock("lock:seed-with", connection_details=nodes(), ttl=5_000)
held.acquire()
try:
    with RedLock("lock:seed-with", connection_details=nodes(), retry_times=1, ttl=5_000):
        raise AssertionError("with block entered while held")
except RedLockError:
    pass
held.release()

factory = RedLockFactory(connection_details=nodes())
flock = factory.create_lock("lock:seed-factory", ttl=5_000)
check(flock.acquire(), "factory lock")
assert_held("lock:seed-factory", flock.lock_key)
flock.release()
assert_free("lock:seed-factory")

reentrant = ReentrantRedLock("lock:seed-re", connection_details=nodes(), ttl=5_000)
check(reentrant.acquire() and reentrant.acquire(), "reentrant acquires twice")
token = reentrant.lock_key
reentrant.release()
assert_held("lock:seed-re", token)
reentrant.release()
assert_free("lock:seed-re")

# Two factories contend for one resource: never two holders.
factories = [RedLockFactory(connection_details=nodes()) for _ in range(2)]
inside = []
grants = [0, 0]
errors = []


def worker(i):
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        lk = factories[i].create_lock("lock:seed-contend", ttl=5_000, retry_times=1, retry_delay=10)
        if not lk.acquire():
            continue
        inside.append(i)
        if len(inside) != 1:
            errors.append(f"two holders: {inside}")
        if holders("lock:seed-contend", lk.lock_key) < 2:
            errors.append("granted without a quorum")
        grants[i] += 1
        time.sleep(0.005)
        inside.remove(i)
        lk.release()


threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
check(not errors, errors[:3])
check(grants[0] > 0 and grants[1] > 0, f"both factories got the lock: {grants}")
wait_until(lambda: all(v is None for v in values("lock:seed-contend")), "contended lock free")
done(f"redlock 1.2.0 (grants {grants})")
