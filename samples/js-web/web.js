// The `web` process: a fetch handler (StarlingMonkey's wasi:http incoming handler).
//
// Greets with the GREETING config var and counts visits in the key-value add-on, so
// the count survives restarts and deploys and is exact across dynos.
import { getEnvironment } from 'wasi:cli/environment@0.2.10';
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';

function configVar(name, fallback) {
  const found = getEnvironment().find(([key]) => key === name);
  return found ? found[1] : fallback;
}

addEventListener('fetch', (event) => {
  const greeting = configVar('GREETING', 'Hello');
  const visits = increment(open(''), 'visits', 1n);
  const url = new URL(event.request.url);
  console.log(`visit ${visits} to ${url.pathname}`);
  event.respondWith(
    new Response(`${greeting} from JavaScript! Visit number ${visits}\n`, {
      headers: { 'content-type': 'text/plain' },
    }),
  );
});
