"""redis-py's extensions against a proxy with max_ttl = 60 s: every way a TTL is
set obeys the policy, and an extension is judged on the TTL that results."""

import redis
from redis.exceptions import ResponseError

from checks import PROXY_URL, check, done, holders, pttls, wait_pttls

r = redis.Redis.from_url(PROXY_URL, protocol=2)
k = "lock:policy"
lock = r.lock(k, timeout=30)
check(lock.acquire(blocking=False), "acquire")
token = lock.local.token

# A 2 ms extension of a lock with 30 s left leaves it held: Redis answers 1.
check(lock.extend(0.002) is True, "a tiny extension succeeds")
wait_pttls(k, lambda p: 28_000 < p <= 30_002, "tiny extension")

# Past max_ttl, in any mode, the extension is refused and changes nothing.
for kwargs in ({"replace_ttl": True}, {}):
    for seconds in (3600, 40):  # 40 s added to ~30 s left passes 60 s too
        if kwargs and seconds == 40:
            continue  # replacing with 40 s is within the policy
        try:
            lock.extend(seconds, **kwargs)
            check(False, f"extend({seconds}, {kwargs}) was not refused")
        except ResponseError as e:
            check("max_ttl" in str(e), f"extend({seconds}, {kwargs}): {e}")
check(all(p <= 30_002 for p in pttls(k)), f"nothing changed: {pttls(k)}")

# Within the policy it works, in both modes.
lock.extend(50, replace_ttl=True)
wait_pttls(k, lambda p: 48_000 < p <= 50_000, "replace within the policy")
lock.extend(5)
wait_pttls(k, lambda p: 53_000 < p <= 55_000, "add within the policy")

# A compare-and-pexpire sent by hand obeys it too.
EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
try:
    r.eval(EXTEND, 1, k, token, 10**9)
    check(False, "a 1e9 ms pexpire was not refused")
except ResponseError as e:
    check("max_ttl" in str(e), str(e))

lock.release()
check(holders(k, token) == 0, "released")
done("redis-py ttl policy")
