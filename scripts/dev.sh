#!/usr/bin/env bash
# Runs redlock-proxy in dev mode: 3 local redis-server masters and a passthrough
# backend, the proxy on 127.0.0.1:7379. Installs redis-server when missing.
# Extra arguments go to `redlock-proxy dev` (e.g. --masters 5, --listen ADDR).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
# The first release build takes minutes: its progress shows.
cargo build --release
exec target/release/redlock-proxy dev "$@"
