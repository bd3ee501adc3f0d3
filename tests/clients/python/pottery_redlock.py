"""pottery's Redlock with the proxy as its one master (keys are `redlock:<key>`)."""

import redis
from pottery import Redlock

from checks import PROXY_URL, assert_free, assert_held, check, done, pttls, wait_pttls

r = redis.Redis.from_url(PROXY_URL)
lock = Redlock(key="printer", masters={r}, auto_release_time=10)
check(lock.acquire(blocking=False), "acquire")
key = "redlock:printer"
assert_held(key, lock._uuid)
remaining = lock.locked()
check(8 < remaining <= 10, f"locked() = {remaining} s")
rival = Redlock(key="printer", masters={r}, auto_release_time=10)
check(not rival.acquire(blocking=False), "rival refused")
check(rival.locked() == 0, "rival does not hold it")
for m_pttl in pttls(key):
    check(m_pttl > 0, "ttl set")
lock.extend()
wait_pttls(key, lambda p: p > 9_000, "extended")
lock.release()
assert_free(key)
check(lock.locked() == 0, "released")
with Redlock(key="printer", masters={r}, auto_release_time=5) as held:
    assert_held(key, held._uuid)
assert_free(key)
done("pottery 3.0.1")
