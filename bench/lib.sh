# shellcheck shell=bash
# Shared by the bench scripts (sourced, never run): a free loopback port, and a wdeploy
# host of a given binary started on fresh ports with the CLI pointed at it.
#
# The caller sets `work` (a temp dir) before `start_host`, which sets `pid`, `api`,
# `router`, WDEPLOY_HOST and WDEPLOY_TOKEN; `stop_host` ends it.

# wrk, the load generator every script uses, installed from Debian when missing.
need_wrk() { command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }; }

# wdeploy_binary: the wdeploy to measure; $WDEPLOY when set (an A/B of two builds),
# otherwise a release build of this tree. Prints its path.
wdeploy_binary() {
  if [ -n "${WDEPLOY:-}" ]; then
    echo "$WDEPLOY"
  else
    cargo build --release -q -p wdeploy >&2
    echo "${CARGO_TARGET_DIR:-$root/target}/release/wdeploy"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_host BIN [HOST-ARGS...]: a host of BIN on a new data dir, its log in $work/host.log.
# ROUTER_THREADS=N runs its main runtime (the router's) on N worker threads.
start_host() {
  local bin=$1 data
  shift
  data=${work:?set work before start_host}/data-$RANDOM
  api=$(free_port)
  router=$(free_port)
  if [ -n "${ROUTER_THREADS:-}" ]; then
    TOKIO_WORKER_THREADS=$ROUTER_THREADS "$bin" host --data "$data" --listen "127.0.0.1:$router" \
      --api "127.0.0.1:$api" "$@" >"$work/host.log" 2>&1 &
  else
    "$bin" host --data "$data" --listen "127.0.0.1:$router" --api "127.0.0.1:$api" "$@" >"$work/host.log" 2>&1 &
  fi
  pid=$!
  for _ in $(seq 1 100); do [ -f "$data/admin-token" ] && break; sleep 0.1; done
  export WDEPLOY_HOST=http://127.0.0.1:$api WDEPLOY_TOKEN
  WDEPLOY_TOKEN=$(cat "$data/admin-token")
}

stop_host() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

# idioms_beside_serve BIN WASMTIME: the `idioms` test guest, built once, pushed to a new
# host of BIN (start_host) and served by WASMTIME's `serve` with warm instances reused, on
# the very same component; sets `serve` (its port) and `serve_pid` (for the caller's
# cleanup) as well.
# shellcheck disable=SC2034
idioms_beside_serve() {
  local bin=$1 wasmtime=$2 component target=${CARGO_TARGET_DIR:-$root/target}
  (cd "$root/tests/components/guests/idioms" &&
    cargo build --release -q --locked --target wasm32-wasip2 --target-dir "$target/test-components")
  mkdir "$work/idioms"
  component=$work/idioms/idioms.wasm
  cp "$target/test-components/wasm32-wasip2/release/idioms.wasm" "$component"
  echo "web: idioms" >"$work/idioms/Procfile"
  start_host "$bin"
  "$bin" apps:create idioms --no-link >/dev/null
  "$bin" push -a idioms --dir "$work/idioms" >"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; exit 1; }
  serve=$(free_port)
  "$wasmtime" serve -S cli --max-instance-reuse-count 1000 --addr "127.0.0.1:$serve" "$component" >/dev/null 2>&1 &
  serve_pid=$!
}

# sequential_gets PORT HOST N: N sequential keep-alive GETs of / with Host HOST on
# 127.0.0.1:PORT (after 100 to warm up); prints req/s, p50 and p99 in ms.
sequential_gets() {
  python3 - "$1" "$2" "$3" <<'PY'
import http.client, sys, time
port, host, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port)
times = []
for i in range(n + 100):
    started = time.perf_counter()
    conn.request("GET", "/", headers={"Host": host})
    response = conn.getresponse()
    response.read()
    assert response.status == 200, response.status
    if i >= 100:
        times.append(time.perf_counter() - started)
total = sum(times)
times.sort()
print(f"{n / total:.0f} {times[len(times) // 2] * 1000:.3f} {times[len(times) * 99 // 100] * 1000:.3f}")
PY
}

# install_wasmtime ROOT: installs wasmtime-cli 48.0.8 into ROOT (once; about 11 minutes)
# and prints the path of its binary.
install_wasmtime() {
  local root=$1
  if [ ! -x "$root/bin/wasmtime" ]; then
    echo "installing wasmtime-cli 48.0.8 into $root (once)" >&2
    cargo install wasmtime-cli --version 48.0.8 --locked --root "$root" >&2
  fi
  echo "$root/bin/wasmtime"
}

# wrk_row NAME URL HOST: one wrk run (the caller's $duration, $connections, $threads)
# against URL with Host HOST, once it answers; sets rps[NAME] in the caller's associative
# array `rps` and prints a row: req/s, p50, p99 and any errors.
# shellcheck disable=SC2154
wrk_row() {
  local out errors
  for _ in $(seq 1 100); do curl -sf -o /dev/null -H "Host: $3" "$2" && break; sleep 0.1; done
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -H "Host: $3" "$2")
  rps[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  printf '%-36s %10s req/s  p50 %-9s p99 %-9s %s\n' "$1" "${rps[$1]}" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" "$errors"
}

# ratio A B: A / B with two decimals.
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

# Sums for the A/B scripts (compare.sh, api_calls.sh): `tally KEY VALUE` adds VALUE to
# ${sum[KEY]}, which starts at 0.
declare -A sum=()
tally() { sum[$1]=$(python3 -c "print(${sum[$1]:-0} + $2)"); }
