#!/usr/bin/env bash
# Noisy neighbours, measured: a quiet web app (samples/hello) alone, then beside two
# apps busy-looping in four workers each (the `spinner` test component), on one host.
# Prints the quiet app's latency (sequential keep-alive GETs, p50/p99) idle and busy,
# and busy / idle, for each build given, so a baseline build and a candidate are
# compared in one run on this machine.
#
#   bench/neighbours.sh [BASELINE_WDEPLOY] [CANDIDATE_WDEPLOY]
#
# With no argument, measures this checkout's release build only. REQUESTS=2000 per
# measurement by default. Not CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
requests=${REQUESTS:-2000}
work=$(mktemp -d)
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

builds=("$@")
if [ ${#builds[@]} -lt 2 ]; then
  cargo build --release -q -p wdeploy
  builds+=("$root/target/release/wdeploy")
fi
cargo build -q -p wdeploy-test-components
spinner=$(find target/test-components -path '*wasm32-wasip2/release/spinner.wasm' | head -1)
mkdir -p "$work/busy"
cp "$spinner" "$work/busy/"
echo "worker: spinner" >"$work/busy/Procfile"
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

# shellcheck source=bench/lib.sh
. bench/lib.sh

# p50 and p99 in ms of $requests sequential GETs of the quiet app over one connection.
latency() {
  local p50 p99
  read -r _ p50 p99 < <(sequential_gets "$router" hello.localhost "$requests")
  echo "$p50 $p99"
}

echo "quiet app latency, ${requests} sequential keep-alive GETs, loopback ($(nproc) cores)"
printf '%-50s %10s %10s %10s %10s %12s\n' build idle-p50 idle-p99 busy-p50 busy-p99 p99-busy/idle
for bin in "${builds[@]}"; do
  start_host "$bin"
  "$bin" apps:create hello --no-link >/dev/null
  "$bin" push -a hello --dir samples/hello >"$work/push.log" 2>&1
  read -r idle50 idle99 < <(latency)
  for busy in busy1 busy2; do
    "$bin" apps:create "$busy" --no-link >/dev/null
    "$bin" push -a "$busy" --dir "$work/busy" >>"$work/push.log" 2>&1
    "$bin" ps:scale worker=4 -a "$busy" >/dev/null
  done
  sleep 2
  read -r busy50 busy99 < <(latency)
  stop_host
  ratio=$(python3 -c "print(f'{$busy99 / $idle99:.2f}')")
  printf '%-50s %10s %10s %10s %10s %12s\n' "$bin" "$idle50" "$idle99" "$busy50" "$busy99" "$ratio"
done
