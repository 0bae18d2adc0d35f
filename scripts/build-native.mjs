#!/usr/bin/env node
// Builds our native addons, each a single `cc` call against system headers (no node-gyp):
//   media/native/voice_opus.c -> media/native/build/voice_opus.node (Debian libopus-dev): Node-API
//     over the system libopus, the one backend that decodes in-band FEC;
//   media/native/voice_aead.c -> media/native/build/voice_aead.node (Debian libssl-dev): AES-256-GCM
//     for voice packets with persistent OpenSSL EVP contexts, allocation-free;
//   media/native/voice_udp.c -> media/native/build/voice_udp.node (libc only): batched UDP send with
//     sendmmsg(2) on the voice socket's descriptor (Linux), allocation-free;
//   media/native/voice_timer.c -> media/native/build/voice_timer.node (libc and Node's libuv headers):
//     a timerfd(2) watched on the main event loop, the voice clock's wake-up (Linux).
// All are optional: without the headers (or a C compiler) this says so in one line per addon and
// exits 0, and the code falls back (Opus to @discordjs/opus or opusscript, AES-GCM to node:crypto).
// Skips an addon that is up to date. Plain Node, no dependencies.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const say = (msg) => process.stderr.write(`build-native: ${msg}\n`);
const nodeInclude = [join(dirname(dirname(process.execPath)), 'include', 'node'), '/usr/include/node'].find(
  (d) => existsSync(join(d, 'node_api.h')),
);
const cc = process.env.CC ?? 'cc';

const ADDONS = [
  {
    name: 'voice_opus',
    header: 'opus.h',
    includeDirs: ['/usr/include/opus', '/usr/local/include/opus'],
    lib: '-lopus',
    pkg: 'libopus-dev',
    fallback: 'Opus uses @discordjs/opus or opusscript (no in-band FEC)',
  },
  {
    name: 'voice_aead',
    header: 'openssl/evp.h',
    includeDirs: ['/usr/include', '/usr/local/include'],
    lib: '-lcrypto',
    pkg: 'libssl-dev',
    fallback: 'voice packets are sealed with node:crypto (allocates per packet)',
  },
  {
    name: 'voice_udp',
    header: 'netinet/in.h',
    includeDirs: ['/usr/include', '/usr/local/include'],
    lib: null,
    pkg: 'libc6-dev',
    fallback: 'voice packets are sent with node:dgram (one syscall and ~670 young bytes per datagram)',
  },
  {
    name: 'voice_timer',
    header: 'linux/timerfd.h',
    includeDirs: ['/usr/include', '/usr/local/include'],
    lib: null,
    pkg: 'linux-libc-dev',
    fallback: 'the voice clock is woken by a metronome thread (a message per wake-up)',
  },
];

for (const a of ADDONS) {
  const src = join(root, 'media', 'native', `${a.name}.c`);
  const out = join(root, 'media', 'native', 'build', `${a.name}.node`);
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) continue;
  const include = a.includeDirs.find((d) => existsSync(join(d, a.header)));
  if (!include || !nodeInclude) {
    say(
      `${!include ? a.pkg : 'the Node headers'} not installed: skipping ${a.name} ` +
        `(Debian: \`sudo apt-get install -y ${a.pkg}\`); ${a.fallback}`,
    );
    continue;
  }
  mkdirSync(dirname(out), { recursive: true });
  const r = spawnSync(
    cc,
    [
      '-O2',
      '-Wall',
      '-Wextra',
      '-shared',
      '-fPIC',
      `-I${nodeInclude}`,
      `-I${include}`,
      src,
      '-o',
      out,
      ...(a.lib ? [a.lib] : []),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) {
    say(`${cc} failed for ${a.name}; ${a.fallback}:\n${(r.stderr || String(r.error)).trim()}`);
    continue;
  }
  say(`built ${out.slice(root.length + 1)}`);
}
