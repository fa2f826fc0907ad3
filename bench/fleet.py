#!/usr/bin/env python3
"""The fleet half of the benchmark suite: many apps and dynos in one host.

Run by bench/run.sh (which builds everything first); on its own:

    bench/fleet.py --wdeploy target/release/wdeploy --sample samples/hello

Measures, against a real `wdeploy host` on loopback:
  * cold start: host start until every app answers (1 and 100 apps, compile cache warm),
    and `wdeploy push` of an already-built slug until the new release serves;
  * router latency (wrk p50/p99 at a fixed, light load) with 1, 100 and 1,000 apps;
  * density: resident memory of the host process as dynos grow to 10,000 (idle workers
    and web dynos with one warm instance each), and router latency while they run.

Only the standard library; talks to 127.0.0.1 only.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DOMAIN = "localhost"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Host:
    """A `wdeploy host` process on free ports, and a small client of its API."""

    def __init__(self, wdeploy, data, max_instances):
        self.wdeploy, self.data, self.max_instances = wdeploy, data, max_instances
        self.api, self.router = free_port(), free_port()
        self.proc = None

    def start(self):
        """Starts the host; returns when its API answers."""
        log = open(os.path.join(self.data + ".log"), "a")
        self.proc = subprocess.Popen(
            [self.wdeploy, "host", "--data", self.data,
             "--listen", f"127.0.0.1:{self.router}", "--api", f"127.0.0.1:{self.api}",
             "--max-instances", str(self.max_instances), "--stop-grace", "2"],
            stdout=log, stderr=log, env={**os.environ, "RUST_BACKTRACE": "0"})
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"host exited with {self.proc.returncode}; see {self.data}.log")
            try:
                with socket.create_connection(("127.0.0.1", self.api), timeout=0.2):
                    pass
                if os.path.exists(os.path.join(self.data, "admin-token")):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        with open(os.path.join(self.data, "admin-token")) as f:
            self.token = f.read().strip()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.api, timeout=300)
        headers = {"authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        text = response.read().decode()
        conn.close()
        if response.status >= 300:
            raise RuntimeError(f"{method} {path}: {response.status} {text}")
        return text

    def create_app(self, name):
        self.call("POST", "/apps", {"name": name})

    def release(self, name, slug, procfile):
        """Creates a release and waits for its stream to end (the release serves)."""
        text = self.call("POST", f"/apps/{name}/releases", {
            "slug": slug, "procfile": procfile, "settings": "", "description": "bench"})
        if "\0error=" in text or "\0result=" not in text:
            raise RuntimeError(f"release of {name} failed: {text!r}")

    def scale(self, name, formation):
        self.call("PATCH", f"/apps/{name}/formation", formation)

    def answers(self, name):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.router, timeout=2)
            conn.request("GET", "/", headers={"host": f"{name}.{DOMAIN}"})
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def wait_all_answer(self, names, timeout=300):
        pending = list(names)
        deadline = time.time() + timeout
        while pending and time.time() < deadline:
            pending = [n for n in pending if not self.answers(n)]
            if pending:
                time.sleep(0.01)
        if pending:
            raise RuntimeError(f"{len(pending)} apps never answered")


def wrk_latency(router, name, duration="4s", connections=1, repeats=5):
    """wrk's p50/p99 on one keep-alive connection (latency, not throughput), the run with
    the median p99 of `repeats`."""
    runs = sorted((wrk_once(router, name, duration, connections) for _ in range(repeats)),
                  key=lambda f: to_ms(f.get("99%", "nan")))
    return runs[len(runs) // 2]


def wrk_once(router, name, duration, connections):
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency",
         "-H", f"Host: {name}.{DOMAIN}", f"http://127.0.0.1:{router}/"],
        capture_output=True, text=True, check=True).stdout
    fields = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("50%", "99%"):
            fields[parts[0]] = parts[1]
        if line.startswith("Requests/sec:"):
            fields["rps"] = parts[1]
        if "Non-2xx" in line or "Socket errors" in line:
            fields["errors"] = line.strip()
    return fields


def to_ms(value):
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float("nan")


def parallel(fn, items, workers=4):
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(fn, items):
            pass


def count_up(host, names):
    """Dynos reported `up` by `ps` over all apps."""
    counts = []

    def count(name):
        dynos = json.loads(host.call("GET", f"/apps/{name}/dynos"))
        counts.append(sum(1 for d in dynos if d["state"] == "up"))
    parallel(count, names)
    return sum(counts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wdeploy", required=True)
    parser.add_argument("--sample", required=True)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--dynos", type=int, default=10_000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wdeploy-fleet-")
    env = {**os.environ, "XDG_CONFIG_HOME": os.path.join(work, "config")}
    host = Host(args.wdeploy, os.path.join(work, "data"), args.dynos + 2000)
    try:
        host.start()
        env.update(WDEPLOY_HOST=f"http://127.0.0.1:{host.api}", WDEPLOY_TOKEN=host.token)
        web = "web: web\n"

        # The slug every app runs: pushed once by the CLI (build cache warm from run.sh).
        subprocess.run([args.wdeploy, "apps:create", "app0000", "--no-link"], env=env,
                       check=True, capture_output=True)
        subprocess.run([args.wdeploy, "push", "-a", "app0000", "--dir", args.sample],
                       env=env, check=True, capture_output=True)
        releases = json.loads(host.call("GET", "/apps/app0000/releases"))
        slug = next(r["slug"] for r in releases if r["current"])
        host.release("app0000", slug, web)

        print("cold start (compile cache warm)")
        # push of an already-built slug: the build is cached and the blobs are on the host.
        subprocess.run([args.wdeploy, "apps:create", "pushed", "--no-link"], env=env,
                       check=True, capture_output=True)
        t0 = time.perf_counter()
        subprocess.run([args.wdeploy, "push", "-a", "pushed", "--dir", args.sample],
                       env=env, check=True, capture_output=True)
        host.wait_all_answer(["pushed"])
        push_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        host.create_app("api-release")
        host.release("api-release", slug, web)
        host.wait_all_answer(["api-release"])
        api_s = time.perf_counter() - t0
        print(f"  wdeploy push of a built slug until it serves      {push_s * 1000:8.0f} ms")
        print(f"  POST release (same slug) until it serves          {api_s * 1000:8.0f} ms")
        for name in ("pushed", "api-release"):
            host.call("DELETE", f"/apps/{name}")

        latency = {}

        def measure_latency(n_apps):
            time.sleep(3)  # let the last deploys' writes and log lines settle
            fields = wrk_latency(host.router, "app0000")
            latency[n_apps] = fields
            print(f"  router latency, {n_apps:5d} apps: p50 {fields.get('50%')}  "
                  f"p99 {fields.get('99%')}  ({fields.get('rps')} req/s) "
                  f"{fields.get('errors', '')}")

        def grow_to(n_apps):
            names = [f"app{i:04d}" for i in range(1, n_apps)]
            existing = {a["name"] for a in json.loads(host.call("GET", "/apps"))}
            todo = [n for n in names if n not in existing]

            def make(name):
                host.create_app(name)
                host.release(name, slug, web)
            parallel(make, todo)
            return ["app0000"] + names

        def restart_until_all_answer(names):
            host.stop()
            t0 = time.perf_counter()
            host.start()
            host.wait_all_answer(names)
            return time.perf_counter() - t0

        for n in (1, 100):
            names = grow_to(n)
            took = restart_until_all_answer(names)
            print(f"  host start until all {n:4d} apps answer             {took * 1000:8.0f} ms")

        print("router latency as apps grow (wrk -t1 -c1 -d4s on one app, median p99 of 5 runs)")
        names = grow_to(1)
        measure_latency(1)
        names = grow_to(100)
        measure_latency(100)
        names = grow_to(args.apps)
        host.wait_all_answer(names)
        measure_latency(args.apps)

        print(f"density: {args.apps} apps, scaled up to {args.dynos} dynos "
              "(idle workers + web dynos with one warm instance)")
        procfile = "web: web\nworker: worker --every 3600\n"
        base = rss_mib(host.proc.pid)
        print(f"  {len(names):6d} dynos   RSS {base:8.0f} MiB")
        parallel(lambda name: host.release(name, slug, procfile), names)
        per_app = args.dynos // len(names)
        steps = sorted({max(2, per_app // 5), per_app // 2, per_app})
        for total_per_app in steps:
            webs = total_per_app // 2
            workers = total_per_app - webs
            parallel(lambda name: host.scale(name, {"web": webs, "worker": workers}), names)
            time.sleep(2)
            up = count_up(host, names)
            rss = rss_mib(host.proc.pid)
            print(f"  {up:6d} dynos up   RSS {rss:8.0f} MiB   "
                  f"({(rss - base) * 1024 / max(1, up - len(names)):.0f} KiB per added dyno)")
        fields = wrk_latency(host.router, "app0000")
        print(f"  router latency with {per_app * len(names)} dynos running: p50 "
              f"{fields.get('50%')}  p99 {fields.get('99%')}  {fields.get('errors', '')}")
        one, many = to_ms(latency[1].get("99%", "nan")), to_ms(latency[args.apps].get("99%", "nan"))
        print()
        print(f"router p99 with {args.apps} apps / with 1 app: {many / one:.2f}  (target <= 1.10)")
        print(f"resident memory with {up} dynos up: {rss_mib(host.proc.pid):.0f} MiB"
              "  (target < 2048)")
    finally:
        if host.proc and host.proc.poll() is None:
            host.proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
