# Shared helpers for the scripts in this folder (sourced, not run).

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "need root to run: $*" >&2
        return 1
    fi
}

# Installs Debian packages that are missing (tries without `apt-get update` first).
apt_install() {
    missing=""
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
    done
    [ -z "$missing" ] && return 0
    echo "installing:$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    as_root apt-get install -y --no-install-recommends $missing >/dev/null 2>&1 || {
        as_root apt-get update -qq &&
            as_root apt-get install -y --no-install-recommends $missing >/dev/null
    }
}

# redis-server and redis-cli, from Debian's packages; openssl, for the TLS
# tests' RSA and EC keys in their traditional formats.
ensure_redis() {
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        apt_install redis-server redis-tools
    fi
    if ! command -v openssl >/dev/null 2>&1; then
        apt_install openssl
    fi
}

# HAProxy, in front of two proxies in the deployment test (config/haproxy.cfg).
ensure_haproxy() {
    if ! command -v haproxy >/dev/null 2>&1; then
        apt_install haproxy
    fi
}

# PHP with php-redis, Predis and Symfony Lock (its RedisStore keeps read and
# write locks), for the Symfony Lock compatibility test.
ensure_php() {
    apt_install php-cli php-redis php-predis php-symfony-lock
}

# Headless Chromium, which loads the status page in its test.
ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1; then
        apt_install chromium
    fi
}

# mdBook from crates.io (the Rust ecosystem's docs tool), for the book under
# docs/: built into target/tools once per checkout.
MDBOOK_VERSION=0.4.52
ensure_mdbook() {
    bin=target/tools/bin/mdbook
    if [ -x "$bin" ] && "$bin" --version | grep -q "v$MDBOOK_VERSION"; then
        return 0
    fi
    echo "installing mdbook $MDBOOK_VERSION" >&2
    cargo install mdbook --version "$MDBOOK_VERSION" --locked --no-default-features \
        --root target/tools --quiet
}

# What the benchmark suite's smoke run needs besides Redis: twemproxy.
ensure_bench_tools() {
    if ! command -v nutcracker >/dev/null 2>&1; then
        apt_install nutcracker
    fi
    # The package starts a system redis on 6379 on some systems; the proxy and the
    # tests use their own servers on free ports, so it is left alone.
}
