#!/usr/bin/env bash
# Add-on writes and reads through the router: samples/counter (`/` is one durable
# increment of a key-value counter, `/count` one read of it) on three web dynos, beside
# the hello on three, the same wrk load on each, one host, then the ratios.
#
#   bench/addons.sh         # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# Every increment is acknowledged only once committed (group commit: one fsync for all
# the writes waiting). WDEPLOY=PATH measures that binary instead of building this tree.
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
W=$(wdeploy_binary)
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

# deploy APP...: each sample on three web dynos of the running host.
deploy() {
  for app in "$@"; do
    "$W" apps:create "$app" --no-link >/dev/null
    "$W" push -a "$app" --dir "samples/$app" >>"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; exit 1; }
    "$W" ps:scale web=3 -a "$app" >/dev/null
  done
}

start_host "$W"
deploy counter hello

declare -A rps
echo "wrk -t$threads -c$connections -d$duration, loopback, one host, web=3 each ($(nproc) cores)"
wrk_row "hello (no add-on call)" "http://127.0.0.1:$router/" hello.localhost
wrk_row "counter / (one durable increment)" "http://127.0.0.1:$router/" counter.localhost
wrk_row "counter /count (one read)" "http://127.0.0.1:$router/count" counter.localhost
count=$(curl -sf -H "Host: counter.localhost" "http://127.0.0.1:$router/count")
echo "increments acknowledged and counted: $count"
echo "increments/s / hello:  $(ratio "${rps[counter / (one durable increment)]}" "${rps[hello (no add-on call)]}")  (target: >= 20,000 increments/s)"
echo "/count / hello:        $(ratio "${rps[counter /count (one read)]}" "${rps[hello (no add-on call)]}")  (target >= 0.5)"
stop_host

# The baseline: the same increments on one thread per app whatever its dynos
# (`--lane-threads 1`, the default until an app's lane had a thread per dyno: see
# runtime/host/src/guest/lane.rs).
start_host "$W" --lane-threads 1
deploy counter
wrk_row "counter / on --lane-threads 1" "http://127.0.0.1:$router/" counter.localhost
stop_host
echo "a thread per dyno / one per app: $(ratio "${rps[counter / (one durable increment)]}" "${rps[counter / on --lane-threads 1]}")"
