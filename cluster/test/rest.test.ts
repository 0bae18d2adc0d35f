import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Channel, User } from '@voice/protocol';
import { RestClient, SignalingClient } from '@voice/client';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.stop();
});

async function raw(
  path: string,
  init: RequestInit = {},
): Promise<{ status: number; json: unknown; text: string; headers: Headers }> {
  const res = await fetch(srv.url + path, init);
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json, text, headers: res.headers };
}

describe('REST API', () => {
  it('logs in by nickname alone, reads and updates the profile, logs out', async () => {
    const c = srv.rest();
    const { token, user } = await c.login('  Zoé_42 ');
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(user).toMatchObject({ nickname: 'Zoé_42', status: '', online: true });
    const me = await c.call<{ user: User }>('GET', '/api/v1/me');
    expect(me.user.id).toBe(user.id);
    const upd = await c.call<{ user: User }>('PATCH', '/api/v1/me', { status: 'gaming', nickname: 'Zoe' });
    expect(upd.user).toMatchObject({ nickname: 'Zoe', status: 'gaming' });
    const other = srv.rest();
    await other.login('reader');
    expect((await other.call<{ user: User }>('GET', `/api/v1/users/${user.id}`)).user.status).toBe('gaming');
    // The old nickname is free again, the new one is held.
    expect(await code(srv.rest().login('zoe'))).toBe('NICKNAME_TAKEN');
    await srv.rest().login('Zoé_42');
    expect(
      (await raw('/api/v1/logout', { method: 'POST', headers: { authorization: `Bearer ${token}` } })).status,
    ).toBe(204);
    expect(await code(c.call('GET', '/api/v1/me'))).toBe('INVALID_TOKEN');
  });

  it('validates nicknames and refuses unknown fields', async () => {
    for (const bad of ['x', 'a'.repeat(33), 'bad<name>', '']) {
      expect(await code(srv.rest().login(bad))).toBe('INVALID_FIELD');
    }
    expect(await code(srv.rest().call('POST', '/api/v1/login', { nickname: 'okay', admin: true }))).toBe(
      'INVALID_FIELD',
    );
    const r = await raw('/api/v1/login', {
      method: 'POST',
      body: '{"nickname":',
      headers: { 'content-type': 'application/json' },
    });
    expect(r.status).toBe(400);
    expect(r.json).toEqual({ error: { code: 'BAD_FRAME', message: 'the body is not valid JSON' } });
  });

  it('creates, reads, updates and deletes channels with owner/admin permissions; never returns the password', async () => {
    const owner = srv.rest();
    await owner.login('owner');
    const other = srv.rest();
    await other.login('other');
    const admin = new RestClient(srv.url, ADMIN_TOKEN);
    const created = await owner.call<{ channel: Channel }>('POST', '/api/v1/channels', {
      name: 'Raid',
      userLimit: 5,
      password: 'hunter2',
      voice: { bitrate: 96_000 },
    });
    const ch = created.channel;
    expect(ch).toMatchObject({ name: 'Raid', userLimit: 5, hasPassword: true, memberCount: 0 });
    expect(ch.voice).toEqual({ bitrate: 96_000, frameMs: 20, complexity: 9 });
    expect(JSON.stringify(created)).not.toMatch(/hunter2|scrypt|passwordHash/);
    expect((await other.call<{ channel: Channel }>('GET', `/api/v1/channels/${ch.id}`)).channel.name).toBe(
      'Raid',
    );
    const list = await other.call<{ items: Channel[]; total: number }>('GET', '/api/v1/channels');
    expect(list.total).toBe(1);
    expect(await code(other.call('PATCH', `/api/v1/channels/${ch.id}`, { name: 'Mine' }))).toBe('FORBIDDEN');
    expect(await code(other.call('DELETE', `/api/v1/channels/${ch.id}`))).toBe('FORBIDDEN');
    const patched = await owner.call<{ channel: Channel }>('PATCH', `/api/v1/channels/${ch.id}`, {
      password: null,
      userLimit: 0,
    });
    expect(patched.channel).toMatchObject({ hasPassword: false, userLimit: 0 });
    expect(patched.channel.updatedAt).toBeGreaterThanOrEqual(ch.updatedAt);
    expect(await code(owner.call('POST', '/api/v1/channels', { name: 'RAID' }))).toBe('CHANNEL_NAME_TAKEN');
    expect(await code(owner.call('POST', '/api/v1/channels', { name: 'x', voice: { frameMs: 15 } }))).toBe(
      'INVALID_FIELD',
    );
    expect(
      (await owner.call<{ members: unknown[] }>('GET', `/api/v1/channels/${ch.id}/members`)).members,
    ).toEqual([]);
    const edited = await admin.call<{ channel: Channel }>('PATCH', `/api/v1/channels/${ch.id}`, {
      name: 'Admin edit',
    });
    expect(edited.channel).toMatchObject({ id: ch.id, name: 'Admin edit' });
    expect((await owner.call<{ channel: Channel }>('GET', `/api/v1/channels/${ch.id}`)).channel.name).toBe(
      'Admin edit',
    );
    expect(
      (
        await raw(`/api/v1/channels/${ch.id}`, {
          method: 'DELETE',
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        })
      ).status,
    ).toBe(204);
    expect(await code(owner.call('GET', `/api/v1/channels/${ch.id}`))).toBe('NOT_FOUND');
    expect(await code(owner.call('GET', '/api/v1/channels/c_doesnotexist'))).toBe('NOT_FOUND');
    expect(await code(owner.call('GET', '/api/v1/channels/not-an-id'))).toBe('INVALID_FIELD');
  });

  it('lists a channel’s members with their state, and memberCount follows joins and leaves', async () => {
    const a = await srv.user('lister-a');
    const b = await srv.user('lister-b');
    const outsider = await srv.user('outsider');
    const { channel } = await a.ws.request('channel.create', { name: 'Listed' });
    await a.ws.request('channel.join', { channelId: channel.id });
    await b.ws.request('channel.join', { channelId: channel.id });
    await b.ws.request('voice.state', { selfMute: true });
    const members = async () =>
      (
        await outsider.rest.call<{ members: { nickname: string; selfMute: boolean }[] }>(
          'GET',
          `/api/v1/channels/${channel.id}/members`,
        )
      ).members.sort((x, y) => x.nickname.localeCompare(y.nickname));
    expect(await members()).toMatchObject([
      { nickname: 'lister-a', selfMute: false, serverMute: false, away: false },
      { nickname: 'lister-b', selfMute: true },
    ]);
    const count = async () =>
      (await outsider.rest.call<{ channel: Channel }>('GET', `/api/v1/channels/${channel.id}`)).channel
        .memberCount;
    expect(await count()).toBe(2);
    await b.ws.request('channel.leave', {});
    expect((await members()).map((m) => m.nickname)).toEqual(['lister-a']);
    expect(await count()).toBe(1);
    // The admin token reads it too; without a token it is refused.
    const byAdmin = await srv
      .rest(ADMIN_TOKEN)
      .call<{ members: { nickname: string }[] }>('GET', `/api/v1/channels/${channel.id}/members`);
    expect(byAdmin.members.map((m) => m.nickname)).toEqual(['lister-a']);
    expect(await code(srv.rest().call('GET', `/api/v1/channels/${channel.id}/members`))).toBe(
      'NOT_AUTHENTICATED',
    );
    expect(await code(outsider.rest.call('GET', '/api/v1/channels/c_AAAAAAAAAAAA/members'))).toBe(
      'NOT_FOUND',
    );
  });

  it('a token expires when its user has not connected for tokenTtlDays (30), and stays dead', async () => {
    const DAY = 86_400_000;
    const c = srv.rest();
    const { token, user } = await c.login('sleeper');
    const setLastSeen = (ago: number) => srv.ctx.store.updateUser(user.id, { lastSeenAt: Date.now() - ago });
    // The stored last-seen time stands in for a month of waiting.
    await setLastSeen(29 * DAY);
    expect((await c.call<{ user: User }>('GET', '/api/v1/me')).user.id).toBe(user.id);
    // A signaling hello is what counts as use: it moves last-seen to now.
    const ws = await SignalingClient.connect({ url: srv.wsUrl, token });
    ws.close();
    expect((await srv.ctx.store.getUser(user.id))!.lastSeenAt).toBeGreaterThan(Date.now() - 60_000);

    await setLastSeen(30 * DAY + 60_000);
    expect(await code(c.call('GET', '/api/v1/me'))).toBe('INVALID_TOKEN');
    await expect(SignalingClient.connect({ url: srv.wsUrl, token })).rejects.toMatchObject({
      code: 'INVALID_TOKEN',
    });
    // The expired token was deleted: a fresh last-seen does not bring it back.
    await setLastSeen(0);
    expect(await code(c.call('GET', '/api/v1/me'))).toBe('INVALID_TOKEN');
  });

  it('admin listing paginates and filters users and channels; only with the admin token', async () => {
    const users: RestClient[] = [];
    for (let i = 0; i < 7; i++) {
      const c = srv.rest();
      await c.login(`member-${i}`);
      users.push(c);
    }
    await users[0]!.call('POST', '/api/v1/channels', { name: 'alpha' });
    await users[0]!.call('POST', '/api/v1/channels', { name: 'beta' });
    await users[1]!.call('POST', '/api/v1/channels', { name: 'alphabet' });
    const admin = new RestClient(srv.url, ADMIN_TOKEN);
    const p1 = await admin.call<{ items: User[]; total: number; limit: number; offset: number }>(
      'GET',
      '/api/v1/admin/users?limit=3&offset=0',
    );
    const p3 = await admin.call<{ items: User[]; total: number }>(
      'GET',
      '/api/v1/admin/users?limit=3&offset=6',
    );
    expect(p1).toMatchObject({ total: 7, limit: 3, offset: 0 });
    expect(p1.items).toHaveLength(3);
    expect(p3.items).toHaveLength(1);
    const q = await admin.call<{ items: User[] }>('GET', '/api/v1/admin/users?q=member-5');
    expect(q.items.map((u) => u.nickname)).toEqual(['member-5']);
    const online = await admin.call<{ items: User[]; total: number }>(
      'GET',
      '/api/v1/admin/users?online=true',
    );
    expect(online.total).toBe(7);
    const chans = await admin.call<{ items: Channel[]; total: number }>(
      'GET',
      '/api/v1/admin/channels?q=alpha',
    );
    expect(chans.items.map((c) => c.name).sort()).toEqual(['alpha', 'alphabet']);
    const mine = await admin.call<{ items: Channel[] }>(
      'GET',
      `/api/v1/admin/channels?owner=${(await users[1]!.call<{ user: User }>('GET', '/api/v1/me')).user.id}`,
    );
    expect(mine.items.map((c) => c.name)).toEqual(['alphabet']);
    expect(await code(users[0]!.call('GET', '/api/v1/admin/users'))).toBe('FORBIDDEN');
    expect(await code(srv.rest().call('GET', '/api/v1/admin/users'))).toBe('NOT_AUTHENTICATED');
    expect(await code(admin.call('GET', '/api/v1/admin/users?limit=500'))).toBe('INVALID_FIELD');
  });

  it('serves health, readiness and Prometheus metrics that count errors', async () => {
    expect((await raw('/healthz')).json).toEqual({ ok: true });
    expect((await raw('/readyz')).json).toEqual({ ready: true });
    await code(srv.rest().call('GET', '/api/v1/me', undefined, 'wrong-token'));
    await raw('/nowhere');
    const m = await raw('/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/voice_errors_total\{code="INVALID_TOKEN",transport="http"\} 1/);
    expect(m.text).toMatch(/voice_errors_total\{code="NOT_FOUND",transport="http"\} 1/);
    expect(m.text).toMatch(/voice_http_requests_total/);
    expect(m.text).toMatch(/voice_udp_packets_in_total/);
  });

  it('answers bad routes, methods and oversized bodies with codes', async () => {
    expect((await raw('/api/v1/nope')).json).toMatchObject({ error: { code: 'NOT_FOUND' } });
    const r = await raw('/api/v1/login', { method: 'GET' });
    expect(r.status).toBe(405);
    expect(r.json).toMatchObject({ error: { code: 'METHOD_NOT_ALLOWED' } });
    const big = await raw('/api/v1/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nickname: 'x'.repeat(50_000) }),
    });
    expect(big.status).toBe(413);
    expect(big.json).toMatchObject({ error: { code: 'FRAME_TOO_LARGE' } });
    expect((await raw('/healthz')).status).toBe(200);
  });
});

describe('REST rate limits', () => {
  it('limits log-ins and requests per address, and counts them', async () => {
    await srv.stop();
    srv = await startTestServer({
      limits: { loginsPerMinute: 1, loginBurst: 3, requestsPerSecond: 1, requestBurst: 30 },
    });
    const results: string[] = [];
    for (let i = 0; i < 5; i++) results.push(await code(srv.rest().login(`rl-${i}`)).catch(() => 'ok'));
    expect(results.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
    expect(results.slice(3)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
    // The refusal says when one log-in is back: a minute after the burst, less what refilled since.
    const refused = await raw('/api/v1/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ nickname: 'rl-late' }),
    });
    const wait = (refused.json as { error: { retryAfterMs: number } }).error.retryAfterMs;
    expect(wait).toBeGreaterThan(50_000);
    expect(wait).toBeLessThanOrEqual(60_000);
    expect(refused.headers.get('retry-after')).toBe(String(Math.ceil(wait / 1000)));
    let limited = 0;
    let lastRetry: string | null = null;
    for (let i = 0; i < 40; i++) {
      const r = await raw('/healthz');
      if (r.status !== 429) continue;
      limited++;
      lastRetry = r.headers.get('retry-after');
    }
    expect(limited).toBeGreaterThan(5);
    // One request a second: back within a second.
    expect(lastRetry).toBe('1');
    expect(await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'logins' })).toBe(3);
    expect(await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'http_requests' })).toBe(limited);
  });
});

describe('behind a reverse proxy', () => {
  it('with trustProxy, rate-limits each forwarded client address separately', async () => {
    await srv.stop();
    srv = await startTestServer({ trustProxy: true, limits: { loginsPerMinute: 1, loginBurst: 1 } });
    const login = (nickname: string, ip: string) =>
      raw('/api/v1/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': `203.0.113.9, ${ip}` },
        body: JSON.stringify({ nickname }),
      });
    expect((await login('proxied-a1', '198.51.100.1')).status).toBe(201);
    expect((await login('proxied-a2', '198.51.100.1')).status).toBe(429);
    expect((await login('proxied-b1', '198.51.100.2')).status).toBe(201);
  });
});
