"""config/compose.ha.yaml parses: three persistent masters, a backend, two
proxies with the same environment (options the binary knows, ENV_NAMES) and a
/readyz health check, and HAProxy mounting config/haproxy.cfg in front of them.
Prints the proxies' environment as KEY=VALUE words."""
import os
import sys

import yaml

known = set(os.environ["ENV_NAMES"].split(","))
with open(sys.argv[1]) as f:
    compose = yaml.safe_load(f)
services = compose["services"]
masters = sorted(s for s in services if s.startswith("master"))
assert len(masters) == 3, masters
for m in masters:
    cmd = services[m]["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes", cmd
    assert cmd[cmd.index("--appendfsync") + 1] == "always", cmd
assert "backend" in services
proxies = sorted(s for s in services if s.startswith("proxy"))
assert proxies == ["proxy1", "proxy2"], proxies
env = services["proxy1"]["environment"]
assert services["proxy2"]["environment"] == env
for k in env:
    assert k.startswith("REDLOCK_PROXY_") and k[len("REDLOCK_PROXY_"):] in known, k
assert "REDLOCK_PROXY_MAX_TTL" in env, "several proxies need max_ttl"
for p in proxies:
    test = services[p]["healthcheck"]["test"]
    assert test[2] == "healthcheck" and test[-1].endswith("/readyz"), test
haproxy = services["haproxy"]
assert sorted(haproxy["depends_on"]) == proxies
assert any(v.startswith("./haproxy.cfg:") for v in haproxy["volumes"]), haproxy["volumes"]
assert "7379:7379" in haproxy["ports"], haproxy["ports"]
print(" ".join(f"{k}={v}" for k, v in env.items()))
