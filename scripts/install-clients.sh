#!/usr/bin/env bash
# Installs the client libraries the compatibility tests run, at pinned versions,
# from PyPI and npm, into target/clients/ (one virtual environment per set that
# cannot share one). Idempotent: a stamp file records what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=target/clients
mkdir -p "$root"

# name | pip requirements
python_envs=(
    "py-redis8|redis==8.1.0 redlock==1.2.0 pottery==3.0.1"
    "py-redis5|redis==5.3.1"
    "py-redlockpy|redlock-py==1.0.8 redis==5.3.1"
    "py-ops|redis==8.1.0 prometheus-client==0.26.0 pyyaml==6.0.3"
    "py-aioredlock|aioredlock==0.7.3 aioredis==1.3.1 redis==8.1.0"
    "py-redis-lock|python-redis-lock==4.0.1 redis==8.1.0"
)
# name | npm packages
node_envs=(
    "node-redlock4|redlock@4.2.0 ioredis@4.31.0"
    "node-redlock5|redlock@5.0.0-beta.2 ioredis@6.0.0"
    "node-sesame|@sesamecare-oss/redlock@1.4.0 ioredis@5.9.3"
    "node-semaphore|redis-semaphore@5.8.0 ioredis@5.9.3"
    "node-universal|redlock-universal@0.8.5 ioredis@5.9.3"
    "node-mutexes|simple-redis-mutex@3.0.0 redis@5.10.0 redis-lock@1.0.0 redis4@npm:redis@4.7.1 ioredis@5.9.3"
)

python=${PYTHON:-python3}
for entry in "${python_envs[@]}"; do
    name=${entry%%|*}
    reqs=${entry#*|}
    dir=$root/$name
    stamp="$dir/.installed"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ]; then continue; fi
    echo "installing $name: $reqs" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    # shellcheck disable=SC2086
    "$dir/bin/pip" install --quiet --disable-pip-version-check $reqs
    echo "$reqs" >"$stamp"
done

# redis-py's own test suite, run through the proxy (tests/suite): the sdist
# from PyPI (its tests are not in the wheel) and what the tests import.
suite_version=6.4.0
suite_reqs="redis==$suite_version redis-entraid==1.0.0 pytest==9.2.0 pytest-asyncio==1.5.0 pytest-timeout==2.4.0 mock==5.2.0 packaging==26.4"
dir=$root/py-redis-suite
stamp="$dir/.installed"
if ! { [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$suite_reqs" ]; }; then
    echo "installing py-redis-suite: $suite_reqs, and the redis $suite_version sdist" >&2
    rm -rf "$dir"
    "$python" -m venv "$dir"
    # shellcheck disable=SC2086
    "$dir/bin/pip" install --quiet --disable-pip-version-check $suite_reqs
    "$dir/bin/pip" download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: "redis==$suite_version" -d "$dir/sdist"
    tar -xzf "$dir/sdist/redis-$suite_version.tar.gz" -C "$dir"
    mv "$dir/redis-$suite_version" "$dir/source"
    echo "$suite_reqs" >"$stamp"
fi

for entry in "${node_envs[@]}"; do
    name=${entry%%|*}
    pkgs=${entry#*|}
    dir=$root/$name
    stamp="$dir/.installed"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pkgs" ]; then continue; fi
    echo "installing $name: $pkgs" >&2
    rm -rf "$dir"
    mkdir -p "$dir"
    echo '{"name":"'"$name"'","private":true}' >"$dir/package.json"
    # shellcheck disable=SC2086
    npm install --prefix "$dir" --no-audit --no-fund --silent --save-exact $pkgs
    echo "$pkgs" >"$stamp"
done
