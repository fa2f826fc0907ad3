// A test guest shaped like what `esbuild src/web.js --bundle --format=esm
// --external:'wasi:*'` makes of three source files written at different times: each
// file's imports stay where the file was, as external `wasi:` imports, one at WASI
// 0.2.4 (as jco's examples), one at 0.2.12 (as bundles made with jco-std), none at
// StarlingMonkey's 0.2.10. It answers GET with the DYNO variable, a header value that
// went through wasi:http/types' own `Fields`, and a count in the key-value add-on.

// src/config.js
import { getEnvironment } from "wasi:cli/environment@0.2.4";
function configVar(name, fallback) {
  const found = getEnvironment().find(([key]) => key === name);
  return found ? found[1] : fallback;
}

// src/probe.js
import { Fields } from "wasi:http/types@0.2.12";
function probe() {
  const fields = new Fields();
  fields.append("x-probe", new TextEncoder().encode("fields ok"));
  return new TextDecoder().decode(fields.get("x-probe")[0]);
}

// src/web.js
import { open } from "wasi:keyvalue/store@0.2.0-draft";
import { increment } from "wasi:keyvalue/atomics@0.2.0-draft";
addEventListener("fetch", (event) => {
  const hits = increment(open(""), "hits", 1n);
  event.respondWith(
    new Response(`hits=${hits} dyno=${configVar("DYNO", "?")} ${probe()}
`, { headers: { "content-type": "text/plain" } })
  );
});
