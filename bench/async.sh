#!/usr/bin/env bash
# WASI 0.3 (component-model async) web components beside WASI 0.2 ones, on one host:
# the plain hello (samples/hello, the plain engine) and the test guest async-web (its `/`
# streams "Hello from WASI 0.3" in two writes, on the async engine), the same wrk load on
# each, with warm instances reused, then the ratio.
#
#   bench/async.sh          # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# Run by bench/run.sh; runs alone too. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

need_wrk
cargo build --release -q -p wdeploy
(cd tests/components/guests/async-web &&
  cargo build --release -q --locked --target wasm32-wasip2 --target-dir "$root/target/test-components")
W=$root/target/release/wdeploy
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

mkdir "$work/async-web"
cp "$root/target/test-components/wasm32-wasip2/release/async_web.wasm" "$work/async-web/"
echo "web: async_web" >"$work/async-web/Procfile"

start_host "$W"
"$W" apps:create hello --no-link >/dev/null
"$W" push -a hello --dir samples/hello >"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; exit 1; }
"$W" apps:create async-web --no-link >/dev/null
"$W" push -a async-web --dir "$work/async-web" >>"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; exit 1; }

declare -A rps
echo "wrk -t$threads -c$connections -d$duration, loopback, one host, warm instances reused ($(nproc) cores)"
wrk_row "WASI 0.2 hello (plain engine)" "http://127.0.0.1:$router/" hello.localhost
wrk_row "WASI 0.3 async-web (async engine)" "http://127.0.0.1:$router/" async-web.localhost
echo "WASI 0.3 / WASI 0.2: $(ratio "${rps[WASI 0.3 async-web (async engine)]}" "${rps[WASI 0.2 hello (plain engine)]}")"
stop_host
