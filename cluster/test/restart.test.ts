import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '@voice/protocol';
import { RestClient, SignalingClient } from '@voice/client';
import { ADMIN_TOKEN, freePort, freeUdpPort, startTestServer } from '../../test-support/server.js';

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
const tmp = () => {
  const d = mkdtempSync(join(tmpdir(), 'voice-restart-'));
  dirs.push(d);
  return d;
};

/** Spawns the real entry point (cluster/src/main.ts) as its own process, as `npm start` does. */
async function spawnServer(
  dataDir: string,
  port: number,
  env: Record<string, string> = {},
  args: string[] = [],
  config?: object,
): Promise<ChildProcess> {
  const configFile = join(dataDir, 'test-config.json');
  if (config) writeFileSync(configFile, JSON.stringify(config));
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', join(import.meta.dirname, '../src/main.ts'), ...args],
    {
      env: {
        ...process.env,
        VOICE_PORT: String(port),
        VOICE_UDP_PORT: String(await freeUdpPort()),
        VOICE_DATA_DIR: dataDir,
        VOICE_ADMIN_TOKEN: ADMIN_TOKEN,
        VOICE_LOG_LEVEL: 'warn',
        ...(config ? { VOICE_CONFIG: configFile } : {}),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  return child;
}

/** Starts the entry point and waits for its "listening" line. */
async function startProcess(dataDir: string, port: number, config?: object): Promise<ChildProcess> {
  const child = await spawnServer(dataDir, port, {}, [], config);
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`server exited ${c}: ${out}`)));
  });
  return child;
}

/** Runs the entry point to its exit; returns the status and what it printed. */
async function runToExit(
  dataDir: string,
  port: number,
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = await spawnServer(dataDir, port, env, args);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, stdout, stderr };
}

describe('durability', () => {
  it('keeps channels and profiles across a clean restart; tokens still work', async () => {
    const dir = tmp();
    let srv = await startTestServer({}, dir);
    const c = srv.rest();
    const { token, user } = await c.login('persist');
    await c.call('PATCH', '/api/v1/me', { status: 'still here' });
    const ch = (
      await c.call<{ channel: Channel }>('POST', '/api/v1/channels', { name: 'Forever', password: 'pw' })
    ).channel;
    await srv.stop();
    srv = await startTestServer({}, dir);
    const again = new RestClient(srv.url, token);
    const me = await again.call<{ user: { id: string; status: string } }>('GET', '/api/v1/me');
    expect(me.user).toMatchObject({ id: user.id, status: 'still here' });
    const got = (await again.call<{ channel: Channel }>('GET', `/api/v1/channels/${ch.id}`)).channel;
    expect(got).toMatchObject({ name: 'Forever', hasPassword: true, ownerId: user.id });
    // The password hash survived too: for another user, the right password joins, a wrong one does not.
    const guest = await srv.rest().login('guest');
    const ws = await SignalingClient.connect({
      url: `ws://127.0.0.1:${srv.httpPort}/ws`,
      token: guest.token,
    });
    await expect(ws.request('channel.join', { channelId: ch.id, password: 'nope' })).rejects.toMatchObject({
      code: 'WRONG_PASSWORD',
    });
    await ws.request('channel.join', { channelId: ch.id, password: 'pw' });
    ws.close();
    await srv.stop();
  });

  // kill -9 ends the process, not the machine: the page cache keeps every write() the server made, so
  // this proves crash safety of the process (no acknowledged write lost, a file that reopens), not
  // power-loss durability; see store-crash.test.ts, which asserts the fsync settings for that.
  it(
    'a kill -9 of the server in the middle of writes loses no acknowledged write',
    { timeout: 60_000 },
    async () => {
      const dir = tmp();
      const port = await freePort();
      // One writer creates many channels: lift the per-user channel cap and creation rate, and the
      // per-address budget.
      const many = {
        limits: {
          channelsPerUser: 100_000,
          channelCreatesPerMinute: 1e4,
          channelCreateBurst: 1e4,
          channelCreateBurstPerAddress: 1e6,
        },
      };
      const child = await startProcess(dir, port, many);
      const base = `http://127.0.0.1:${port}`;
      const c = new RestClient(base);
      await c.login('crash-owner');
      const acked: string[] = [];
      let stop = false;
      const writers = Array.from({ length: 4 }, async (_, w) => {
        for (let i = 0; !stop; i++) {
          try {
            const r = await c.call<{ channel: Channel }>('POST', '/api/v1/channels', { name: `w${w}-${i}` });
            acked.push(r.channel.id);
          } catch {
            return; // the server died under us
          }
        }
      });
      const t0 = Date.now();
      while (acked.length < 60 && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 10));
      expect(acked.length).toBeGreaterThanOrEqual(60);
      const exited = new Promise((r) => child.once('exit', r)); // before the kill: exit may come at once
      child.kill('SIGKILL');
      stop = true;
      await Promise.all(writers);
      await exited;
      const again = await startProcess(dir, port, many);
      const admin = new RestClient(base, ADMIN_TOKEN);
      const list = await admin.call<{ items: Channel[]; total: number }>(
        'GET',
        '/api/v1/admin/channels?limit=200',
      );
      const ids = new Set<string>(list.items.map((x) => x.id));
      for (const id of acked) expect(ids.has(id)).toBe(true);
      // Still writable after recovery.
      await c.call('POST', '/api/v1/channels', { name: 'after-crash' });
      again.kill('SIGTERM');
    },
  );
});

/** A start-up refusal: exit status 2, what is wrong on stderr without a stack trace, never listening. */
function expectRefusal(r: { code: number | null; stdout: string; stderr: string }, says: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stderr).toMatch(/^voice-server: /);
  expect(r.stderr).toMatch(says);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(r.stdout).not.toContain('listening');
}

describe('the server process (cluster/src/main.ts)', () => {
  it(
    'refuses to start on a bad setting or without native uWebSockets.js, exit status 2',
    { timeout: 60_000 },
    async () => {
      const dir = tmp();
      const port = await freePort();
      const file = join(dir, 'typo.json');
      writeFileSync(file, JSON.stringify({ prot: 7800 }));
      const cases: { env?: Record<string, string>; args?: string[]; says: RegExp }[] = [
        { env: { VOICE_PORT: '99999' }, says: /port/ },
        { env: { VOICE_ADMIN_TOKEN: 'short' }, says: /adminToken must be at least 16 characters/ },
        // Cluster mode whose Redis does not answer: refused at start, not retried forever.
        { env: { VOICE_REDIS_URL: `redis://127.0.0.1:${port}` }, says: /cannot reach Redis/ },
        { env: { VOICE_GRACE_MS: 'soon' }, says: /VOICE_GRACE_MS|graceMs/ },
        { args: ['--config', file], says: /prot/ },
        // The slow JS fallback is refused unless VOICE_ALLOW_UWS_FALLBACK=1.
        { env: { UWS_USE_FALLBACK: '1' }, says: /uWebSockets\.js native binary did not load/ },
      ];
      // One at a time: each is a Node process with tsx (about a second of CPU here).
      for (const c of cases) expectRefusal(await runToExit(dir, port, c.env, c.args), c.says);
    },
  );

  it(
    'a port already in use is a start-up refusal too (exit status 2), not a crash',
    { timeout: 30_000 },
    async () => {
      const port = await freePort();
      const first = await startProcess(tmp(), port);
      expectRefusal(await runToExit(tmp(), port), /cannot listen on 127\.0\.0\.1:\d+/);
      // The first server is unharmed.
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      first.kill('SIGTERM');
    },
  );

  it(
    'stops on Ctrl-C (SIGINT): says bye to clients, closes with 1001, exits 0, keeps its data',
    { timeout: 60_000 },
    async () => {
      const dir = tmp();
      const port = await freePort();
      const child = await startProcess(dir, port);
      const base = `http://127.0.0.1:${port}`;
      const c = new RestClient(base);
      const { token } = await c.login('ctrl-c');
      const ch = (await c.call<{ channel: Channel }>('POST', '/api/v1/channels', { name: 'Survives' }))
        .channel;
      const ws = await SignalingClient.connect({ url: `ws://127.0.0.1:${port}/ws`, token });
      await ws.request('channel.join', { channelId: ch.id });
      const bye = ws.waitFor('bye', undefined, 10_000);
      const closed = new Promise<number>((r) => ws.once('close', (code: number) => r(code)));
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      const t0 = performance.now();
      child.kill('SIGINT');
      expect((await bye).code).toBe('UNAVAILABLE');
      expect(await closed).toBe(1001);
      expect(await exited).toBe(0);
      // A clean stop is quick: nothing waits for a timeout.
      expect(performance.now() - t0).toBeLessThan(5_000);
      await expect(fetch(`${base}/healthz`)).rejects.toThrow();
      // Its data is there on the next start, and the token still works.
      const again = await startProcess(dir, port);
      const got = await new RestClient(base, token).call<{ channel: Channel }>(
        'GET',
        `/api/v1/channels/${ch.id}`,
      );
      expect(got.channel.name).toBe('Survives');
      again.kill('SIGTERM');
    },
  );
});
