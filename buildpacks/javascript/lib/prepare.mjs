// node prepare.mjs APP_DIR OUT_DIR WASI_VERSION LEXER IMPORTS_TSV ENTRY.js…
//
// Copies the app to OUT_DIR (without node_modules and .git) for componentize-js, with
// every `wasi:PKG/IFACE@0.2.x` import of the entry modules and of the local modules they
// import rewritten to WASI_VERSION, the one the buildpack's WIT says. Apps written for
// other hosts import whichever 0.2.x was current (jco's examples 0.2.4, bundles made with
// jco-std 0.2.12), StarlingMonkey resolves an import only by the exact name of the WIT,
// and the host links any 0.2.x: so the version is the buildpack's business, not the
// app's. The user's files are never changed.
//
// The rewrite works on the import statements themselves (es-module-lexer, at LEXER,
// from the buildpack's tools), so `import`, `export … from` and `import('…')` with a
// string are covered, as are bundles made with esbuild or rolldown, which keep `wasi:`
// imports as they are; strings elsewhere in the code are left alone.
//
// IMPORTS_TSV gets one line per component import (`file`, the import as written, the
// import as built), so that bin/compile can name the file and the import as the user
// wrote them when componentize-js cannot resolve one. Imports that cannot work are
// refused here at once, naming the file: a local module that does not exist, an npm
// package (componentize-js does not bundle), a Node.js built-in.
import { cpSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

const [appDir, outDir, version, lexerPath, importsTsv, ...entries] = process.argv.slice(2);
const { init, parse } = createRequire(import.meta.url)(lexerPath);
await init;

/** A versioned WASI 0.2 interface, the only kind of import whose version is rewritten. */
const WASI_02 = /^(wasi:[a-z0-9-]+\/[a-z0-9-]+)@0\.2\.[0-9]+$/;
/** A component import (`namespace:package/interface…`), resolved by componentize-js. */
const COMPONENT = /^[a-z0-9-]+:[a-z0-9-]+\//;

const root = resolve(outDir);
cpSync(resolve(appDir), root, {
  recursive: true,
  filter: (path) => !/(^|[\\/])(node_modules|\.git)$/.test(path),
});

const problems = [];
const imports = [];
const seen = new Set();
// Files to look at, each with the entry module that imports it.
const queue = entries.map((entry) => [join(root, entry), entry]);

while (queue.length > 0) {
  const [path, entry] = queue.shift();
  if (seen.has(path)) continue;
  seen.add(path);
  const file = relative(root, path);
  const source = readFileSync(path, 'utf8');
  let found;
  try {
    [found] = parse(source, file);
  } catch (e) {
    // `node --check` passed, so this is syntax the lexer does not know: leave the file
    // as it is and let componentize-js judge it.
    continue;
  }
  let rewritten = '';
  let copied = 0;
  for (const { n: specifier, s: start, e: end } of found) {
    if (specifier === undefined) continue; // import(expression): nothing to check
    const wasi = WASI_02.exec(specifier);
    if (wasi) {
      const built = `${wasi[1]}@${version}`;
      imports.push([file, specifier, built]);
      // For a dynamic import, start…end covers the quotes too.
      rewritten += source.slice(copied, start) + source.slice(start, end).replace(specifier, built);
      copied = end;
    } else if (COMPONENT.test(specifier)) {
      imports.push([file, specifier, specifier]);
    } else if (specifier.startsWith('node:')) {
      problems.push(
        `${file} imports ${specifier}, a Node.js built-in module: StarlingMonkey, the engine of componentize-js, has web APIs (fetch, URL, TextEncoder…) and WASI imports instead`,
      );
    } else {
      // StarlingMonkey reads local modules while it builds: relative to the importing
      // file, and a bare name (`lodash`) relative to the app's root.
      const local = specifier.startsWith('.')
        ? resolve(dirname(path), specifier)
        : resolve(root, specifier);
      const inside = local.startsWith(root + sep);
      if (inside && existsSync(local) && statSync(local).isFile()) {
        if (/\.m?js$/.test(local)) queue.push([local, entry]);
      } else if (specifier.startsWith('.') || specifier.startsWith('/')) {
        problems.push(`${file} imports ${specifier}, which is not a file of the app`);
      } else {
        problems.push(
          `${file} imports ${specifier}, an npm package: componentize-js does not bundle them, so bundle ${entry} first (e.g. move it to src/ and run \`npx esbuild src/${entry} --bundle --format=esm --external:'wasi:*' --external:'wdeploy:*' --outfile=${entry}\`)`,
        );
      }
    }
  }
  if (copied > 0) writeFileSync(path, rewritten + source.slice(copied));
}

writeFileSync(importsTsv, imports.map((fields) => fields.join('\t') + '\n').join(''));
if (problems.length > 0) {
  for (const problem of problems) console.error(problem);
  process.exit(1);
}
