"""PyPI `aioredlock` 0.7.3 (aioredis 1.3.1), the proxy as its one instance. Its
set_lock script refuses with an error reply (`redis.error_reply('ERROR')`) and
reads any other reply as success; its unset_lock script fails with an error
for "not yours"."""

import asyncio

from aioredlock import Aioredlock, LockError

from checks import PROXY_HOST, PROXY_PORT, assert_free, assert_held, check, done, pttls, wait_pttls


async def main():
    node = [{"host": PROXY_HOST, "port": PROXY_PORT}]
    mine = Aioredlock(node, retry_count=1)
    rival = Aioredlock(node, retry_count=1)

    lock = await mine.lock("lock:aio", lock_timeout=10)
    check(lock.valid, "lock granted")
    assert_held("lock:aio", lock.id)

    # The masters refuse the rival with an error reply: never a second holder.
    try:
        await rival.lock("lock:aio", lock_timeout=10)
        raise AssertionError("a second holder")
    except LockError:
        pass
    assert_held("lock:aio", lock.id)

    # Extend (the same script with the same identifier).
    await mine.extend(lock, lock_timeout=30)
    wait_pttls("lock:aio", lambda p: p > 20_000, "extended pttl")

    # Read back after the extend: is_locked (GET) and get_lock (its TTL
    # script, answered from a quorum: the TTL in seconds when the id holds it).
    check(await mine.is_locked("lock:aio"), "is_locked")
    check(await rival.is_locked(lock), "is_locked by the Lock")
    again = await mine.get_lock("lock:aio", lock.id)
    check(again.valid and 20 < again.lock_timeout <= 30, f"get_lock ttl {again.lock_timeout}")
    try:
        await rival.get_lock("lock:aio", "not-the-owner")
        raise AssertionError("get_lock with another id")
    except LockError:
        pass
    check(not await mine.is_locked("lock:aio-free"), "a free key is not locked")

    # Not yours: the rival's unlock is an error, and the lock stays.
    from aioredlock.lock import Lock

    try:
        await rival.unlock(Lock(rival, "lock:aio", "not-the-owner", valid=True))
    except LockError:
        pass
    assert_held("lock:aio", lock.id)
    check(all(p > 0 for p in pttls("lock:aio")), "still held")

    await mine.unlock(lock)
    assert_free("lock:aio")
    check(not await mine.is_locked("lock:aio"), "not locked once released")
    try:
        await mine.get_lock("lock:aio", lock.id)
        raise AssertionError("get_lock of a released lock")
    except LockError:
        pass

    again = await rival.lock("lock:aio", lock_timeout=10)
    check(again.valid, "free again")
    await rival.unlock(again)
    assert_free("lock:aio")
    await mine.destroy()
    await rival.destroy()
    done("aioredlock 0.7.3")


asyncio.run(main())
