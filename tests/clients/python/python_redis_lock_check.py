"""PyPI `python-redis-lock` 4.0.1, the proxy as its server. Its release and
reset scripts delete the lock and push to a `lock-signal:NAME` list that wakes
`BLPOP` waiters: the proxy runs the lock part on the masters and the list part
on the backend after the vote."""

import threading

import redis
import redis_lock

from checks import BACKEND, MASTERS, PROXY_HOST, PROXY_PORT, assert_free, assert_held, check, done, wait_pttls, wait_until


def client(db=0):
    return redis.Redis(host=PROXY_HOST, port=PROXY_PORT, protocol=2, db=db)


def released_wakes_a_waiter(name, db):
    """A waiter with no expiry and no timeout blocks in BLPOP lock-signal:NAME
    on the backend until it is signalled: it finishes only if the release
    wakes it (in the clients' database)."""
    holder = redis_lock.Lock(client(db), name, expire=None)
    check(holder.acquire(blocking=False), "acquired")
    assert_held(f"lock:{name}", holder.id)
    waiter = redis_lock.Lock(client(db), name, expire=None)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("ok", waiter.acquire(blocking=True)), daemon=True)
    thread.start()
    wait_until(
        lambda: any(c.get("cmd") == "blpop" and c.get("db") == str(db) for c in BACKEND.client_list()),
        "the waiter blocked on the backend",
    )
    holder.release()
    thread.join(30)
    check(not thread.is_alive() and result.get("ok"), f"the waiter in db {db} woke at the release")
    assert_held(f"lock:{name}", waiter.id)
    waiter.release()
    assert_free(f"lock:{name}")


holder = redis_lock.Lock(client(), "prl", expire=None)
check(holder.acquire(blocking=False), "acquired")
assert_held("lock:prl", holder.id)

# A waiter with no expiry and no timeout blocks in BLPOP lock-signal:prl on the
# backend until it is signalled: it finishes only if the release wakes it.
waiter = redis_lock.Lock(client(), "prl", expire=None)
result = {}
thread = threading.Thread(target=lambda: result.setdefault("ok", waiter.acquire(blocking=True)), daemon=True)
thread.start()
wait_until(
    lambda: any(c.get("cmd") == "blpop" for c in BACKEND.client_list()),
    "the waiter blocked on the backend",
)

# Not the owner: NotAcquired, and the lock stays.
try:
    redis_lock.Lock(client(), "prl", id="someone-else").release()
    raise AssertionError("released someone else's lock")
except redis_lock.NotAcquired:
    pass
assert_held("lock:prl", holder.id)

holder.release()
thread.join(30)
check(not thread.is_alive() and result.get("ok"), "the waiter woke at the release and acquired")
assert_held("lock:prl", waiter.id)
check(all(m.get("lock-signal:prl") is None for m in MASTERS), "signal list on a master")
waiter.release()
assert_free("lock:prl")

# The same for clients in another database: the signal goes to theirs.
released_wakes_a_waiter("prl-db2", 2)

# Extend: the lock key only (the signal key it passes is left alone).
# (The signal outlives the checks below: 1 s by default, gone before the last
# one on a loaded machine.)
timed = redis_lock.Lock(client(), "prl2", expire=10, signal_expire=60_000)
check(timed.acquire(blocking=False), "acquired with expiry")
timed.extend(expire=60)
wait_pttls("lock:prl2", lambda p: p > 50_000, "extended pttl")

# Reset: a forced release, which signals too.
timed.reset()
assert_free("lock:prl2")
check(BACKEND.exists("lock-signal:prl2") == 1, "reset signalled on the backend")
done("python-redis-lock 4.0.1")
