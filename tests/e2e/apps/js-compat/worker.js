// A test guest: a worker written as plain ES modules (this one and ./lib/ticks.js) with
// WASI imports at versions StarlingMonkey does not speak. It logs a tick a second and
// returns when its stdin closes.
import { getStdin } from 'wasi:cli/stdin@0.2.4';
import { readyWithinASecond } from './lib/ticks.js';

export const run = {
  run() {
    const input = getStdin();
    for (let tick = 1; ; tick++) {
      console.log(`js-compat tick ${tick}`);
      if (readyWithinASecond(input.subscribe())) {
        try {
          input.read(4096n);
        } catch (e) {
          if (e.payload && e.payload.tag === 'closed') return;
          throw e;
        }
      }
    }
  },
};
