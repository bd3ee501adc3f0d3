#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (redis-server,
# redis-tools, haproxy, PHP with Symfony Lock, headless Chromium and, for the benchmark smoke run, nutcracker from Debian; client
# libraries from PyPI and npm at pinned versions), then checks formatting, lints,
# and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_haproxy
ensure_php
ensure_chromium
ensure_bench_tools
if [ -x scripts/install-clients.sh ]; then
    scripts/install-clients.sh
fi
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked "$@"
