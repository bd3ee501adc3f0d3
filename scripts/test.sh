#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what the tests need (from
# Debian: redis-server, redis-tools, haproxy, PHP with Symfony Lock, headless
# Chromium and, for the benchmark smoke run, nutcracker; client libraries from
# PyPI and npm at pinned versions; mdBook from crates.io), then checks
# formatting, lints, builds the book and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_redis
ensure_haproxy
ensure_php
ensure_chromium
ensure_bench_tools
ensure_mdbook
if [ -x scripts/install-clients.sh ]; then
    scripts/install-clients.sh
fi
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The book (docs/); its links and examples are checked by tests/it/book.rs.
target/tools/bin/mdbook build docs
cargo test --locked "$@"
