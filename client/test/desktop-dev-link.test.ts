import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { DevSocketLink } from '../src/desktop/links.js';

/** The development link: static UI, and a WebSocket only for the holder of the random token. */
let dir: string;
let link: DevSocketLink;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'voice-devlink-'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>ui</title>');
  writeFileSync(join(tmpdir(), 'voice-devlink-secret.txt'), 'outside');
  link = await DevSocketLink.listen({ staticDir: dir });
});
afterAll(() => {
  link.close();
  rmSync(dir, { recursive: true, force: true });
  rmSync(join(tmpdir(), 'voice-devlink-secret.txt'), { force: true });
});

const base = (): string => `http://127.0.0.1:${link.port}`;

function open(token: string): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${link.port}/ext?token=${token}`);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(-1));
  });
}

describe('DevSocketLink', () => {
  it('serves the UI, refuses paths outside it and malformed escapes without crashing', async () => {
    expect((await fetch(`${base()}/`)).status).toBe(200);
    expect(await (await fetch(`${base()}/index.html`)).text()).toContain('<title>ui</title>');
    // A file next to the UI directory, asked for with an escaped "../": never served.
    for (const path of ['/..%2fvoice-devlink-secret.txt', '/%2e%2e/voice-devlink-secret.txt']) {
      const res = await fetch(`${base()}${path}`);
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(await res.text()).not.toContain('outside');
    }
    expect((await fetch(`${base()}/%E0%A4%A`)).status).toBe(400);
    expect((await fetch(`${base()}/missing.js`)).status).toBe(404);
  });

  it('accepts the WebSocket only with the token, then carries commands and events both ways', async () => {
    expect(await open('wrong')).toBe(401);
    expect(await open('')).toBe(401);
    expect(link.rejected).toBe(2);
    const got: unknown[] = [];
    link.onCommand = (raw) => got.push(raw);
    const ws = (await open(link.token)) as WebSocket;
    const first = new Promise<string>((r) => ws.once('message', (m) => r((m as Buffer).toString('utf8'))));
    ws.send(JSON.stringify({ cmd: 'hello', id: 1, protocol: 1 }));
    ws.send('not json');
    link.send({ ev: 'speaking', userId: 'u_x', speaking: true });
    expect(JSON.parse(await first)).toEqual({ ev: 'speaking', userId: 'u_x', speaking: true });
    await expect.poll(() => got.length).toBe(2);
    expect(got).toEqual([{ cmd: 'hello', id: 1, protocol: 1 }, null]);
    ws.close();
  });
});
