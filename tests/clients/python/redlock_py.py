"""PyPI `redlock-py` 1.0.8 (its own environment: it installs a module also named
`redlock`), pointed at the proxy as its one server."""

from redlock import Redlock

from checks import PROXY_URL, assert_free, assert_held, check, done

dlm = Redlock([PROXY_URL], retry_count=1)
lock = dlm.lock("lock:rpy", 10_000)
check(lock, "lock granted")
check(0 < lock.validity <= 10_000, f"validity {lock.validity}")
assert_held("lock:rpy", lock.key)
check(dlm.lock("lock:rpy", 10_000) is False, "second lock refused")
dlm.unlock(lock)
assert_free("lock:rpy")
again = dlm.lock("lock:rpy", 10_000)
check(again, "lock free again")
dlm.unlock(again)
done("redlock-py 1.0.8")
