"""config/compose.yaml parses, has three persistent masters, a backend and the
proxy, and passes the proxy only options it knows (ENV_NAMES, from the binary)."""
import os
import sys

import yaml

known = set(os.environ["ENV_NAMES"].split(","))
with open(sys.argv[1]) as f:
    compose = yaml.safe_load(f)
services = compose["services"]
masters = [s for s in services if s.startswith("master")]
assert len(masters) == 3, masters
for m in masters:
    cmd = services[m]["command"]
    assert "--appendonly" in cmd and cmd[cmd.index("--appendonly") + 1] == "yes", cmd
    assert cmd[cmd.index("--appendfsync") + 1] == "always", cmd
proxy = services["proxy"]
env = proxy["environment"]
for k in env:
    assert k.startswith("REDLOCK_PROXY_") and k[len("REDLOCK_PROXY_"):] in known, k
urls = env["REDLOCK_PROXY_MASTERS"].split(",")
assert sorted(u.split("//")[1].split(":")[0] for u in urls) == sorted(masters), urls
assert env["REDLOCK_PROXY_PASSTHROUGH"].split("//")[1].split(":")[0] in services
test = proxy["healthcheck"]["test"]
assert test[1] == "/usr/local/bin/redlock-proxy" and test[2] == "healthcheck", test
print(" ".join(f"{k}={v}" for k, v in env.items()))
