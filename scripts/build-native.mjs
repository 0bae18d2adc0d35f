#!/usr/bin/env node
// Builds our one native addon, media/native/voice_opus.c (Node-API over the system libopus), into
// media/native/build/voice_opus.node. It is optional: without Debian's libopus-dev (or a C
// compiler) this says so in one line and exits 0, and Opus falls back to @discordjs/opus or
// opusscript, which cannot decode in-band FEC. Skips the build when the addon is up to date.
// Plain Node, no dependencies; a single `cc` call, no node-gyp.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const src = join(root, 'media', 'native', 'voice_opus.c');
const out = join(root, 'media', 'native', 'build', 'voice_opus.node');
const say = (msg) => process.stderr.write(`build-native: ${msg}\n`);

const nodeInclude = [join(dirname(dirname(process.execPath)), 'include', 'node'), '/usr/include/node'].find(
  (d) => existsSync(join(d, 'node_api.h')),
);
const opusInclude = ['/usr/include/opus', '/usr/local/include/opus'].find((d) =>
  existsSync(join(d, 'opus.h')),
);

if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) process.exit(0);
if (!opusInclude || !nodeInclude) {
  say(
    `${!opusInclude ? 'libopus-dev' : 'the Node headers'} not installed: skipping the FEC-capable Opus addon ` +
      '(Debian: `sudo apt-get install -y libopus-dev`); Opus uses @discordjs/opus or opusscript',
  );
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const cc = process.env.CC ?? 'cc';
const r = spawnSync(
  cc,
  [
    '-O2',
    '-Wall',
    '-Wextra',
    '-shared',
    '-fPIC',
    `-I${nodeInclude}`,
    `-I${opusInclude}`,
    src,
    '-o',
    out,
    '-lopus',
  ],
  { encoding: 'utf8' },
);
if (r.status !== 0) {
  say(
    `${cc} failed; Opus falls back to @discordjs/opus or opusscript:\n${(r.stderr || String(r.error)).trim()}`,
  );
  process.exit(0);
}
say(`built ${out.slice(root.length + 1)}`);
