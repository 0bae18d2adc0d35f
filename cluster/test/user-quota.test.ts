import { request as httpRequest } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel, User } from '@voice/protocol';
import { RequestError, RestClient } from '@voice/client';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

/** One user must not be able to fill the server: per-user channel caps, creation rates, user purge. */

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
async function server(overrides: Parameters<typeof startTestServer>[0]): Promise<TestServer> {
  const s = await startTestServer({ ...overrides, limits: { loginBurst: 100, ...overrides?.limits } });
  servers.push(s);
  return s;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('channel caps per user', () => {
  it('one user stops at its own cap, and everyone else can still create', async () => {
    const srv = await server({ limits: { maxChannels: 8, channelsPerUser: 3, channelCreateBurst: 100 } });
    const hog = await srv.user('hog');
    for (let i = 0; i < 3; i++) await hog.ws.request('channel.create', { name: `hog${i}` });
    expect(await code(hog.ws.request('channel.create', { name: 'hog3' }))).toBe('FORBIDDEN');
    // Concurrent attempts do not slip past the cap either.
    const burst = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => hog.ws.request('channel.create', { name: `burst${i}` })),
    );
    expect(burst.every((r) => r.status === 'rejected')).toBe(true);
    const other = await srv.user('other');
    await other.ws.request('channel.create', { name: 'mine' });
    // Deleting one frees a place.
    const list = (await hog.ws.request('channel.list', {})).channels.filter(
      (c: Channel) => c.ownerId === hog.ws.welcome.user.id,
    );
    expect(list).toHaveLength(3);
    await hog.ws.request('channel.delete', { channelId: list[0]!.id });
    await hog.ws.request('channel.create', { name: 'hog-again' });
    // The server's total still binds everyone (the admin included): 3 + 1 + 4 = 8.
    for (let i = 0; i < 3; i++)
      await (await srv.user(`filler${i}`)).ws.request('channel.create', { name: `f${i}` });
    const admin = await srv.user('root', { admin: true });
    await admin.ws.request('channel.create', { name: 'admin-1' });
    expect(await code(admin.ws.request('channel.create', { name: 'admin-2' }))).toBe('FORBIDDEN');
  });

  it('creation is rate-limited per user, with retryAfterMs over WebSocket and Retry-After over REST', async () => {
    // 20 a minute: one token every 3 s, wide enough that a loaded machine cannot refill it mid-test.
    const srv = await server({ limits: { channelCreatesPerMinute: 20, channelCreateBurst: 2 } });
    const fast = await srv.user('fast');
    await fast.ws.request('channel.create', { name: 'one' });
    await fast.ws.request('channel.create', { name: 'two' });
    const err = await fast.ws.request('channel.create', { name: 'three' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RequestError);
    expect((err as RequestError).code).toBe('RATE_LIMITED');
    expect((err as RequestError).retryAfterMs).toBe(3000);
    // REST shares the user's bucket: the same refusal, with the header.
    const res = await fetch(`${srv.url}/api/v1/channels`, {
      method: 'POST',
      headers: { authorization: `Bearer ${fast.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'three' }),
    });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('3');
    expect(await res.json()).toMatchObject({ error: { code: 'RATE_LIMITED', retryAfterMs: 3000 } });
    // Another user is not affected, and the first one may create again after the wait.
    await (await srv.user('slow')).ws.request('channel.create', { name: 'three' });
    await sleep(3050);
    await fast.ws.request('channel.create', { name: 'four' });
  });
});

/** The parts of a REST answer these tests read: a log-in's token, or an error. */
interface Answer {
  token?: string;
  error?: { code: string; retryAfterMs?: number };
}

/** One REST call from a chosen loopback source address (the server listens on 127.0.0.1). */
function callFrom(
  from: string,
  url: string,
  method: string,
  path: string,
  body?: unknown,
  token?: string,
): Promise<{ status: number; retryAfter: string | undefined; json: Answer }> {
  const u = new URL(path, url);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method,
        localAddress: from,
        headers: {
          ...(payload ? { 'content-type': 'application/json' } : {}),
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'],
            json: (text ? JSON.parse(text) : {}) as Answer,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

describe('budgets per source address', () => {
  it('many accounts from one address run out of new users and channels; another address is not touched', async () => {
    const srv = await server({
      limits: {
        newUsersPerAddressPerHour: 1,
        newUserBurstPerAddress: 4,
        channelCreatesPerAddressPerHour: 2,
        channelCreateBurstPerAddress: 5,
        // Only the address budget may refuse here, not the per-user rate.
        channelCreateBurst: 100,
      },
    });
    const HOG = '127.0.0.1';
    const OTHER = '127.0.0.2';
    // Four accounts from one address: two through the test helpers (a moderator holding the admin
    // token, and a WebSocket user), two over plain REST.
    const root = await srv.user('root', { admin: true });
    const wsHog = await srv.user('ws-hog');
    const tokens: string[] = [wsHog.token];
    for (let i = 0; i < 2; i++) {
      const r = await callFrom(HOG, srv.url, 'POST', '/api/v1/login', { nickname: `sock${i}` });
      expect(r.status, `log-in ${i}`).toBe(201);
      tokens.push(r.json.token!);
      // A taken nickname creates nobody and costs nothing from the budget.
      const again = await callFrom(HOG, srv.url, 'POST', '/api/v1/login', { nickname: `sock${i}` });
      expect(again.json.error?.code).toBe('NICKNAME_TAKEN');
    }
    // The fifth account from that address: refused, with when to come back (one an hour: 3,600 s).
    const fifth = await callFrom(HOG, srv.url, 'POST', '/api/v1/login', { nickname: 'sock4' });
    expect(fifth.status).toBe(429);
    expect(fifth.json.error?.code).toBe('RATE_LIMITED');
    // The time until one is back: a full hour less what refilled since the burst ran out.
    expect(fifth.json.error?.retryAfterMs).toBeGreaterThan(3_590_000);
    expect(fifth.json.error?.retryAfterMs).toBeLessThanOrEqual(3_600_000);
    expect(fifth.retryAfter).toBe('3600');

    // Each account is far inside its own caps (10 owned, 100 at once), yet together they stop at 5.
    const created: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = await callFrom(HOG, srv.url, 'POST', '/api/v1/channels', { name: `hog ${i}` }, tokens[i % 3]);
      created.push(r.status);
      if (r.status === 429) {
        expect(r.json.error?.code).toBe('RATE_LIMITED');
        // Two an hour: one every 1,800 s.
        expect(r.json.error?.retryAfterMs).toBeGreaterThan(1_790_000);
        expect(r.json.error?.retryAfterMs).toBeLessThanOrEqual(1_800_000);
        expect(r.retryAfter).toBe('1800');
      }
    }
    expect(created).toEqual([201, 201, 201, 201, 201, 429, 429]);

    // Over WebSocket the address is the connection's: the same budget, the same answer.
    expect(await code(wsHog.ws.request('channel.create', { name: 'ws hog' }))).toBe('RATE_LIMITED');
    // The admin is bound only by the server's total.
    await root.ws.request('channel.create', { name: 'ops' });

    // Another address logs in and creates as if nothing happened.
    // (with the nickname the refused log-in had claimed for a moment: it was released)
    const other = await callFrom(OTHER, srv.url, 'POST', '/api/v1/login', { nickname: 'sock4' });
    expect(other.status).toBe(201);
    const mine = await callFrom(
      OTHER,
      srv.url,
      'POST',
      '/api/v1/channels',
      { name: 'mine' },
      other.json.token,
    );
    expect(mine.status).toBe(201);

    expect(await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'address_new_users' })).toBe(1);
    expect(
      await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'address_channel_creations' }),
    ).toBe(3);
  });
});

describe('user purge', () => {
  it('deletes users who cannot log in or never connected and own nothing, on its timer; keeps owners and the connected', async () => {
    const srv = await server({
      graceMs: 500,
      userPurge: { intervalMs: 1_000, batch: 50, unconnectedAfterMs: 1_500 },
    });
    const admin = new RestClient(srv.url, ADMIN_TOKEN);
    const total = async () =>
      (await admin.call<{ total: number }>('GET', '/api/v1/admin/users?limit=1')).total;
    const before = await total();

    // A log-in flood whose users log out again: the rows must not stay.
    const gone: User[] = [];
    for (let i = 0; i < 20; i++) {
      const c = srv.rest();
      gone.push((await c.login(`drive-by-${i}`)).user);
      await c.call('POST', '/api/v1/logout');
    }
    // Log-ins that never open a WebSocket: once their grace period and `unconnectedAfterMs` pass.
    for (let i = 0; i < 3; i++) gone.push((await srv.rest().login(`rest-only-${i}`)).user);
    // An owner who logged out keeps its account (its channel points to it); a connected user too.
    const owner = srv.rest();
    await owner.login('owner-leaves');
    const ch = await owner.createChannel({ name: 'Left behind' });
    await owner.call('POST', '/api/v1/logout');
    const online = await srv.user('still-here');

    const deadline = Date.now() + 8_000;
    while ((await total()) > before + 2 && Date.now() < deadline) await sleep(100);
    expect(await total()).toBe(before + 2);
    for (const u of gone) expect(await code(admin.call('GET', `/api/v1/users/${u.id}`))).toBe('NOT_FOUND');
    expect((await admin.call<{ user: User }>('GET', `/api/v1/users/${ch.ownerId}`)).user.nickname).toBe(
      'owner-leaves',
    );
    expect((await online.ws.request('ping', { ts: 1 })).ts).toBe(1);
    expect(await srv.ctx.metrics.value('voice_users_purged_total')).toBe(23);
  });
});
