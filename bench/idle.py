#!/usr/bin/env python3
"""Scale to zero: one host holding many idle apps (the hello, each its own app and
release, `[web] idle_after = "1s"`).

Run by bench/run.sh (which builds everything first); on its own:

    bench/idle.py --wdeploy target/release/wdeploy --sample samples/hello --apps 100000

Measures, against a real `wdeploy host` on loopback:
  * how fast apps are created (POST /apps, POST /apps/NAME/releases of one uploaded slug);
  * the host's resident memory and CPU with every app idle;
  * a restart: until the host says every app is restored, and its memory then;
  * waking: the first request to 1,000 idle apps one after the other (p50/p99/max), and
    a storm of 1,000 other idle apps, one every millisecond.

Only the standard library; talks to 127.0.0.1 only.
"""

import argparse
import asyncio
import concurrent.futures
import gc
import http.client
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fleet import DOMAIN, Host, rss_mib  # noqa: E402

SETTINGS = '[web]\nidle_after = "1s"\n'


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_request_ms(router, name):
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", router, timeout=30)
    conn.request("GET", "/", headers={"host": f"{name}.{DOMAIN}"})
    response = conn.getresponse()
    response.read()
    conn.close()
    took = (time.perf_counter() - started) * 1000
    if response.status != 200:
        raise RuntimeError(f"{name} answered {response.status}")
    return took


async def storm_of(router, names):
    """First requests to `names`, one leaving every millisecond from 0.1 s on, each on
    a new connection; the milliseconds each took. One thread and an event loop: a pool of
    Python threads measured its own waits for the GIL (up to 5 ms a switch) as latency."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def at_its_time(i, name):
        await asyncio.sleep(max(0.0, start + i / 1000 - loop.time()))
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", router)
        writer.write(f"GET / HTTP/1.1\r\nHost: {name}.{DOMAIN}\r\nConnection: close\r\n\r\n".encode())
        answer = await reader.read()
        took = (time.perf_counter() - started) * 1000
        writer.close()
        status = answer.split(b" ", 2)[1] if answer.count(b" ") >= 2 else b"none"
        if status != b"200":
            raise RuntimeError(f"{name} answered {status.decode(errors='replace')}")
        return took

    return await asyncio.gather(*(at_its_time(i, name) for i, name in enumerate(names)))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def summary(values):
    return (f"p50 {percentile(values, 50):6.2f} ms  p99 {percentile(values, 99):6.2f} ms"
            f"  max {max(values):6.2f} ms")


def wait_restored(host, log_path, timeout=600):
    """Seconds from now until the host's log says every app is restored."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(log_path) as f:
            for line in f:
                if "restored" in line and " apps in " in line:
                    return float(line.rsplit(" in ", 1)[1].rstrip("s\n"))
        if host.proc.poll() is not None:
            sys.exit(f"host exited with {host.proc.returncode}; see {log_path}")
        time.sleep(0.1)
    raise RuntimeError("the host never said it restored its apps")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wdeploy", required=True)
    parser.add_argument("--sample", required=True)
    parser.add_argument("--apps", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wdeploy-idle-")
    env = {**os.environ, "XDG_CONFIG_HOME": os.path.join(work, "config")}
    host = Host(args.wdeploy, os.path.join(work, "data"), 4000)
    log_path = host.data + ".log"
    try:
        host.start()
        env.update(WDEPLOY_HOST=f"http://127.0.0.1:{host.api}", WDEPLOY_TOKEN=host.token)
        subprocess.run([args.wdeploy, "apps:create", "seed", "--no-link"], env=env,
                       check=True, capture_output=True)
        subprocess.run([args.wdeploy, "push", "-a", "seed", "--dir", args.sample],
                       env=env, check=True, capture_output=True)
        releases = json.loads(host.call("GET", "/apps/seed/releases"))
        slug = next(r["slug"] for r in releases if r["current"])
        host.call("DELETE", "/apps/seed")

        names = [f"idle{i:06d}" for i in range(args.apps)]

        def make(name):
            host.create_app(name)
            text = host.call("POST", f"/apps/{name}/releases", {
                "slug": slug, "procfile": "web: web\n", "settings": SETTINGS,
                "description": "bench"})
            if "\0result=" not in text:
                raise RuntimeError(f"release of {name} failed: {text!r}")

        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(args.clients) as pool:
            for i, _ in enumerate(pool.map(make, names), 1):
                if i % 10_000 == 0:
                    rate = i / (time.perf_counter() - started)
                    print(f"  {i:7d} apps created ({rate:.0f}/s, host {rss_mib(host.proc.pid):.0f} MiB)",
                          flush=True)
        made = time.perf_counter() - started
        print(f"{args.apps} apps, each its own release of the hello, idle_after 1s")
        print(f"  created in {made:.0f} s ({args.apps / made:.0f} apps/s)")

        time.sleep(3)  # every app past its idle_after, and swept
        print(f"  all idle: host RSS {rss_mib(host.proc.pid):8.0f} MiB")

        host.stop()
        host.start()
        perf = None
        if os.environ.get("PERF_RESTORE"):
            perf = subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(host.proc.pid),
                                     "-o", os.environ["PERF_RESTORE"], "--", "sleep", "4"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        restored = wait_restored(host, log_path)
        if perf:
            perf.wait()
        print(f"  restart: every app restored in {restored:.1f} s; "
              f"RSS then {rss_mib(host.proc.pid):.0f} MiB")
        # Steady state: nothing happens but the idle sweep and the converge loop's
        # steady looks (spaced with the number of apps).
        time.sleep(5)
        window = 30
        cpu0, t0 = cpu_seconds(host.proc.pid), time.time()
        if os.environ.get("PERF_IDLE"):
            subprocess.run(["perf", "record", "-F", "999", "-g", "-p", str(host.proc.pid),
                            "-o", os.environ["PERF_IDLE"], "--", "sleep", "8"],
                           capture_output=True)
        time.sleep(max(0, window - (time.time() - t0)))
        idle_cpu = (cpu_seconds(host.proc.pid) - cpu0) / (time.time() - t0) * 100
        print(f"  all idle after the restart, over {window} s: CPU {idle_cpu:.1f} % of a core")

        sample = random.Random(7).sample(names, min(2000, len(names)))
        one_by_one, storm = sample[: len(sample) // 2], sample[len(sample) // 2:]
        woken = [first_request_ms(host.router, name) for name in one_by_one]
        print(f"  waking {len(woken)} idle apps one after the other: {summary(woken)}")

        # The storm: one new app every millisecond for a second (open loop: each request
        # leaves at its time, whatever the others take).
        started = time.perf_counter() + 0.1
        # The client's own pauses are not the host's latency: Python's cyclic garbage
        # collector, run now and then by the storm's allocations, stalled the loop for
        # 10-20 ms, and every response arriving meanwhile was measured that much slower.
        gc.disable()
        cpu_before = cpu_seconds(host.proc.pid)
        stormed = asyncio.run(storm_of(host.router, storm))
        storm_cpu = cpu_seconds(host.proc.pid) - cpu_before
        gc.enable()
        took = time.perf_counter() - started
        print(f"  a storm of {len(stormed)} apps, one every ms, done in {took:.2f} s: {summary(stormed)}")
        print(f"  host CPU during the storm: {storm_cpu * 1000:.0f} ms "
              f"({storm_cpu * 1e6 / len(stormed):.0f} µs per wake-up)")
        print(f"  host RSS after the wake-ups: {rss_mib(host.proc.pid):.0f} MiB")
    finally:
        if host.proc and host.proc.poll() is None:
            host.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
