#!/usr/bin/env node
// Checks what `npm test` needs from the system before any test runs, and installs what it can.
//
//   - redis-server on PATH (tests start their own instance on a free port);
//   - better-sqlite3's native binary loads (rebuilt with `npm rebuild better-sqlite3` if not);
//   - uWebSockets.js loaded its native binary for this Node's ABI, not its slow JS fallback;
//   - libopus-dev present and our Opus addon (media/native/voice_opus.c) built: the tests check
//     in-band FEC, which only that backend decodes;
//   - @discordjs/opus loads (rebuilt if not): the native backend's tests must not skip;
//   - libssl-dev present and our AES-GCM addon (media/native/voice_aead.c) built: the tests check it
//     against node:crypto;
//   - our batched UDP send addon (media/native/voice_udp.c, libc only) and the clock's timerfd addon
//     (media/native/voice_timer.c) built: the voice tests run the server on them;
//   - chromium (the desktop UI's end-to-end test), PulseAudio with its tools and ALSA's pulse plugin
//     (the sound-device tests start PulseAudio and its null sinks themselves), and naudiodon's
//     native binary;
//   - Artillery installed in loadtest/artillery at its pinned version (npm ci there, once).
//
// Silent when everything is in place (well under a second). When something is missing and we run
// as root with apt-get, it installs it (`apt-get update` once, then `apt-get install`); otherwise it
// exits 1 with one line saying what to install. Warns (does not fail) when Node is not 20.
// Plain Node, no dependencies: it runs before anything else is known to work.

import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
// Resolve native modules as the server does: from the cluster package.
const requireFromCluster = createRequire(join(root, 'cluster', 'package.json'));
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/** One line on stderr, prefixed so it is clear where it came from. */
function say(msg) {
  process.stderr.write(`provision: ${msg}\n`);
}

function fail(msg) {
  say(msg);
  process.exit(1);
}

/** Is `cmd` an executable file in one of the PATH directories? (no child process: fast) */
function onPath(cmd) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Runs a command, output captured; returns its status and the tail of its output. */
function run(cmd, args, env = process.env) {
  const r = spawnSync(cmd, args, { cwd: root, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? String(r.error) : ''}`;
  return { ok: r.status === 0, tail: out.trim().split('\n').slice(-15).join('\n') };
}

let aptUpdated = false;
/** apt-get install, when we are root and apt-get exists; returns false when we cannot. */
function aptInstall(pkgs) {
  if (!isRoot || !onPath('apt-get')) return false;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  say(`installing ${pkgs.join(' ')} with apt-get ...`);
  if (!aptUpdated) {
    const u = run('apt-get', ['update', '-q'], env);
    if (!u.ok) fail(`apt-get update failed:\n${u.tail}`);
    aptUpdated = true;
  }
  const r = run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...pkgs], env);
  if (!r.ok) fail(`apt-get install ${pkgs.join(' ')} failed:\n${r.tail}`);
  return true;
}

/** Opens an in-memory database: the addon loads lazily, on the first Database. */
function sqliteError() {
  try {
    const Database = requireFromCluster('better-sqlite3');
    const db = new Database(':memory:');
    db.prepare('select 1').get();
    db.close();
    return null;
  } catch (err) {
    return err;
  }
}

// 0. Node version: the uWebSockets.js build we use ships binaries for Node 16, 18 and 20.
const major = Number(process.versions.node.split('.')[0]);
if (major !== 20) {
  say(
    `!!! WARNING: this is Node ${process.version}; the project targets Node 20 ` +
      '(uWebSockets.js native binary, native addons). Expect failures or a slow fallback. !!!',
  );
}

// 1. Dependencies installed at all?
try {
  requireFromCluster.resolve('better-sqlite3');
  requireFromCluster.resolve('uWebSockets.js');
} catch {
  fail(`dependencies are not installed: run \`npm ci\` in ${root}`);
}

// 2. System packages.
if (!onPath('redis-server')) {
  if (!aptInstall(['redis-server'])) {
    fail('redis-server is not on PATH: install it (Debian: `sudo apt-get install -y redis-server`)');
  }
  if (!onPath('redis-server'))
    fail('redis-server still not on PATH after apt-get install (is /usr/bin on PATH?)');
}

// iproute2 (ip, tc) for the egress pressure test: it gives a private network namespace's loopback a
// rate-limited queue (cluster/test/voice-egress-pressure.test.ts).
if (!(onPath('ip') && onPath('tc')) && !aptInstall(['iproute2']))
  fail('ip and tc are not on PATH: install iproute2 (Debian: `sudo apt-get install -y iproute2`)');

// 3. better-sqlite3's native binary (built by its install script, which npm may have skipped).
let sqliteErr = sqliteError();
if (sqliteErr) {
  const tools = ['python3', 'make', 'g++'].filter((t) => !onPath(t));
  if (tools.length > 0 && !aptInstall(tools)) {
    fail(
      `better-sqlite3 native binary does not load and cannot be built: install ${tools.join(' ')} ` +
        '(Debian: `sudo apt-get install -y python3 make g++`), then run `npm rebuild better-sqlite3`',
    );
  }
  say('better-sqlite3 native binary does not load; running `npm rebuild better-sqlite3` ...');
  const env = { ...process.env };
  // node-gyp needs the Node headers; with the distribution's headers it builds offline.
  if (!env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) env.npm_config_nodedir = '/usr';
  const r = run('npm', ['rebuild', 'better-sqlite3', '--foreground-scripts'], env);
  sqliteErr = r.ok ? sqliteError() : new Error(r.tail);
  if (sqliteErr) {
    fail(
      `better-sqlite3 native binary does not load (${String(sqliteErr.message ?? sqliteErr).split('\n')[0]}): ` +
        'run `npm rebuild better-sqlite3` (needs python3, make, g++ and the Node 20 headers; ' +
        'offline, set npm_config_nodedir=/usr)',
    );
  }
}

// 4. uWebSockets.js: the package silently falls back to a JS implementation when no binary matches
// this Node's ABI (or the binary does not load), printing its own warning with console.warn. Keep
// that warning as the reason and say it once, our way.
const said = [];
const { warn, log } = console;
let uws;
try {
  console.warn = console.log = (...args) => void said.push(args.join(' '));
  uws = requireFromCluster('uWebSockets.js');
} finally {
  console.warn = warn;
  console.log = log;
}
if (!String(uws.App).includes('[native code]')) {
  const why = process.env.UWS_USE_FALLBACK
    ? 'UWS_USE_FALLBACK is set: unset it'
    : [16, 18, 20].includes(major)
      ? `the binary for ${process.platform}-${process.arch} failed to load (${said.join(' ').replace(/\s+/g, ' ').trim() || 'no reason given'}); it needs glibc on x64 or arm64`
      : 'it ships binaries for Node 16, 18 and 20 only: install Node 20';
  const msg = `uWebSockets.js native binary did not load for Node ${process.version} (ABI ${process.versions.modules}): ${why}`;
  if (process.env.VOICE_ALLOW_UWS_FALLBACK === '1')
    say(`!!! WARNING: ${msg} (continuing: VOICE_ALLOW_UWS_FALLBACK=1) !!!`);
  else fail(`${msg}; or set VOICE_ALLOW_UWS_FALLBACK=1 to accept the slow path`);
}

// 5. Our addons: Opus over the system libopus (the tests exercise its FEC decoding) and AES-256-GCM
// over OpenSSL's EVP (the tests check it against node:crypto byte for byte), and batched UDP send
// (sendmmsg; the voice tests run the server on it).
for (const [header, pkg] of [
  ['/usr/include/opus/opus.h', 'libopus-dev'],
  ['/usr/include/openssl/evp.h', 'libssl-dev'],
  ['/usr/include/netinet/in.h', 'libc6-dev'],
  ['/usr/include/linux/timerfd.h', 'linux-libc-dev'],
]) {
  if (existsSync(header)) continue;
  if (!aptInstall([pkg, ...(onPath('cc') ? [] : ['gcc'])]))
    fail(`${pkg} is not installed: install it (Debian: \`sudo apt-get install -y ${pkg}\`)`);
}
const built = run(process.execPath, [join(root, 'scripts', 'build-native.mjs')]);
for (const addon of ['voice_opus', 'voice_aead', 'voice_udp', 'voice_timer'])
  if (!built.ok || !existsSync(join(root, 'media', 'native', 'build', `${addon}.node`)))
    fail(`the ${addon} addon did not build:\n${built.tail}`);

// 6. @discordjs/opus: optional for users (opusscript is the fallback), but media/test/codec.test.ts
// checks the native backend, so it must load here. npm may have skipped its install script.
const requireFromMedia = createRequire(join(root, 'media', 'package.json'));
const discordOpusLoads = () => {
  try {
    return typeof requireFromMedia('@discordjs/opus').OpusEncoder === 'function';
  } catch {
    return false;
  }
};
if (!discordOpusLoads()) {
  say('@discordjs/opus does not load; running `npm rebuild @discordjs/opus` ...');
  const env = { ...process.env };
  if (!env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) env.npm_config_nodedir = '/usr';
  const r = run('npm', ['rebuild', '@discordjs/opus', '--foreground-scripts'], env);
  if (!r.ok || !discordOpusLoads())
    fail(`@discordjs/opus does not load and did not rebuild (needs python3, make, g++):\n${r.tail}`);
}

// 7. Artillery for the load tests, in its own package (loadtest/artillery, about 600 MB, kept out
// of the root workspaces so a server-only `npm ci` never pulls it). The load-test tests run it.
// Its install would download a Playwright browser, which fails offline: skipped.
const artilleryDir = join(root, 'loadtest', 'artillery');
const wantArtillery = JSON.parse(readFileSync(join(artilleryDir, 'package.json'), 'utf8')).dependencies
  .artillery;
let haveArtillery = null;
try {
  haveArtillery = JSON.parse(
    readFileSync(join(artilleryDir, 'node_modules', 'artillery', 'package.json'), 'utf8'),
  ).version;
} catch {
  // not installed
}
if (haveArtillery !== wantArtillery) {
  say(`installing Artillery ${wantArtillery} into loadtest/artillery (once; about 600 MB) ...`);
  const env = { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' };
  if (!env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) env.npm_config_nodedir = '/usr';
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: artilleryDir,
    env,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.status !== 0)
    fail(
      `npm ci in loadtest/artillery failed:\n${`${r.stdout}${r.stderr}`.trim().split('\n').slice(-15).join('\n')}`,
    );
}

// 8. The desktop client's tests: chromium, PulseAudio and ALSA's pulse plugin, naudiodon's binary.
const desktop = [
  ['chromium', () => existsSync('/usr/bin/chromium')],
  ['pulseaudio', () => onPath('pulseaudio')],
  ['pulseaudio-utils', () => onPath('pactl') && onPath('paplay') && onPath('parec')],
  ['alsa-utils', () => onPath('aplay')],
  [
    'libasound2-plugins',
    () =>
      ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib'].some((d) =>
        existsSync(join(d, 'alsa-lib', 'libasound_module_pcm_pulse.so')),
      ),
  ],
];
const missing = desktop.filter(([, ok]) => !ok()).map(([pkg]) => pkg);
if (missing.length > 0 && !aptInstall(missing))
  fail(
    `the desktop tests need ${missing.join(' ')} (Debian: \`sudo apt-get install -y ${missing.join(' ')}\`)`,
  );
const requireFromClient = createRequire(join(root, 'client', 'package.json'));
const naudiodonLoads = () =>
  run(process.execPath, ['-e', `require(${JSON.stringify(requireFromClient.resolve('naudiodon'))})`]).ok;
if (!naudiodonLoads()) {
  say('naudiodon native binary does not load; running `npm rebuild naudiodon` ...');
  const env = { ...process.env };
  if (!env.npm_config_nodedir && existsSync('/usr/include/node/node.h')) env.npm_config_nodedir = '/usr';
  const r = run('npm', ['rebuild', 'naudiodon', 'segfault-handler', '--foreground-scripts'], env);
  if (!r.ok || !naudiodonLoads()) fail(`naudiodon does not build or load:\n${r.tail}`);
}
