#!/usr/bin/env bash
# JavaScript and Python web components (12-20 MB: StarlingMonkey, CPython) through
# wdeploy beside `wasmtime serve` on the very same web.wasm: a JS hello and a Python
# hello (fixed text, no add-on calls), the JS one in request isolation (the JavaScript
# buildpack's default) against `wasmtime serve` (a fresh instance per request), the
# Python one with warm instances reused (the default) against `wasmtime serve
# --max-instance-reuse-count 1000`; the same wrk load on each (after a 2 s warm-up),
# then the ratios against issue 15's targets. Beside req/s each line shows the server's
# CPU time per request (user + system, from /proc), which other work on the machine
# does not change.
#
# Each hello is pushed twice to one host. As an app (its buildpack builds it for the
# platform's `web` world, which imports the add-ons, wdeploy:platform/queue among them,
# so `wasmtime serve` cannot link it), and as a prebuilt web.wasm that the same
# componentize-js / componentize-py (those the buildpacks installed) built for a world
# of wasi:http/proxy alone. `wasmtime serve` runs that very file, and the ratios compare
# it with wdeploy running it.
#
#   bench/polyglot.sh       # DURATION=10s CONNECTIONS=32 THREADS=2 by default
#
# WDEPLOY=PATH uses that wdeploy binary instead of building this tree, WASMTIME=PATH that
# wasmtime-cli 48 instead of target/bench-tools (bench/run.sh installs it there).
# PROFILE=DIR also records `perf record -F 999 -g` of the server under load during each
# run into DIR/NAME.data. Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}
profile=${PROFILE:-}
work=$(mktemp -d)
pid=
serve_pids=()
cleanup() {
  for p in "${serve_pids[@]}" ${pid:+"$pid"}; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=bench/lib.sh
source "$root/bench/lib.sh"

need_wrk
W=$(wdeploy_binary)
wasmtime=${WASMTIME:-$root/target/bench-tools/bin/wasmtime}
[ -x "$wasmtime" ] || { echo "no wasmtime-cli at $wasmtime: run bench/run.sh once, or set WASMTIME" >&2; exit 1; }
export WDEPLOY_CACHE_DIR=${WDEPLOY_CACHE_DIR:-$root/target/bench-cache} XDG_CONFIG_HOME=$work/config
# Production settings for both sides: no backtrace capture on every error value.
export RUST_BACKTRACE=0

# The two apps, modelled on samples/js-web and samples/python-web without the add-on call.
mkdir "$work/js-hello" "$work/py-hello"
cat >"$work/js-hello/web.js" <<'JS'
addEventListener('fetch', (event) => {
  event.respondWith(
    new Response('Hello from JavaScript!\n', { headers: { 'content-type': 'text/plain' } }),
  );
});
JS
echo '{ "name": "js-hello", "version": "0.1.0", "private": true, "type": "module" }' >"$work/js-hello/package.json"
cat >"$work/py-hello/web.py" <<'PY'
from wit_world import exports
from wit_world.imports.types import Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam
from componentize_py_types import Ok

TEXT = b"Hello from Python!\n"


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        response.set_status_code(200)
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with body.write() as stream:
            stream.blocking_write_and_flush(TEXT)
        OutgoingBody.finish(body, None)
PY
printf '[web]\nisolation = "dyno"\n' >"$work/py-hello/wdeploy.toml"
for app in js-hello py-hello; do echo "web: web" >"$work/$app/Procfile"; done

start_host "$W"
host_pid=$pid
push() { # app dir
  "$W" apps:create "$1" --no-link >/dev/null
  "$W" push -a "$1" --dir "$2" >>"$work/push.log" 2>&1 || { cat "$work/push.log" >&2; exit 1; }
}
push js-hello "$work/js-hello"
push py-hello "$work/py-hello"

# The tools and WIT each buildpack used (its app's build cache, and the extracted
# buildpack), and a world of wasi:http/proxy alone in the platform's package.
only() { # glob...: the first path it names (the same tools in every run)
  [ -e "$1" ] || { echo "not found: $1" >&2; exit 1; }
  echo "$1"
}
js_cache=$(only "$WDEPLOY_CACHE_DIR"/apps/js-hello-*/cache)
py_cache=$(only "$WDEPLOY_CACHE_DIR"/apps/py-hello-*/cache)
py_tools=$(only "$py_cache"/componentize-py-*)
cp -r "$(only "$js_cache"/wit-0.2.*)" "$work/js-wit"
cp -r "$(only "$WDEPLOY_CACHE_DIR"/buildpacks/python-*/wit)" "$work/py-wit"
printf 'world bench-proxy {\n  include wasi:http/proxy@0.2.10;\n}\n' >"$work/js-wit/bench.wit"
printf 'world bench-proxy {\n  include wasi:http/proxy@0.2.12;\n}\n' >"$work/py-wit/bench.wit"
mkdir "$work/js-proxy" "$work/py-proxy"
(cd "$work/js-hello" && "$(only "$js_cache"/componentize-js-*)/node_modules/.bin/componentize-js" web.js \
  --wit "$work/js-wit" --world-name bench-proxy -o "$work/js-proxy/web.wasm") >>"$work/push.log" 2>&1 ||
  { cat "$work/push.log" >&2; exit 1; }
PYTHONPATH=$py_tools "$py_tools/bin/componentize-py" -d "$work/py-wit" -w wdeploy:platform/bench-proxy@0.1.0 \
  componentize -p "$work/py-hello" web -o "$work/py-proxy/web.wasm" >>"$work/push.log" 2>&1 ||
  { cat "$work/push.log" >&2; exit 1; }
printf '[web]\nisolation = "request"\n' >"$work/js-proxy/wdeploy.toml"
printf '[web]\nisolation = "dyno"\n' >"$work/py-proxy/wdeploy.toml"
for app in js-proxy py-proxy; do echo "web: web" >"$work/$app/Procfile"; done
push js-proxy "$work/js-proxy"
push py-proxy "$work/py-proxy"
js_wasm=$work/js-proxy/web.wasm
py_wasm=$work/py-proxy/web.wasm

serve_js=$(free_port)
serve_py=$(free_port)
"$wasmtime" serve -S cli --addr "127.0.0.1:$serve_js" "$js_wasm" >"$work/serve-js.log" 2>&1 &
serve_pids+=($!)
serve_js_pid=$!
"$wasmtime" serve -S cli --max-instance-reuse-count 1000 --addr "127.0.0.1:$serve_py" "$py_wasm" >"$work/serve-py.log" 2>&1 &
serve_pids+=($!)
serve_py_pid=$!

# Both `wasmtime serve`s compile their component at start (tens of seconds of both
# cores for these sizes): nothing is measured until both answer.
for port in "$serve_js" "$serve_py"; do
  for _ in $(seq 1 1800); do curl -sf -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/" || { echo "wasmtime serve on $port does not answer" >&2; exit 1; }
done

# CPU time (user + system, in clock ticks) a process has used so far: what a request
# costs the server, whatever else the machine runs meanwhile.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

declare -A rps
run() { # name url host server-pid
  local out errors cpu perf_pid=
  curl -sf -o /dev/null -H "Host: $3" "$2" || { echo "no answer from $2 ($1)" >&2; exit 1; }
  # A short warm-up under the same load, so every server is measured in its steady state.
  wrk -t"$threads" -c"$connections" -d2s -H "Host: $3" "$2" >/dev/null
  if [ -n "$profile" ]; then
    mkdir -p "$profile"
    perf record -F 999 -g -p "$4" -o "$profile/${1//[^A-Za-z0-9]/_}.data" -- sleep "${duration%s}" >/dev/null 2>&1 &
    perf_pid=$!
  fi
  cpu=$(cpu_ticks "$4")
  out=$(wrk -t"$threads" -c"$connections" -d"$duration" --latency -H "Host: $3" "$2")
  cpu=$(($(cpu_ticks "$4") - cpu))
  [ -z "$perf_pid" ] || wait "$perf_pid" || true
  rps[$1]=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
  printf '%-44s %10s req/s  p50 %-9s p99 %-9s server CPU %s us/req %s\n' "$1" "${rps[$1]}" \
    "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
    "$(python3 -c 'import sys; t, hz, r, d = map(float, sys.argv[1:]); print(f"{t / hz / (r * d) * 1e6:.0f}")' \
      "$cpu" "$(getconf CLK_TCK)" "${rps[$1]}" "${duration%s}")" "$errors"
}
ratio() { python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "$1" "$2"; }

echo "wrk -t$threads -c$connections -d$duration, loopback, one host ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
echo "web.wasm: JS $(($(stat -c %s "$js_wasm") >> 20)) MiB, Python $(($(stat -c %s "$py_wasm") >> 20)) MiB"
run "JS app, wdeploy (isolation=request)" "http://127.0.0.1:$router/" js-hello.localhost "$host_pid"
run "JS proxy, wdeploy (isolation=request)" "http://127.0.0.1:$router/" js-proxy.localhost "$host_pid"
run "JS proxy, wasmtime serve (default)" "http://127.0.0.1:$serve_js/" localhost "$serve_js_pid"
run "Python app, wdeploy (reuse)" "http://127.0.0.1:$router/" py-hello.localhost "$host_pid"
run "Python proxy, wdeploy (reuse)" "http://127.0.0.1:$router/" py-proxy.localhost "$host_pid"
run "Python proxy, wasmtime serve (reuse 1000)" "http://127.0.0.1:$serve_py/" localhost "$serve_py_pid"
echo
echo "JS: wdeploy (isolation=request) / wasmtime serve (default):  $(ratio "${rps[JS proxy, wdeploy (isolation=request)]}" "${rps[JS proxy, wasmtime serve (default)]}")  (target >= 5)"
echo "Python: wdeploy (reuse) / wasmtime serve (reuse 1000):       $(ratio "${rps[Python proxy, wdeploy (reuse)]}" "${rps[Python proxy, wasmtime serve (reuse 1000)]}")  (target >= 1)"
stop_host
