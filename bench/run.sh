#!/usr/bin/env bash
# The benchmark suite: wdeploy's router against `wasmtime serve` and a native hyper server,
# the same hello component and load for each, in one run on this machine; then tuning
# sweeps (WEB_CONCURRENCY, web.max_requests), bench/fleet.py (cold start, router
# latency with 1/100/1,000 apps, density up to 10,000 dynos), bench/async.sh (WASI 0.3
# components beside WASI 0.2 ones), bench/idioms.sh (every way of writing a body),
# bench/cpu_split.sh (where the machine's CPU goes under one idiom, beside wasmtime serve),
# bench/addons.sh (durable add-on writes and reads through the router), bench/polyglot.sh
# (JavaScript and Python hellos beside wasmtime serve) and bench/idle.py (a host of
# 100,000 idle apps; IDLE_APPS=N for fewer).
#
#   bench/run.sh            # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# Installs its peers itself: wrk (apt) and wasmtime-cli 48.0.8 (cargo install into
# target/bench-tools, about 11 minutes the first time). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
tools=$root/target/bench-tools
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

need_wrk
install_wasmtime "$tools" >/dev/null
cargo build --release -q -p wdeploy -p native-hello
W=$root/target/release/wdeploy
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config
# Production settings for both sides: no backtrace capture on every error value.
export RUST_BACKTRACE=0

wait_http() { for _ in $(seq 1 600); do curl -s -o /dev/null -H "Host: $2" "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

# One host with two apps: hello (warm instances reused) and hello-fresh (isolation = request).
api=$(free_port); router=$(free_port)
"$W" host --data "$work/data" --listen "127.0.0.1:$router" --api "127.0.0.1:$api" >"$work/host.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -f "$work/data/admin-token" ] && break; sleep 0.1; done
WDEPLOY_TOKEN=$(cat "$work/data/admin-token")
export WDEPLOY_HOST=http://127.0.0.1:$api WDEPLOY_TOKEN
"$W" apps:create hello --no-link >/dev/null
"$W" push -a hello --dir samples/hello >"$work/push.log" 2>&1
cp -r samples/hello "$work/hello-fresh"
printf '[web]\nisolation = "request"\n' >"$work/hello-fresh/wdeploy.toml"
"$W" apps:create hello-fresh --no-link >/dev/null
"$W" push -a hello-fresh --dir "$work/hello-fresh" >>"$work/push.log" 2>&1
components=("$WDEPLOY_CACHE_DIR"/apps/hello-*/slugs/*/web.wasm)
component=${components[0]}
[ -f "$component" ] || { echo "no web.wasm in $WDEPLOY_CACHE_DIR/apps/hello-*/slugs" >&2; exit 1; }

serve_default=$(free_port); serve_reuse=$(free_port); native=$(free_port)
"$tools/bin/wasmtime" serve -S cli --addr "127.0.0.1:$serve_default" "$component" >/dev/null 2>&1 &
pids+=($!)
"$tools/bin/wasmtime" serve -S cli --max-instance-reuse-count 1000 --addr "127.0.0.1:$serve_reuse" "$component" >/dev/null 2>&1 &
pids+=($!)
"$root/target/release/native-hello" "$native" >/dev/null &
pids+=($!)

declare -A rps p50 p99
run() { # name url host
  wait_http "$2" "$3"
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -H "Host: $3" "$2")
  rps[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50[$1]=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99[$1]=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  printf '%-28s %10s req/s  p50 %-9s p99 %-9s %s\n' "$1" "${rps[$1]}" "${p50[$1]}" "${p99[$1]}" "$errors"
}
echo "wrk -t$threads -c$connections -d$duration, loopback, samples/hello web component ($(nproc) cores)"
run "wdeploy (reuse)" "http://127.0.0.1:$router/" "hello.localhost"
run "wdeploy (isolation=request)" "http://127.0.0.1:$router/" "hello-fresh.localhost"
run "wasmtime serve (default)" "http://127.0.0.1:$serve_default/" "localhost"
run "wasmtime serve (reuse 1000)" "http://127.0.0.1:$serve_reuse/" "localhost"
run "native hyper" "http://127.0.0.1:$native/" "localhost"
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}')"; }
echo
echo "wdeploy (reuse) / wasmtime serve (reuse 1000):           $(ratio "${rps[wdeploy (reuse)]}" "${rps[wasmtime serve (reuse 1000)]}")  (target >= 1.2)"
echo "wdeploy (isolation=request) / wasmtime serve (default):  $(ratio "${rps[wdeploy (isolation=request)]}" "${rps[wasmtime serve (default)]}")  (target >= 3)"
echo "wdeploy (reuse) / native hyper:                          $(ratio "${rps[wdeploy (reuse)]}" "${rps[native hyper]}")"

# Tuning sweeps on the same slug: WEB_CONCURRENCY (warm instances per dyno) and
# web.max_requests (requests per instance before it is recycled), one app per setting.
slug=$(curl -sf -H "authorization: Bearer $WDEPLOY_TOKEN" "$WDEPLOY_HOST/apps/hello/releases" |
  python3 -c 'import json,sys; print(next(r["slug"] for r in json.load(sys.stdin) if r["current"]))')
release_with() { # app settings-text
  "$W" apps:create "$1" --no-link >/dev/null
  python3 -c 'import json,sys; print(json.dumps({"slug": sys.argv[1], "procfile": "web: web\n", "settings": sys.argv[2], "description": "bench"}))' "$slug" "$2" |
    curl -sf -X POST -H "authorization: Bearer $WDEPLOY_TOKEN" -H 'content-type: application/json' --data-binary @- "$WDEPLOY_HOST/apps/$1/releases" >/dev/null
}
echo
echo "WEB_CONCURRENCY sweep (reuse mode, one web dyno)"
for n in 1 2 4 8; do
  "$W" config:set -a hello WEB_CONCURRENCY=$n >/dev/null
  run "  WEB_CONCURRENCY=$n" "http://127.0.0.1:$router/" "hello.localhost"
done
"$W" config:unset -a hello WEB_CONCURRENCY >/dev/null
echo "web.max_requests sweep (reuse mode, WEB_CONCURRENCY=4)"
for n in 1 10 100 1000 10000 0; do
  release_with "hello-max-$n" "[web]
max_requests = $n
"
  run "  max_requests=$n" "http://127.0.0.1:$router/" "hello-max-$n.localhost"
done

echo
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
pids=()
python3 "$root/bench/fleet.py" --wdeploy "$W" --sample "$root/samples/hello"
echo
"$root/bench/async.sh"
echo
"$root/bench/idioms.sh"
echo
WDEPLOY=$W "$root/bench/cpu_split.sh"
echo
"$root/bench/addons.sh"
echo
WDEPLOY=$W "$root/bench/polyglot.sh"
echo
python3 "$root/bench/idle.py" --wdeploy "$W" --sample "$root/samples/hello" --apps "${IDLE_APPS:-100000}"
