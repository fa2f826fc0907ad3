#!/usr/bin/env bash
# Every way a WASI 0.2 handler writes its response body, on wdeploy and on
# `wasmtime serve -S cli --max-instance-reuse-count 1000`: the test guest `idioms` (a path
# per idiom: writeln! + flush as samples/hello, blocking-write-and-flush, several write +
# flush, one write then finish) pushed to one host and served by wasmtime on the very
# same component, the same wrk load on each path of each, then req/s, p99, the framing
# wdeploy answered with, and the ratio per idiom.
#
#   bench/idioms.sh         # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# Run by bench/run.sh; runs alone too (it installs its peers as bench/run.sh does).
# Honours CARGO_TARGET_DIR; WDEPLOY=PATH measures that binary instead of building this
# tree. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
work=$(mktemp -d)
pid=
serve_pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

need_wrk
wasmtime=$(install_wasmtime "$target/bench-tools")
W=$(wdeploy_binary)
export WDEPLOY_CACHE_DIR=$target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0
idioms_beside_serve "$W" "$wasmtime"

declare -A rps p99
run() { # key url host
  local out
  for _ in $(seq 1 100); do curl -sf -o /dev/null -H "Host: $3" "$2" && break; sleep 0.1; done
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -H "Host: $3" "$2")
  rps[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p99[$1]=$(awk '$1=="99%" {print $2}' <<<"$out")
  awk -v key="$1" '/Non-2xx|Socket errors/ {print "  " key ": " $0}' <<<"$out" >&2
}
# How wdeploy framed PATH's body: `length N` (one buffer) or `chunked` (streamed).
framing() {
  curl -s -D - -o /dev/null -H "Host: idioms.localhost" "http://127.0.0.1:$router$1" |
    awk 'tolower($1)=="content-length:" {n=$2} tolower($0) ~ /^transfer-encoding: chunked/ {c=1}
         END {gsub(/\r/, "", n); print (c ? "chunked" : "length " n)}'
}

echo "wrk -t$threads -c$connections -d$duration, loopback, the idioms test guest, warm instances reused ($(nproc) cores)"
printf '%-14s %-10s %12s %9s %16s %9s %7s\n' idiom framing "wdeploy" p99 "wasmtime serve" p99 ratio
for path in /writeln /blocking /writes /write-finish; do
  run "wdeploy $path" "http://127.0.0.1:$router$path" idioms.localhost
  run "serve $path" "http://127.0.0.1:$serve$path" localhost
  ratio=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' \
    "${rps[wdeploy $path]}" "${rps[serve $path]}")
  printf '%-14s %-10s %12s %9s %16s %9s %7s\n' "$path" "$(framing "$path")" \
    "${rps[wdeploy $path]}" "${p99[wdeploy $path]}" "${rps[serve $path]}" "${p99[serve $path]}" "$ratio"
done
stop_host
