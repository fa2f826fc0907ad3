"""The `worker` process: a wasi:cli command that prints a tick every second.

It waits on stdin and a one-second timer together, so it exits cleanly as soon as the
platform closes its stdin (a stop, a deploy, a scale-down).
"""

from wit_world import exports
from wit_world.imports import monotonic_clock, poll, stdin
from wit_world.imports.streams import StreamError_Closed
from componentize_py_types import Err

SECOND = 1_000_000_000


class Run(exports.Run):
    def run(self) -> None:
        input = stdin.get_stdin()
        tick = 0
        while True:
            tick += 1
            print(f"python tick {tick}", flush=True)
            timer = monotonic_clock.subscribe_duration(SECOND)
            ready = poll.poll([input.subscribe(), timer])
            if 0 in ready:
                try:
                    input.read(4096)
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        print("stdin closed, stopping", flush=True)
                        return
                    raise
