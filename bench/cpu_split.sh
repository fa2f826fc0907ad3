#!/usr/bin/env bash
# Where the machine's CPU goes while wrk loads one idiom path of the `idioms` test guest,
# on wdeploy and on `wasmtime serve --max-instance-reuse-count 1000` serving the same
# component: req/s, the share of the whole machine left idle (/proc/stat), the server's
# cores and its CPU per request, then (wdeploy) each of its busy threads' share of a core.
#
#   bench/cpu_split.sh                  # PATHS="/blocking /writeln" DURATION=8s
#   ROUTER_THREADS=1 bench/cpu_split.sh # the host's router runtime on one worker thread
#
# Honours CARGO_TARGET_DIR and WDEPLOY=PATH as bench/idioms.sh does. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
duration=${DURATION:-8s}
paths=${PATHS:-/blocking /writeln}
first=${paths%% *}
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

# cpu_ticks PID: user + system clock ticks of the process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# machine: total and idle (idle + iowait) ticks of all cores so far.
machine() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8, $5+$6}' /proc/stat; }

# measure NAME PORT HOST PID PATH: one wrk run and the CPU it cost.
measure() {
  local out rps t0 i0 t1 i1 p0 p1
  for _ in $(seq 1 100); do curl -sf -o /dev/null -H "Host: $3" "http://127.0.0.1:$2$5" && break; sleep 0.1; done
  read -r t0 i0 < <(machine)
  p0=$(cpu_ticks "$4")
  out=$(wrk -t2 -c32 -d"$duration" -H "Host: $3" "http://127.0.0.1:$2$5")
  read -r t1 i1 < <(machine)
  p1=$(cpu_ticks "$4")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  python3 - "$1" "$5" "$rps" "$((t1 - t0))" "$((i1 - i0))" "$((p1 - p0))" "$(nproc)" <<'PY'
import sys
name, path, rps, total, idle, server, cores = sys.argv[1], sys.argv[2], float(sys.argv[3]), *map(int, sys.argv[4:])
seconds = total / cores / 100
print(f"{name:8} {path:14} {rps:10.0f} {idle / total * 100:7.1f} % {server / 100 / seconds:8.2f} "
      f"{server * 10000 / (rps * seconds):9.1f} us")
PY
}

echo "wrk -t2 -c32 -d$duration, loopback, the idioms test guest, warm instances reused ($(nproc) cores)"
printf '%-8s %-14s %10s %9s %8s %12s\n' server path req/s idle cores "CPU/request"
for path in $paths; do
  measure wdeploy "$router" idioms.localhost "$pid" "$path"
  measure serve "$serve" localhost "$serve_pid" "$path"
done

# wdeploy's threads under the same load: each busy one's share of a core over 4 s.
wrk -t2 -c32 -d7s -H "Host: idioms.localhost" "http://127.0.0.1:$router$first" >/dev/null &
load=$!
sleep 1
threads() {
  for t in /proc/"$pid"/task/*; do echo "${t##*/} $(cat "$t/comm") $(cpu_ticks "$pid/task/${t##*/}")"; done | sort
}
threads >"$work/before"
sleep 4
threads >"$work/after"
wait "$load"
echo "wdeploy threads under $first (share of one core):"
join "$work/before" "$work/after" | awk '{d = $5 - $3; if (d > 0) printf "  %-18s %5.1f %%\n", $2, d / 4}' | sort -k2 -n -r
