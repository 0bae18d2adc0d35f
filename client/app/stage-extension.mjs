#!/usr/bin/env node
// Stages the extension for `neu build`: bundles client/src/desktop/main.ts (and everything it
// imports: the client core, protocol, media, zod, ws, opusscript) into one ES module with esbuild,
// and copies the one native module it loads at run time, naudiodon (with its own dependencies and
// the binary npm built for this platform), next to it. The result, client/app/extension/app/, is
// what the launcher (extension/voice-extension) runs; `neu build` copies extension/ into the app.
// Node itself: put a Node 20 in client/app/extension/node/ to ship it, else the one on PATH runs.
// Run it on each target platform (naudiodon's binary is per platform): `node client/app/stage-extension.mjs`.
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const out = join(here, 'extension', 'app');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

await build({
  entryPoints: [join(root, 'client', 'src', 'desktop', 'main.ts')],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  conditions: ['source'],
  outfile: join(out, 'client', 'dist', 'desktop', 'main.js'),
  // Native modules load at run time from node_modules; the Opus addons are optional (opusscript,
  // bundled, is the fallback).
  external: ['naudiodon', '@discordjs/opus', 'bufferutil', 'utf-8-validate'],
  banner: {
    js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);",
  },
  logLevel: 'warning',
});
writeFileSync(join(out, 'package.json'), JSON.stringify({ type: 'module', private: true }, null, 2));

const requireFromClient = createRequire(join(root, 'client', 'package.json'));
for (const pkg of ['naudiodon', 'bindings', 'file-uri-to-path', 'segfault-handler', 'nan']) {
  const dir = dirname(requireFromClient.resolve(`${pkg}/package.json`));
  cpSync(dir, join(out, 'node_modules', pkg), {
    recursive: true,
    // Sources and build intermediates are not needed at run time; the .node binary is.
    filter: (src) =>
      !/[\\/](portaudio[\\/](src|include|bin)|build[\\/]Release[\\/]obj\.target|scratch)([\\/]|$)/.test(src),
  });
}
console.log(`extension staged in ${out}`);
