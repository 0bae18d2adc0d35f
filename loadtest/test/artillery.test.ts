import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ARTILLERY_VERSION,
  artilleryArgs,
  artilleryDir,
  artilleryEnv,
  runArtillery,
} from '../src/runner/artillery.js';

/**
 * Artillery itself, as the runner drives it: installed (.ci/run installs it before npm test), its
 * telemetry stubbed, nothing leaving the machine, and a broken threshold failing the run.
 */
const root = resolve(import.meta.dirname, '../..');
const dir = artilleryDir(root);
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'voice-artillery-test-'));
});
afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function node(
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 120_000,
): Promise<{ code: number; out: string }> {
  return new Promise((res) => {
    const c = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('exit', (code) => {
      clearTimeout(t);
      res({ code: code ?? -1, out });
    });
  });
}

describe('Artillery under the preload', () => {
  it(`is installed at the pinned version ${ARTILLERY_VERSION} (npm ci in loadtest/artillery)`, () => {
    const pkg = join(dir, 'node_modules/artillery/package.json');
    expect(existsSync(pkg), 'run `npm run loadtest -- signaling --size smoke` or .ci/run to install it').toBe(
      true,
    );
    expect((JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version).toBe(ARTILLERY_VERSION);
  });

  it('replaces the telemetry module: no PostHog client is ever loaded', () => {
    const r = spawnSync(
      process.execPath,
      [
        '--require',
        join(dir, 'preload.js'),
        '-e',
        `const t = require(require.resolve('artillery/lib/telemetry.js', { paths: [${JSON.stringify(dir)}] }));
         const c = t.init(); c.capture('test run', {});
         const loaded = Object.keys(require.cache).filter((k) => k.includes('posthog'));
         console.log(JSON.stringify({ enabled: t.isEnabled(), loaded }));`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ enabled: false, loaded: [] });
  });

  it('refuses and logs every attempt to leave the machine (TCP, UDP, DNS, fetch), in worker threads too', () => {
    const log = join(tmp, 'guard.log');
    const r = spawnSync(
      process.execPath,
      [
        '--require',
        join(dir, 'preload.js'),
        '-e',
        `const seen = [];
         const done = (what) => (e) => { seen.push(what + ':' + (e && e.code)); if (seen.length === 6) console.log(JSON.stringify(seen.sort())); };
         require('net').connect(8087, '127.0.0.2').on('error', done('tcp'));
         require('dgram').createSocket('udp4').send('x', 8087, '127.0.0.2', done('udp'));
         require('dns').lookup('example.com', done('dns'));
         fetch('http://127.0.0.2:8087/').catch((e) => done('fetch')(e.cause));
         require('net').connect(8087, '127.0.0.1').on('error', done('loopback'));
         new (require('worker_threads').Worker)("require('net').connect(8087, '127.0.0.2').on('error', (e) => require('worker_threads').parentPort.postMessage(e.code))", { eval: true })
           .on('message', (c) => done('worker')({ code: c }));`,
      ],
      {
        encoding: 'utf8',
        // 127.0.0.2 stands for an outside address: a broken guard sends nothing off the machine.
        env: {
          ...process.env,
          VOICE_LT_EGRESS: 'fail',
          VOICE_LT_EGRESS_DENY: '127.0.0.2',
          VOICE_LT_EGRESS_LOG: log,
        },
        timeout: 30_000,
      },
    );
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual([
      'dns:EGRESS_REFUSED',
      'fetch:EGRESS_REFUSED',
      'loopback:ECONNREFUSED',
      'tcp:EGRESS_REFUSED',
      'udp:EGRESS_REFUSED',
      'worker:EGRESS_REFUSED',
    ]);
    const lines = readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(5);
    expect(lines.filter((l) => /thread=[1-9]/.test(l))).toHaveLength(1);
  });

  it('a real run: telemetry-free exit in seconds, no egress, and an impossible threshold makes it fail', async () => {
    // The engine is used from its build; `npm run build` is incremental.
    const b = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8' });
    expect(b.status, b.stderr).toBe(0);
    const script = join(tmp, 'impossible.yml');
    // The users aim at 127.0.0.2, which the guard treats as off the machine: a run whose users
    // all fail to connect, with the refusals logged. Its `ensure` threshold cannot be met either.
    writeFileSync(
      script,
      `config:
  target: http://127.0.0.2:8087
  engines: { voice: {} }
  phases: [{ duration: 1, arrivalCount: 2 }]
  plugins: { ensure: {} }
  ensure:
    thresholds:
      - vusers.session_length.p99: 0.001
scenarios:
  - engine: voice
    flow:
      - signaling: { cycles: 1 }
`,
    );
    const egress = join(tmp, 'run-egress.log');
    const env = artilleryEnv(root, egress, { VOICE_LT_EGRESS_DENY: '127.0.0.2', VOICE_LT_RUN: 'test' });
    const t0 = performance.now();
    const r = await node(artilleryArgs(root, ['run', '--output', join(tmp, 'out.json'), script]), env);
    const seconds = (performance.now() - t0) / 1000;
    expect(r.code, r.out).not.toBe(0);
    expect(r.out).toMatch(/fail: vusers\.session_length\.p99 < 0\.001/);
    const out = JSON.parse(readFileSync(join(tmp, 'out.json'), 'utf8')) as {
      aggregate: { counters: Record<string, number> };
    };
    expect(out.aggregate.counters['errors.EGRESS_REFUSED']).toBe(2);
    expect(out.aggregate.counters['vusers.failed']).toBe(2);
    // Both users' attempts were refused in an Artillery worker thread, and logged.
    const lines = readFileSync(egress, 'utf8').trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(2);
    for (const l of lines) expect(l).toMatch(/^tcp 127\.0\.0\.2:8087 .*thread=[1-9]/);
    // With PostHog's client in place, an offline exit waits about 12 s for it.
    expect(seconds).toBeLessThan(60);
  }, 240_000);

  it('runs niced when asked: Artillery and every thread it starts (its workers included) yield to the server', async () => {
    const script = join(tmp, 'niced.yml');
    // Users that keep a worker thread busy for a few seconds (they fail to connect, refused by the guard).
    writeFileSync(
      script,
      `config:
  target: http://127.0.0.2:8087
  engines: { voice: {} }
  phases: [{ duration: 3, arrivalRate: 2 }]
scenarios:
  - engine: voice
    flow:
      - signaling: { cycles: 1 }
`,
    );
    const niceOf = (pid: number, tid: string): number | null => {
      try {
        // Field 19 of /proc/<pid>/task/<tid>/stat, counted after the command's closing parenthesis.
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
      } catch {
        return null; // the thread ended between the listing and the read
      }
    };
    let seen: number[] = [];
    let probe: NodeJS.Timeout | undefined;
    const r = await runArtillery({
      root,
      script,
      target: 'http://127.0.0.2:8087',
      outJson: join(tmp, 'niced.json'),
      logFile: join(tmp, 'niced.log'),
      egressLog: join(tmp, 'niced-egress.log'),
      env: { VOICE_LT_EGRESS_DENY: '127.0.0.2', VOICE_LT_RUN: 'test' },
      deadlineSeconds: 90,
      nice: 7,
      onStart: (pid) => {
        // The most threads seen at once, with their niceness, while the run lasts.
        probe = setInterval(() => {
          let tids: string[] = [];
          try {
            tids = readdirSync(`/proc/${pid}/task`);
          } catch {
            return;
          }
          const nices = tids.map((t) => niceOf(pid, t)).filter((n): n is number => n !== null);
          if (nices.length > seen.length) seen = nices;
        }, 100);
      },
    });
    clearInterval(probe);
    expect(r.timedOut).toBe(false);
    // Artillery's main thread, its worker threads, V8's and libuv's: well over a handful, all niced.
    expect(seen.length).toBeGreaterThan(8);
    expect(new Set(seen)).toEqual(new Set([7]));
  }, 120_000);
});
