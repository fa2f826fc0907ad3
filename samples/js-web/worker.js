// The `worker` process: a wasi:cli command that prints a tick every second.
//
// It waits on stdin and a one-second timer together, so it exits cleanly as soon as
// the platform closes its stdin (a stop, a deploy, a scale-down).
import { getStdin } from 'wasi:cli/stdin@0.2.10';
import { poll } from 'wasi:io/poll@0.2.10';
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.10';

const SECOND = 1_000_000_000n;

export const run = {
  run() {
    const input = getStdin();
    for (let tick = 1; ; tick++) {
      console.log(`js tick ${tick}`);
      const ready = poll([input.subscribe(), subscribeDuration(SECOND)]);
      if (ready.includes(0)) {
        try {
          input.read(4096n);
        } catch (e) {
          if (e.payload && e.payload.tag === 'closed') {
            console.log('stdin closed, stopping');
            return;
          }
          throw e;
        }
      }
    }
  },
};
