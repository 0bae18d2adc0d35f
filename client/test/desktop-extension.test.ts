import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { WebSocketServer } from 'ws';
import { freePort } from '../../test-support/server.js';
import { EXTENSION_POOL_SIZE } from '../src/audio/device-backend.js';
import { COMMAND_EVENT, EVENT_EVENT, parseEvent, type DesktopEvent } from '../src/desktop/messages.js';

const MAIN = fileURLToPath(new URL('../src/desktop/main.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const LAUNCHER = fileURLToPath(new URL('../app/extension/voice-extension', import.meta.url));

/** Starts the extension as Neutralino would: a shell command, credentials on stdin, then stdin closed. */
function startExtension(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--conditions=source', '--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL');
});

/**
 * A stand-in for the Neutralino v6.9.0 runtime's side of the extension protocol (BRIEF section 4):
 * it accepts a WebSocket only with the right extensionId and connectToken, answers `app.broadcast`
 * requests carrying the right access token with `{id, method, data: {success: true}}`, sends
 * runtime-wide events without an id, and drops the socket (1006) when "the app" exits.
 */
describe('Neutralino extension handshake', () => {
  it('reads credentials from stdin, connects, answers commands through app.broadcast, ignores runtime events, exits when the socket drops', async () => {
    const creds = {
      nlToken: 'access-token-xyz',
      nlConnectToken: 'connect-token-abc',
      nlExtensionId: 'org.voice.engine',
    };
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const port = (wss.address() as { port: number }).port;
    const rejected: string[] = [];
    const connected = new Promise<WebSocket>((resolve) => {
      wss.on('connection', (ws, req) => {
        const q = new URL(req.url ?? '/', 'http://localhost').searchParams;
        if (q.get('extensionId') !== creds.nlExtensionId || q.get('connectToken') !== creds.nlConnectToken) {
          rejected.push(req.url ?? '');
          ws.close(1008);
          return;
        }
        resolve(ws);
      });
    });
    const ext = startExtension(['--audio', 'file']);
    children.push(ext);
    let stderr = '';
    ext.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    ext.stdin!.end(JSON.stringify({ nlPort: String(port), ...creds }));
    const ws = await connected;
    expect(rejected).toEqual([]);

    const events: DesktopEvent[] = [];
    const badRequests: unknown[] = [];
    ws.on('message', (raw) => {
      const m = JSON.parse((raw as Buffer).toString('utf8')) as {
        id: string;
        method: string;
        accessToken: string;
        data: { event: string; data: unknown };
      };
      if (m.method !== 'app.broadcast' || m.accessToken !== creds.nlToken || m.data.event !== EVENT_EVENT) {
        badRequests.push(m);
        return;
      }
      ws.send(JSON.stringify({ id: m.id, method: m.method, data: { success: true } })); // the runtime's reply
      const e = parseEvent(m.data.data);
      if (e.ok) events.push(e.value);
      else badRequests.push(m);
    });
    const waitFor = async (pred: (e: DesktopEvent) => boolean): Promise<DesktopEvent> => {
      for (let i = 0; i < 400; i++) {
        const hit = events.find(pred);
        if (hit) return hit;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no such event; got ${JSON.stringify(events.map((e) => e.ev))}; stderr ${stderr}`);
    };
    // Runtime-wide events the extension does not know: ignored, not answered, no crash.
    ws.send(JSON.stringify({ event: 'windowFocus', data: null }));
    ws.send(JSON.stringify({ event: 'extClientConnect', data: 'js.neutralino.devtools' }));
    ws.send('not json');
    ws.send(JSON.stringify({ event: COMMAND_EVENT, data: { cmd: 'hello', id: 7, protocol: 1 } }));
    const reply = await waitFor((e) => e.ev === 'reply' && e.re === 7);
    expect(reply).toMatchObject({ ev: 'reply', re: 7, ok: true });
    const state = await waitFor((e) => e.ev === 'state');
    expect(state).toMatchObject({ connection: 'disconnected' });
    // A malformed command is answered with BAD_MESSAGE.
    ws.send(
      JSON.stringify({ event: COMMAND_EVENT, data: { cmd: 'volume', id: 8, userId: 'u_x', percent: 900 } }),
    );
    expect(await waitFor((e) => e.ev === 'reply' && e.re === 8)).toMatchObject({
      ok: false,
      error: { code: 'BAD_MESSAGE' },
    });
    // Connecting to a closed port: a clear failure, not a crash.
    ws.send(
      JSON.stringify({
        event: COMMAND_EVENT,
        data: { cmd: 'connect', id: 9, server: `127.0.0.1:${await freePort()}`, nickname: 'tester' },
      }),
    );
    expect(await waitFor((e) => e.ev === 'reply' && e.re === 9)).toMatchObject({
      ok: false,
      error: { code: 'SERVER_DOWN' },
    });
    expect(badRequests).toEqual([]);
    expect(ext.exitCode).toBeNull();

    // The app exits: the runtime's socket drops without a close frame. The extension must exit itself.
    const exited = once(ext, 'exit');
    ws.terminate();
    const [code] = (await Promise.race([
      exited,
      new Promise((r) => setTimeout(() => r(['timeout']), 8000)),
    ])) as [unknown];
    expect(code).toBe(0);
    wss.close();
  });

  it('exits with a message when stdin carries no credentials', async () => {
    const ext = startExtension(['--audio', 'file']);
    children.push(ext);
    let stderr = '';
    ext.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    ext.stdin!.end('{"nlPort": "not a port"}');
    const [code] = (await once(ext, 'exit')) as [number];
    expect(code).toBe(1);
    expect(stderr).toContain('voice extension:');
  });

  it('refuses --streams out of 1-8 with a message, before reading its credentials', async () => {
    const ext = startExtension(['--audio', 'file', '--streams', '9']);
    children.push(ext);
    let stderr = '';
    ext.stderr!.on('data', (d: Buffer) => (stderr += String(d)));
    const [code] = (await once(ext, 'exit')) as [number];
    expect(code).toBe(1);
    expect(stderr).toContain('--streams must be an integer in [1, 8]');
  });

  it('the launcher starts the extension with a libuv pool of EXTENSION_POOL_SIZE, unless UV_THREADPOOL_SIZE says otherwise', () => {
    // The packaged layout (README): the launcher, node/bin/node, app/client/dist/desktop/main.js,
    // whose stand-in reports the environment the process started with.
    const dir = mkdtempSync(join(tmpdir(), 'voice-launcher-'));
    try {
      copyFileSync(LAUNCHER, join(dir, 'voice-extension'));
      mkdirSync(join(dir, 'node', 'bin'), { recursive: true });
      symlinkSync(process.execPath, join(dir, 'node', 'bin', 'node'));
      mkdirSync(join(dir, 'app', 'client', 'dist', 'desktop'), { recursive: true });
      writeFileSync(
        join(dir, 'app', 'client', 'dist', 'desktop', 'main.js'),
        'console.log(JSON.stringify({ pool: process.env.UV_THREADPOOL_SIZE, args: process.argv.slice(2) }));',
      );
      const run = (env: Record<string, string>): unknown =>
        JSON.parse(
          execFileSync('/bin/sh', [join(dir, 'voice-extension'), '--dev'], {
            env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
          }).toString(),
        );
      expect(run({})).toEqual({ pool: String(EXTENSION_POOL_SIZE), args: ['--dev'] });
      expect(run({ UV_THREADPOOL_SIZE: '32' })).toEqual({ pool: '32', args: ['--dev'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
