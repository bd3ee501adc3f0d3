"""The operations surface through real clients: /metrics parsed with the
Prometheus client library's OpenMetrics parser (counters move after operations,
histograms are there), INFO and PROXY commands through redis-py."""
import os
import urllib.request

import redis
from prometheus_client.openmetrics.parser import text_string_to_metric_families

PROXY = int(os.environ["PROXY_PORT"])
METRICS = int(os.environ["METRICS_PORT"])
MASTERS = [int(p) for p in os.environ["MASTER_PORTS"].split(",")]


def scrape():
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics") as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        body = r.read().decode()
    return {f.name: f for f in text_string_to_metric_families(body)}


def sample(fams, family, suffix="", **labels):
    for s in fams[family].samples:
        if s.name == family + suffix and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise AssertionError(f"no {family}{suffix} {labels}")


before = scrape()
types = {
    "redlock_proxy_clients": "gauge",
    "redlock_proxy_clients_accepted": "counter",
    "redlock_proxy_commands": "counter",
    "redlock_proxy_lock_operations": "counter",
    "redlock_proxy_lock_operation_duration_seconds": "histogram",
    "redlock_proxy_master_request_duration_seconds": "histogram",
    "redlock_proxy_master_votes": "counter",
    "redlock_proxy_master_up": "gauge",
    "redlock_proxy_master_quarantined": "gauge",
    "redlock_proxy_master_timeouts": "counter",
    "redlock_proxy_master_errors": "counter",
    "redlock_proxy_quorum_available": "gauge",
    "redlock_proxy_backend_errors": "counter",
    "redlock_proxy_backend_up": "gauge",
    "redlock_proxy_client_buffer_bytes": "gauge",
    "redlock_proxy_master_owed_releases": "gauge",
}
for name, kind in types.items():
    assert name in before, f"missing {name}"
    assert before[name].type == kind, f"{name}: {before[name].type}"
assert sample(before, "redlock_proxy_quorum_available") == 1
for port in MASTERS:
    assert sample(before, "redlock_proxy_master_up", master=f"127.0.0.1:{port}") == 1

r = redis.Redis(port=PROXY)
other = redis.Redis(port=PROXY)
for i in range(5):
    assert r.set(f"lock:ops{i}", "t", nx=True, px=10000)
assert other.set("lock:ops0", "u", nx=True, px=10000) is None
release = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
for i in range(5):
    assert r.eval(release, 1, f"lock:ops{i}", "t") == 1
r.set("data:ops", "1")

after = scrape()


def moved(family, suffix="", **labels):
    return sample(after, family, suffix, **labels) - sample(before, family, suffix, **labels)


assert moved("redlock_proxy_lock_operations", "_total", kind="acquire", outcome="ok") == 5
assert moved("redlock_proxy_lock_operations", "_total", kind="acquire", outcome="refused") == 1
assert moved("redlock_proxy_lock_operations", "_total", kind="release", outcome="ok") == 5
assert moved("redlock_proxy_lock_operation_duration_seconds", "_count", kind="acquire") == 6
assert moved("redlock_proxy_commands", "_total", kind="passthrough") >= 1
yes = sum(moved("redlock_proxy_master_votes", "_total", master=f"127.0.0.1:{p}", vote="yes") for p in MASTERS)
assert yes >= 10, yes  # at least a quorum of yes votes for each of 5 grants
assert sum(moved("redlock_proxy_master_request_duration_seconds", "_count", master=f"127.0.0.1:{p}") for p in MASTERS) >= 22

# INFO: the backend's sections and the proxy's; INFO proxy: the proxy's alone.
info = r.info()
assert "redis_version" in info and info["proxy_version"], info.keys()
assert info["masters"] == 3 and info["quorum"] == 2 and info["masters_up"] == 3
proxy_only = r.info("proxy")
assert "redis_version" not in proxy_only and proxy_only["quorum_available"] == 1
assert r.info("server")["redis_version"] and "proxy_version" not in r.info("server")

masters = r.execute_command("PROXY", "MASTERS")
assert len(masters) == 3
first = masters[0]
if isinstance(first, list):  # RESP2: a flat list
    first = dict(zip(first[::2], first[1::2]))
first = {k.decode() if isinstance(k, bytes) else k: v for k, v in first.items()}
assert first["state"] in (b"up", "up") and first["quarantined"] == 0, first
config = r.execute_command("PROXY", "CONFIG")
if isinstance(config, list):
    config = dict(zip(config[::2], config[1::2]))
config = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in config.items()}
assert config["lock_patterns"].startswith("lock:*"), config
assert config["requirepass"] == "none"
print("ok")
