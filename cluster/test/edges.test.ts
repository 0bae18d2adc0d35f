import { connect, type Socket } from 'node:net';
import Database from 'better-sqlite3';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodeServerMessage,
  encodeMessage,
  MAX_FRAME_BYTES,
  ProtocolError,
  type Channel,
  type ServerMessage,
  type User,
  type UserId,
} from '@voice/protocol';
import { pino } from 'pino';
import { SignalingClient } from '@voice/client';
import { Boundary } from '../src/boundary.js';
import { Metrics } from '../src/metrics.js';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

/**
 * The request boundaries and the places where code and protocol/README.md disagreed (issue 7):
 * each test attacks the real server on its real sockets and fails if its fix is undone.
 */

let srv: TestServer;
afterEach(async () => {
  await srv?.stop();
});

/** A raw WebSocket that records every frame the server sends, with its size. */
async function rawSocket(url: string): Promise<{
  ws: WebSocket;
  frames: { size: number; msg: ServerMessage | null }[];
  closed: Promise<{ code: number; reason: string }>;
}> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const frames: { size: number; msg: ServerMessage | null }[] = [];
  ws.on('message', (d: Buffer) => {
    const m = decodeServerMessage(d);
    frames.push({ size: d.byteLength, msg: m.ok ? m.value : null });
  });
  const closed = new Promise<{ code: number; reason: string }>((r) =>
    ws.once('close', (c: number, reason: Buffer) => r({ code: c, reason: reason.toString() })),
  );
  ws.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return { ws, frames, closed };
}

/** A user logged in over REST, then a raw WebSocket whose hello was answered. */
async function helloSocket(
  srv: TestServer,
  nickname: string,
): Promise<Awaited<ReturnType<typeof rawSocket>> & { user: User }> {
  const { token, user } = await srv.rest().login(nickname);
  const c = await rawSocket(srv.wsUrl);
  c.ws.send(encodeMessage({ t: 'hello', id: 1, versions: [1], token }));
  await expect.poll(() => c.frames.length).toBe(1);
  return { ...c, user };
}

/** `n` channels with names of 58 wide characters, straight into the store (no creation limits). */
async function fillWithLongNames(srv: TestServer, ownerId: UserId, n: number): Promise<void> {
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    await srv.ctx.store.createChannel({
      id: `c_${String(i).padStart(12, '0')}` as never,
      name: `${'語'.repeat(58)} ${String(i).padStart(4, '0')}`,
      userLimit: 0,
      ownerId,
      passwordHash: null,
      voice: { bitrate: 32_000, frameMs: 20, complexity: 9 },
      createdAt: now + i,
      updatedAt: now + i,
    });
  }
}

/** One HTTP exchange over a plain TCP socket: exactly the bytes the server wrote. */
async function rawHttp(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write(request));
    let out = '';
    s.on('data', (d) => (out += d.toString('latin1')));
    s.on('error', reject);
    // Long enough for a body to follow the headers if the server wrongly sent one.
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 300);
  });
}

describe('HTTP boundary', () => {
  it('answers bad escapes in every parameterised route with 400 INVALID_FIELD, counted', async () => {
    srv = await startTestServer();
    const { token } = await srv.rest().login('escaper');
    const auth = { authorization: `Bearer ${token}` };
    const cases: [string, string][] = [
      ['GET', '/api/v1/channels/%'],
      ['GET', '/api/v1/users/%zz'],
      ['PATCH', '/api/v1/channels/%c3%28'],
      ['DELETE', '/api/v1/channels/%'],
      ['GET', '/api/v1/channels/%/members'],
    ];
    for (const [method, path] of cases) {
      const res = await fetch(srv.url + path, { method, headers: auth });
      expect(res.status, path).toBe(400);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INVALID_FIELD');
    }
    const m = srv.ctx.metrics;
    expect(await m.value('voice_errors_total', { code: 'INVALID_FIELD', transport: 'http' })).toBe(
      cases.length,
    );
    expect(await m.value('voice_boundary_errors_total')).toBe(0);
  });

  it('names a malformed id in the path as a path parameter, not as the body', async () => {
    srv = await startTestServer();
    const { token } = await srv.rest().login('pathfinder');
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const good = (await srv.rest(token).createChannel({ name: 'paths' })).id;
    const cases: [string, string, string][] = [
      ['GET', '/api/v1/users/u_short', 'id'],
      ['GET', '/api/v1/channels/c_short', 'id'],
      ['PATCH', '/api/v1/channels/not-an-id', 'id'],
      ['DELETE', `/api/v1/channels/${good}/mutes/u_short`, 'userId'],
    ];
    for (const [method, path, key] of cases) {
      const res = await fetch(srv.url + path, {
        method,
        headers: auth,
        ...(method === 'PATCH' ? { body: '{"name":"renamed"}' } : {}),
      });
      expect(res.status, path).toBe(400);
      const { error } = (await res.json()) as { error: { code: string; message: string } };
      expect(error.code, path).toBe('INVALID_FIELD');
      expect(error.message, path).toMatch(new RegExp(`^path parameter ${key}: `));
      expect(error.message, path).not.toContain('(body)');
    }
  });

  it('answers an exception in a handler with 500 INTERNAL, counts it, and serves the next request', async () => {
    srv = await startTestServer();
    const { token } = await srv.rest().login('victim');
    // A bug stands in as a store that throws something that is not a ProtocolError.
    srv.ctx.store.listChannels = () => {
      throw new RangeError('bug: a synchronous throw inside a handler');
    };
    const res = await fetch(srv.url + '/api/v1/channels', { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(500);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('INTERNAL');
    expect(
      await srv.ctx.metrics.value('voice_boundary_errors_total', { boundary: 'http', code: 'INTERNAL' }),
    ).toBe(1);
    expect((await fetch(srv.url + '/healthz')).status).toBe(200);
    // A result that cannot be serialised is a bug too, answered whole rather than half written.
    srv.ctx.store.listChannels = () =>
      Promise.resolve({ items: [], total: 1n as unknown as number, limit: 50, offset: 0 });
    const bad = await fetch(srv.url + '/api/v1/channels', { headers: { authorization: `Bearer ${token}` } });
    expect(bad.status).toBe(500);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('INTERNAL');
  });

  it('refuses bodies that are not application/json with 415 UNSUPPORTED_MEDIA_TYPE', async () => {
    srv = await startTestServer();
    const body = JSON.stringify({ nickname: 'plain' });
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/jsonx', undefined]) {
      const res = await fetch(srv.url + '/api/v1/login', {
        method: 'POST',
        body: new TextEncoder().encode(body),
        headers: type ? { 'content-type': type } : {},
      });
      expect(res.status, String(type)).toBe(415);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    }
    // JSON with a charset parameter is JSON.
    const ok = await fetch(srv.url + '/api/v1/login', {
      method: 'POST',
      body,
      headers: { 'content-type': 'Application/JSON; charset=utf-8' },
    });
    expect(ok.status).toBe(201);
    expect(await srv.ctx.metrics.value('voice_errors_total', { code: 'UNSUPPORTED_MEDIA_TYPE' })).toBe(4);
  });

  it('answers HEAD with headers only: 405 with Allow on a known path, 404 elsewhere, never a body', async () => {
    srv = await startTestServer();
    const head = await rawHttp(srv.httpPort, 'HEAD /healthz HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 405 /);
    expect(head).toMatch(/\r\nallow: GET\r\n/i);
    const [headers, rest] = head.split('\r\n\r\n');
    expect(headers).not.toMatch(/content-type/i);
    expect(rest).toBe('');
    const missing = await rawHttp(srv.httpPort, 'HEAD /nope HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(missing).toMatch(/^HTTP\/1\.1 404 /);
    expect(missing.split('\r\n\r\n')[1]).toBe('');
    // A GET keeps its body, and a wrong method on a known path still explains itself.
    const del = await fetch(srv.url + '/healthz', { method: 'DELETE' });
    expect(del.status).toBe(405);
    expect(del.headers.get('allow')).toBe('GET');
    expect(((await del.json()) as { error: { code: string } }).error.code).toBe('METHOD_NOT_ALLOWED');
  });

  it('answers 501 NOT_IMPLEMENTED to a method no route takes; uWS closes on a method it does not know', async () => {
    srv = await startTestServer();
    const requests = () =>
      srv.ctx.metrics.value('voice_http_requests_total', { route: 'unmatched', status: '501' });
    // PUT, OPTIONS, TRACE and CONNECT reach the router: no route of ours takes them, on any path.
    for (const method of ['PUT', 'OPTIONS', 'TRACE', 'CONNECT']) {
      for (const path of ['/healthz', '/api/v1/channels', '/nope']) {
        const answer = await rawHttp(srv.httpPort, `${method} ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
        expect(answer, `${method} ${path}`).toMatch(/^HTTP\/1\.1 501 /);
        expect(answer).not.toMatch(/\r\nallow:/i);
        expect(answer).toMatch(/\{"error":\{"code":"NOT_IMPLEMENTED"/);
      }
    }
    expect(await requests()).toBe(12);
    expect(await srv.ctx.metrics.value('voice_errors_total', { code: 'NOT_IMPLEMENTED' })).toBe(12);
    // A method outside uWS's nine never reaches JavaScript: the connection closes with no answer,
    // nothing is counted, and the server goes on serving.
    const before = (await fetch(srv.url + '/metrics').then((r) => r.text())).match(
      /voice_http_requests_total\{[^\n]*/g,
    );
    for (const method of ['FOO', 'PROPFIND', 'QUERY', 'get']) {
      expect(await rawHttp(srv.httpPort, `${method} /healthz HTTP/1.1\r\nhost: x\r\n\r\n`), method).toBe('');
    }
    const after = (await fetch(srv.url + '/metrics').then((r) => r.text())).match(
      /voice_http_requests_total\{[^\n]*/g,
    );
    // The only new count is the first /metrics request itself.
    expect(after?.filter((l) => !l.includes('route="GET /metrics"'))).toEqual(
      before?.filter((l) => !l.includes('route="GET /metrics"')),
    );
    expect((await fetch(srv.url + '/healthz')).status).toBe(200);
  });

  it('answers a full disk with 503 STORAGE_FULL, not 500 INTERNAL', async () => {
    srv = await startTestServer();
    const { token } = await srv.rest().login('writer');
    // A real SQLITE_FULL from a real SQLite database that ran out of pages, thrown where the
    // server's store would throw it (making this server's disk full is not possible everywhere).
    const full = new Database(':memory:');
    full.pragma('max_page_count = 2');
    full.exec('CREATE TABLE t (x BLOB)');
    let sqliteFull: unknown;
    try {
      full.prepare('INSERT INTO t VALUES (?)').run(Buffer.alloc(64 * 1024));
    } catch (err) {
      sqliteFull = err;
    }
    full.close();
    expect((sqliteFull as { code?: string }).code).toBe('SQLITE_FULL');
    const store = srv.ctx.store;
    const createChannel = store.createChannel.bind(store);
    store.createChannel = () => Promise.reject(new Error('createChannel failed', { cause: sqliteFull }));
    const rest = srv.rest(token);
    const res = await fetch(srv.url + '/api/v1/channels', {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Full' }),
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('STORAGE_FULL');
    // The same over signaling.
    const ws = await SignalingClient.connect({ url: srv.wsUrl, token });
    expect(await code(ws.request('channel.create', { name: 'Full' }))).toBe('STORAGE_FULL');
    ws.close();
    // And a disk with room again works.
    store.createChannel = createChannel;
    expect(
      (await rest.call<{ channel: Channel }>('POST', '/api/v1/channels', { name: 'Room' })).channel.name,
    ).toBe('Room');
    expect(await srv.ctx.metrics.value('voice_errors_total', { code: 'STORAGE_FULL' })).toBe(2);
  });

  it('admin online=false filters before paging: full pages and an exact total, also with q', async () => {
    srv = await startTestServer({ limits: { loginBurst: 100 } });
    const admin = srv.rest(ADMIN_TOKEN);
    const tokens: string[] = [];
    for (const nick of ['ann', 'anna', 'annie', 'bob', 'bobby', 'anika', 'andy']) {
      tokens.push((await srv.rest().login(nick)).token);
    }
    // Log out all but 'anna' and 'bob': five offline, of whom four match q=an.
    for (const [i, t] of tokens.entries()) {
      if (i !== 1 && i !== 3) await srv.rest(t).call('POST', '/api/v1/logout');
    }
    type Page = { items: User[]; total: number };
    const all = await admin.call<Page>('GET', '/api/v1/admin/users?online=false&limit=2&offset=0');
    expect(all.total).toBe(5);
    expect(all.items.map((u) => u.nickname)).toEqual(['ann', 'annie']);
    const second = await admin.call<Page>('GET', '/api/v1/admin/users?online=false&limit=2&offset=2');
    expect(second.items.map((u) => u.nickname)).toEqual(['bobby', 'anika']);
    const an = await admin.call<Page>('GET', '/api/v1/admin/users?online=false&q=an&limit=3');
    expect(an.total).toBe(4);
    expect(an.items.map((u) => u.nickname)).toEqual(['ann', 'annie', 'anika']);
    const on = await admin.call<Page>('GET', '/api/v1/admin/users?online=true');
    expect(on.items.map((u) => u.nickname)).toEqual(['anna', 'bob']);
    expect(on.total).toBe(2);
  });
});

describe('Boundary', () => {
  it('counts every caught exception but logs a burst, then a bounded rate, with the suppressed count', async () => {
    const lines: { boundary: string; code: string; suppressed: number }[] = [];
    const log = pino(
      { level: 'error' },
      { write: (l: string) => void lines.push(JSON.parse(l) as (typeof lines)[number]) },
    );
    const metrics = new Metrics({ defaultMetrics: false });
    let now = 0;
    const b = new Boundary(log, metrics, () => now);
    for (let i = 0; i < 1000; i++) b.report('http', new Error(`bug ${i}`));
    const full = new Error('insert failed', { cause: Object.assign(new Error('disk'), { code: 'ENOSPC' }) });
    expect(b.report('ws_request', full).code).toBe('STORAGE_FULL');
    const answered = new ProtocolError('NOT_FOUND');
    expect(b.report('http', answered)).toBe(answered);
    expect(await metrics.value('voice_boundary_errors_total', { boundary: 'http', code: 'INTERNAL' })).toBe(
      1000,
    );
    expect(await metrics.value('voice_boundary_errors_total', { code: 'STORAGE_FULL' })).toBe(1);
    // A ProtocolError is an answer, not a fault.
    expect(await metrics.value('voice_boundary_errors_total', { code: 'NOT_FOUND' })).toBe(0);
    const http = lines.filter((l) => l.boundary === 'http');
    expect(http.length).toBeGreaterThanOrEqual(5);
    expect(http.length).toBeLessThanOrEqual(6);
    expect(lines.filter((l) => l.boundary === 'ws_request')).toHaveLength(1);
    // Wait for one token (6 a minute): the next line says how many were left out.
    now += 10_000;
    b.report('http', new Error('later'));
    expect(lines.at(-1)).toMatchObject({ boundary: 'http', code: 'INTERNAL' });
    expect(lines.at(-1)!.suppressed).toBe(1000 - http.length);
  });
});

describe('WebSocket boundary and spec', () => {
  it('answers a handler bug with INTERNAL for that request only, counted', async () => {
    srv = await startTestServer();
    const { ws } = await srv.user('ws-victim');
    srv.ctx.store.listChannels = () => {
      throw new RangeError('bug: a synchronous throw inside a handler');
    };
    expect(await code(ws.request('channel.list', {}))).toBe('INTERNAL');
    expect((await ws.request('ping', { ts: 3 })).ts).toBe(3);
    expect(
      await srv.ctx.metrics.value('voice_boundary_errors_total', {
        boundary: 'ws_request',
        code: 'INTERNAL',
      }),
    ).toBe(1);
  });

  it('closes with 1009 a frame over 64 KiB, answers one between 16 and 64 KiB', async () => {
    srv = await startTestServer();
    const { token } = await srv.rest().login('bigframes');
    const a = await rawSocket(srv.wsUrl);
    a.ws.send(encodeMessage({ t: 'hello', id: 1, versions: [1], token }));
    a.ws.send(new Uint8Array(40_000));
    await expect.poll(() => a.frames.length).toBe(2);
    expect(a.frames[1]!.msg).toMatchObject({ t: 'error', code: 'FRAME_TOO_LARGE' });
    a.ws.send(new Uint8Array(64 * 1024 + 1));
    expect((await a.closed).code).toBe(1009);
    // Before hello too.
    const b = await rawSocket(srv.wsUrl);
    b.ws.send(new Uint8Array(200_000));
    expect((await b.closed).code).toBe(1009);
    // Past what the server reads of a frame (256 KiB) the socket is cut at the header: 1006, counted too.
    const c = await rawSocket(srv.wsUrl);
    c.ws.send(new Uint8Array(300_000));
    expect((await c.closed).code).toBe(1006);
    await expect.poll(() => srv.ctx.metrics.value('voice_errors_total', { code: 'FRAME_TOO_LARGE' })).toBe(4);
  });

  it('answers exactly 20 bad frames, then bye and 4002', async () => {
    srv = await startTestServer();
    const c = await rawSocket(srv.wsUrl);
    for (let i = 0; i < 30; i++) c.ws.send(new Uint8Array([0xc1]));
    expect((await c.closed).code).toBe(4002);
    const errors = c.frames.filter((f) => f.msg?.t === 'error');
    const byes = c.frames.filter((f) => f.msg?.t === 'bye');
    expect(errors).toHaveLength(20);
    expect(byes).toHaveLength(1);
    expect(c.frames.at(-1)!.msg?.t).toBe('bye');
    expect(await srv.ctx.metrics.value('voice_errors_total', { code: 'BAD_FRAME' })).toBe(20);
  });

  it('closes sockets that never say hello (4003 after bye), keeps the one that did', async () => {
    const N = 200;
    srv = await startTestServer({
      helloTimeoutMs: 600,
      limits: { connectionsPerAddress: 1000, messageBurst: 1000, messagesPerSecond: 1000 },
    });
    const { token } = await srv.rest().login('punctual');
    const good = await SignalingClient.connect({ url: srv.wsUrl, token });
    // Before the first socket opens: the server's deadline starts later, never earlier.
    const opened = performance.now();
    const silent = await Promise.all(Array.from({ length: N }, () => rawSocket(srv.wsUrl)));
    // A socket that sent only garbage or a ping is no more authenticated than a silent one.
    silent[0]!.ws.send(encodeMessage({ t: 'ping', id: 1, ts: 1 }));
    const closes = await Promise.all(silent.map((s) => s.closed));
    const took = performance.now() - opened;
    expect(closes.every((c) => c.code === 4003)).toBe(true);
    for (const s of silent) {
      const last = s.frames.at(-1)?.msg;
      expect(last).toMatchObject({ t: 'bye', code: 'NOT_AUTHENTICATED' });
    }
    expect(took).toBeGreaterThanOrEqual(590);
    expect(await srv.ctx.metrics.value('voice_hello_timeouts_total')).toBe(N);
    await expect.poll(() => srv.ctx.metrics.value('voice_ws_connections')).toBe(1);
    expect(good.closed).toBe(false);
    expect((await good.request('ping', { ts: 5 })).ts).toBe(5);
    good.close();
  });

  it('voice.volume only for another member of your channel', async () => {
    srv = await startTestServer();
    const a = await srv.user('vol-a');
    const b = await srv.user('vol-b');
    const stranger = await srv.user('vol-c');
    const ch = (await a.ws.request('channel.create', { name: 'Vol' })).channel;
    expect(await code(a.ws.request('voice.volume', { userId: b.ws.welcome.user.id, volume: 50 }))).toBe(
      'NOT_IN_CHANNEL',
    );
    await a.ws.request('channel.join', { channelId: ch.id });
    await b.ws.request('channel.join', { channelId: ch.id });
    await a.ws.request('voice.volume', { userId: b.ws.welcome.user.id, volume: 50 });
    for (const who of [stranger.ws.welcome.user.id, a.ws.welcome.user.id, 'u_AAAAAAAAAAAA' as never]) {
      expect(await code(a.ws.request('voice.volume', { userId: who, volume: 50 }))).toBe('NOT_FOUND');
    }
    expect([...srv.sessions.byUser(a.ws.welcome.user.id)!.volumes.keys()]).toEqual([b.ws.welcome.user.id]);
  });
});

describe('no server frame exceeds the limit', () => {
  it('pages channel.list: 1,000 channels with long names, every page under 16 KiB, each channel once', async () => {
    srv = await startTestServer({ limits: { messageBurst: 1000, messagesPerSecond: 1000 } });
    const { ws: owner } = await srv.user('lister');
    const { token } = await srv.rest().login('reader');
    const ownerId = owner.welcome.user.id;
    // Straight into the store: this test is about listing, not about creation limits.
    await fillWithLongNames(srv, ownerId, 1000);
    const c = await rawSocket(srv.wsUrl);
    c.ws.send(encodeMessage({ t: 'hello', id: 1, versions: [1], token }));
    const seen = new Set<string>();
    let cursor: string | null | undefined;
    let pages = 0;
    for (let id = 2; cursor !== null; id++) {
      c.ws.send(
        encodeMessage({ t: 'channel.list', id, limit: 100, ...(cursor === undefined ? {} : { cursor }) }),
      );
      await expect.poll(() => c.frames.some((f) => f.msg?.t === 'result' && f.msg.re === id)).toBe(true);
      const f = c.frames.find((x) => x.msg?.t === 'result' && x.msg.re === id)!;
      const data = (f.msg as { data: { channels: Channel[]; next: string | null } }).data;
      for (const ch of data.channels) {
        expect(seen.has(ch.id)).toBe(false);
        seen.add(ch.id);
      }
      cursor = data.next;
      pages++;
      expect(pages).toBeLessThan(200);
    }
    expect(seen.size).toBe(1000);
    expect(Math.max(...c.frames.map((f) => f.size))).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    // The budget, not the limit of 100, decided the page size: pages are nearly full.
    expect(pages).toBeGreaterThan(10);
    // Our own client follows the cursor to the end.
    expect((await owner.allChannels()).length).toBe(1000);
    c.ws.close();
  });

  it('pages the member list of a crowded channel: join carries what fits, channel.members the rest', async () => {
    srv = await startTestServer({
      limits: { loginBurst: 200, loginsPerMinute: 10_000, connectionsPerAddress: 100 },
    });
    const first = await srv.user('Crowd-000');
    const ch = (await first.ws.request('channel.create', { name: 'Crowd' })).channel;
    const status = '語'.repeat(128);
    const N = 40;
    const clients = [first];
    for (let i = 1; i < N; i++) clients.push(await srv.user(`Crowd-${String(i).padStart(3, '0')}`));
    for (const u of clients) await u.ws.request('profile.update', { status });
    for (const u of clients.slice(0, -1)) await u.ws.request('channel.join', { channelId: ch.id });
    const last = clients.at(-1)!;
    const joined = await last.ws.request('channel.join', { channelId: ch.id });
    expect(joined.members.length).toBeLessThan(N);
    expect(joined.membersNext).not.toBeNull();
    const ids = new Set(joined.members.map((m) => m.userId));
    let cursor = joined.membersNext;
    while (cursor !== null) {
      const page = await last.ws.request('channel.members', { channelId: ch.id, cursor });
      for (const m of page.members) ids.add(m.userId);
      cursor = page.next;
    }
    expect(ids.size).toBe(N);
    // The client's helper walks the same pages (VoiceClient.join returns its result).
    const all = await last.ws.allMembers(ch.id, joined.members, joined.membersNext);
    expect(new Set(all.map((m) => m.userId))).toEqual(ids);
    expect(await code(last.ws.request('channel.members', { channelId: ch.id, cursor: 'x' }))).toBe(
      'INVALID_FIELD',
    );
  });

  it('the send path refuses a frame over the limit: a result becomes INTERNAL, counted', async () => {
    srv = await startTestServer();
    const c = await helloSocket(srv, 'oversize');
    const user = c.user;
    const conn = srv.sessions.byUser(user.id)!.conn!;
    // Answers no handler can produce today, built by hand to exercise the last guard.
    expect(conn.send({ t: 'result', re: 77, data: { pad: 'x'.repeat(MAX_FRAME_BYTES) } } as never)).toBe(
      true,
    );
    expect(conn.send({ t: 'stats', stats: { pad: 'y'.repeat(MAX_FRAME_BYTES) } } as never)).toBe(false);
    expect(conn.sendBytes(new Uint8Array(MAX_FRAME_BYTES + 1))).toBe(false);
    c.ws.send(encodeMessage({ t: 'ping', id: 2, ts: 1 }));
    await expect.poll(() => c.frames.length).toBe(3);
    expect(c.frames[1]!.msg).toMatchObject({ t: 'error', re: 77, code: 'INTERNAL' });
    expect(c.frames[2]!.msg).toMatchObject({ t: 'result', re: 2 });
    expect(Math.max(...c.frames.map((f) => f.size))).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    const m = srv.ctx.metrics;
    expect(await m.value('voice_frames_refused_total', { type: 'result' })).toBe(1);
    expect(await m.value('voice_frames_refused_total', { type: 'stats' })).toBe(1);
    expect(await m.value('voice_frames_refused_total', { type: 'encoded' })).toBe(1);
    c.ws.close();
  });
});

describe('WebSocket backpressure', () => {
  it('a client that stops reading is closed with 4004 once the limit waits for it; others are served', async () => {
    const limit = 256 * 1024;
    srv = await startTestServer({
      limits: { messageBurst: 10_000, messagesPerSecond: 10_000, wsBackpressureBytes: limit },
    });
    const { ws: owner } = await srv.user('bp-owner');
    // Large answers make the flood quick: each channel.list page is close to a full 16 KiB frame.
    await fillWithLongNames(srv, owner.welcome.user.id, 100);
    const c = await helloSocket(srv, 'never-reads');
    // The client stops reading: its receive window and the server's send buffer fill, then uWS
    // holds what the server sends next.
    const socket = (c.ws as unknown as { _socket: Socket })._socket;
    socket.pause();
    const closed = () => srv.ctx.metrics.value('voice_ws_backpressure_total', { action: 'closed' });
    let sent = 0;
    const deadline = Date.now() + 20_000;
    while ((await closed()) === 0 && Date.now() < deadline) {
      // At most 32 requests in flight per connection: send in batches under that.
      for (let i = 0; i < 30; i++)
        c.ws.send(encodeMessage({ t: 'channel.list', id: 2 + sent++, limit: 100 }));
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await closed()).toBe(1);
    // Someone else is served meanwhile.
    expect((await owner.request('ping', { ts: 9 })).ts).toBe(9);
    // Reading again, the client gets what was queued, then the close with its code.
    socket.resume();
    expect((await c.closed).code).toBe(4004);
    const results = c.frames.filter((f) => f.msg?.t === 'result').length;
    // Not every request was answered: the server stopped queueing at the limit instead of growing.
    // Measured here: 300 sent, 282 answered (4.5 MB, nearly all of it in the kernel's socket
    // buffers on loopback), the rest refused by the close.
    expect(results).toBeLessThan(sent);
    expect(Math.max(...c.frames.map((f) => f.size))).toBeLessThanOrEqual(MAX_FRAME_BYTES);
    await expect.poll(() => srv.ctx.metrics.value('voice_ws_connections')).toBe(1);
  });

  it('voice to a client that stops reading is dropped past 16 KiB and counted; signaling still fits', async () => {
    srv = await startTestServer();
    const c = await helloSocket(srv, 'voice-backlog');
    const user = c.user;
    (c.ws as unknown as { _socket: Socket })._socket.pause();
    const conn = srv.sessions.byUser(user.id)!.conn!;
    // Fallback voice frames of the largest size, sent the way the voice plane sends them.
    const frame = encodeMessage({ t: 'voice', p: new Uint8Array(1032) });
    let queued = 0;
    while (conn.sendBytes(frame, true) && queued < 50_000) queued++;
    const m = srv.ctx.metrics;
    expect(queued, 'the kernel buffers filled, then the voice backlog').toBeLessThan(50_000);
    expect(await m.value('voice_ws_backpressure_total', { action: 'voice_dropped' })).toBe(1);
    // Dropping voice does not close: signaling still has room up to the limit (1 MiB).
    expect(conn.send({ t: 'result', re: 5, data: { ts: 1, serverTime: 2 } } as never)).toBe(true);
    expect(await m.value('voice_ws_backpressure_total', { action: 'closed' })).toBe(0);
    // Voice is still dropped past the bound, and counted again. (The metric reads above let the
    // loop run: uWS may have moved some of the backlog into a kernel buffer that grew meanwhile, so
    // the next frame can still fit; CI saw one that did. Fill to the bound again.)
    let more = 0;
    while (conn.sendBytes(frame, true) && more < 50_000) more++;
    expect(more, 'the backlog reached the bound again').toBeLessThan(50_000);
    expect(await m.value('voice_ws_backpressure_total', { action: 'voice_dropped' })).toBe(2);
    c.ws.close();
  });
});
