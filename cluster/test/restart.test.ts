import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '@voice/protocol';
import { RestClient, SignalingClient } from '@voice/client';
import { ADMIN_TOKEN, freePort, startTestServer } from '../../test-support/server.js';
import { startServerProcess } from '../../test-support/server-process.js';

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

const startProcess = async (dataDir: string, port: number): Promise<ChildProcess> => {
  const child = await startServerProcess(dataDir, port);
  children.push(child);
  return child;
};

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

  it(
    'a kill -9 of the server in the middle of writes loses no acknowledged write',
    { timeout: 60_000 },
    async () => {
      const dir = tmp();
      const port = await freePort();
      const child = await startProcess(dir, port);
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
      const again = await startProcess(dir, port);
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
