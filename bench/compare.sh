#!/usr/bin/env bash
# Two wdeploy builds side by side, in one run on this machine: each runs a host in turn
# with the same hello component (samples/hello) in both web modes, under the same wrk
# load, several rounds alternating, and the candidate's throughput is printed as a ratio
# of the baseline's. For a change that must not cost speed (a refactor, say).
#
#   bench/compare.sh BASELINE_WDEPLOY [CANDIDATE_WDEPLOY]
#
# CANDIDATE defaults to this checkout's release build. DURATION=10s CONNECTIONS=32
# THREADS=2 ROUNDS=3 by default. Needs wrk (installed with apt when missing). Not CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
baseline=${1:?usage: bench/compare.sh BASELINE_WDEPLOY [CANDIDATE_WDEPLOY]}
candidate=${2:-}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
rounds=${ROUNDS:-3}
work=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "$candidate" ]; then
  cargo build --release -q -p wdeploy
  candidate=$root/target/release/wdeploy
fi
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

# shellcheck source=bench/lib.sh
. bench/lib.sh
wait_http() { for _ in $(seq 1 600); do curl -s -o /dev/null -H "Host: $2" "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }

cp -r samples/hello "$work/hello-fresh"
printf '[web]\nisolation = "request"\n' >"$work/hello-fresh/wdeploy.toml"

# Starts a host of binary $1 with hello (reuse) and hello-fresh (request isolation).
start() {
  local bin=$1
  start_host "$bin"
  "$bin" apps:create hello --no-link >/dev/null
  "$bin" push -a hello --dir samples/hello >"$work/push.log" 2>&1
  "$bin" apps:create hello-fresh --no-link >/dev/null
  "$bin" push -a hello-fresh --dir "$work/hello-fresh" >>"$work/push.log" 2>&1
}
rps() { # host-name
  wait_http "http://127.0.0.1:$router/" "$1"
  wrk -t"$threads" -c"$connections" -d"$duration" -H "Host: $1" "http://127.0.0.1:$router/" |
    awk '/Requests\/sec/ {print $2}'
}

echo "wrk -t$threads -c$connections -d$duration, $rounds rounds, loopback, samples/hello ($(nproc) cores)"
printf '%-6s %-10s %14s %14s\n' round build reuse request
for round in $(seq 1 "$rounds"); do
  for side in baseline candidate; do
    if [ "$side" = baseline ]; then bin=$baseline; else bin=$candidate; fi
    start "$bin"
    reuse=$(rps hello.localhost)
    request=$(rps hello-fresh.localhost)
    stop_host
    tally "$side-reuse" "$reuse"
    tally "$side-request" "$request"
    printf '%-6s %-10s %14s %14s\n' "$round" "$side" "$reuse" "$request"
  done
done
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
echo
echo "candidate / baseline, reuse:   $(ratio "${sum[candidate-reuse]}" "${sum[baseline-reuse]}")"
echo "candidate / baseline, request: $(ratio "${sum[candidate-request]}" "${sum[baseline-request]}")"
