import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { encodeMessage, type Channel } from '@voice/protocol';
import type { RequestError } from '@voice/client';
import { SignalingClient } from '@voice/client';
import WebSocket from 'ws';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

let srv: TestServer;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Opens a plain WebSocket (no hello) and reports the upgrade's status: 101 with the socket, or the
 * refusal's status and JSON body. `close` closes an accepted socket at once.
 */
async function openRaw(
  url: string,
  close = false,
): Promise<{ status: number; body?: unknown; ws?: WebSocket; retryAfter?: string }> {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.once('open', () => {
      if (close) ws.close();
      resolve({ status: 101, ws });
    });
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: JSON.parse(text) as unknown,
          ...(res.headers['retry-after'] === undefined ? {} : { retryAfter: res.headers['retry-after'] }),
        }),
      );
    });
    ws.once('error', reject);
  });
}
beforeEach(async () => {
  srv = await startTestServer({ graceMs: 600 });
});
afterEach(async () => {
  await srv.stop();
});

describe('signaling over WebSocket', () => {
  it('negotiates the version and authenticates with the token', async () => {
    const { ws } = await srv.user('alice');
    expect(ws.welcome.version).toBe(1);
    expect(ws.welcome.user.nickname).toBe('alice');
    expect(ws.welcome.resumed).toBe(false);
    expect(ws.welcome.heartbeatMs).toBeGreaterThan(0);
  });

  it('refuses unknown versions and bad tokens with codes', async () => {
    const { token } = await srv.rest().login('bob');
    await expect(SignalingClient.connect({ url: srv.wsUrl, token: 'nope' })).rejects.toMatchObject({
      code: 'INVALID_TOKEN',
    });
    const raw = await SignalingClient.connect({ url: srv.wsUrl, token }).catch(() => null);
    expect(raw).not.toBeNull();
    // Second hello on the same connection is refused.
    expect(await code(raw!.request('hello', { versions: [1], token }))).toBe('ALREADY_AUTHENTICATED');
    raw!.close();
  });

  it('answers ping with the client timestamp', async () => {
    const { ws } = await srv.user('pinger');
    const framesBefore = await srv.ctx.metrics.value('voice_ws_frames_sent_total');
    const t0 = performance.now();
    const r = await ws.request('ping', { ts: t0 });
    expect(r.ts).toBe(t0);
    expect(Math.abs(r.serverTime - Date.now())).toBeLessThan(5_000);
    // The answer is one frame written, and counted.
    expect((await srv.ctx.metrics.value('voice_ws_frames_sent_total')) - framesBefore).toBe(1);
  });

  it('creates, lists, updates and deletes channels and tells everyone', async () => {
    const a = await srv.user('owner');
    const b = await srv.user('watcher');
    const created = b.ws.waitFor('channel.created');
    const { channel } = await a.ws.request('channel.create', { name: 'Lobby', userLimit: 5 });
    expect((await created).channel.id).toBe(channel.id);
    expect(channel).toMatchObject({ name: 'Lobby', userLimit: 5, hasPassword: false, memberCount: 0 });
    expect((await b.ws.request('channel.list', {})).channels.map((c: Channel) => c.name)).toEqual(['Lobby']);

    expect(await code(b.ws.request('channel.update', { channelId: channel.id, name: 'Mine' }))).toBe(
      'FORBIDDEN',
    );
    expect(await code(b.ws.request('channel.delete', { channelId: channel.id }))).toBe('FORBIDDEN');
    const updated = b.ws.waitFor('channel.updated');
    await a.ws.request('channel.update', { channelId: channel.id, name: 'Lounge', password: 'secret' });
    expect((await updated).channel).toMatchObject({ name: 'Lounge', hasPassword: true });
    expect(await code(a.ws.request('channel.create', { name: 'lounge' }))).toBe('CHANNEL_NAME_TAKEN');

    const deleted = b.ws.waitFor('channel.deleted');
    await a.ws.request('channel.delete', { channelId: channel.id });
    expect((await deleted).channelId).toBe(channel.id);
  });

  it('joins and leaves with presence events, password and user limit checked', async () => {
    const a = await srv.user('anna');
    const b = await srv.user('ben');
    const c = await srv.user('carl');
    const { channel } = await a.ws.request('channel.create', { name: 'Duo', userLimit: 2, password: 'pw' });

    const joined = a.ws.waitFor('member.joined', (m) => m.member.nickname === 'ben');
    expect(await code(b.ws.request('channel.join', { channelId: channel.id }))).toBe('WRONG_PASSWORD');
    expect(await code(b.ws.request('channel.join', { channelId: channel.id, password: 'bad' }))).toBe(
      'WRONG_PASSWORD',
    );
    await a.ws.request('channel.join', { channelId: channel.id }); // the owner needs no password
    const r = await b.ws.request('channel.join', { channelId: channel.id, password: 'pw' });
    await joined;
    expect(r.members.map((m) => m.nickname).sort()).toEqual(['anna', 'ben']);
    expect(r.voice.key.byteLength).toBe(32);
    expect(await code(c.ws.request('channel.join', { channelId: channel.id, password: 'pw' }))).toBe(
      'CHANNEL_FULL',
    );

    const status = a.ws.waitFor(
      'member.updated',
      (m) => m.member.nickname === 'ben' && m.member.status === 'brb',
    );
    await b.ws.request('profile.update', { status: 'brb' });
    await status;

    const left = a.ws.waitFor('member.left', (m) => m.reason === 'leave');
    await b.ws.request('channel.leave', {});
    expect((await left).userId).toBe(b.ws.welcome.user.id);
    expect(await code(b.ws.request('channel.leave', {}))).toBe('NOT_IN_CHANNEL');
    await c.ws.request('channel.join', { channelId: channel.id, password: 'pw' });
  });

  it('deleting a channel removes its members', async () => {
    const a = await srv.user('del-owner');
    const b = await srv.user('del-member');
    const { channel } = await a.ws.request('channel.create', { name: 'Doomed' });
    await b.ws.request('channel.join', { channelId: channel.id });
    const left = b.ws.waitFor('member.left', (m) => m.reason === 'deleted');
    await a.ws.request('channel.delete', { channelId: channel.id });
    await left;
    expect(await code(b.ws.request('voice.state', { selfMute: true }))).toBe('NOT_IN_CHANNEL');
  });

  it('restores session and channel on reconnect within the grace period', async () => {
    const a = await srv.user('stay');
    const b = await srv.user('flaky');
    const { channel } = await a.ws.request('channel.create', { name: 'Keep' });
    await a.ws.request('channel.join', { channelId: channel.id });
    await b.ws.request('channel.join', { channelId: channel.id });
    const away = a.ws.waitFor('member.updated', (m) => m.member.nickname === 'flaky' && m.member.away);
    b.ws.terminate();
    await away;
    const back = a.ws.waitFor('member.updated', (m) => m.member.nickname === 'flaky' && !m.member.away);
    const again = await SignalingClient.connect({ url: srv.wsUrl, token: b.token });
    expect(again.welcome.resumed).toBe(true);
    expect(again.welcome.channelId).toBe(channel.id);
    expect(again.welcome.voice?.key.byteLength).toBe(32);
    await back;
    again.close();
  });

  it('removes the member and tells the channel when the grace period runs out', async () => {
    const a = await srv.user('remains');
    const b = await srv.user('gone');
    const { channel } = await a.ws.request('channel.create', { name: 'Grace' });
    await a.ws.request('channel.join', { channelId: channel.id });
    await b.ws.request('channel.join', { channelId: channel.id });
    const left = a.ws.waitFor('member.left', (m) => m.reason === 'timeout', 5_000);
    b.ws.terminate();
    expect((await left).userId).toBe(b.ws.welcome.user.id);
    expect(await srv.ctx.metrics.value('voice_sessions_expired_total')).toBe(1);
    expect(
      (await a.ws.request('channel.join', { channelId: channel.id })).members.map((m) => m.nickname),
    ).toEqual(['remains']);
    // The nickname is free again: someone else may log in with it, and while they hold it the old
    // token cannot take it back.
    const taker = srv.rest();
    const took = await taker.login('gone');
    expect(took.user.id).not.toBe(b.ws.welcome.user.id);
    await expect(SignalingClient.connect({ url: srv.wsUrl, token: b.token })).rejects.toMatchObject({
      code: 'NICKNAME_TAKEN',
    });
    // Once they log out, the old token still authenticates a fresh session (not a resumed one).
    await taker.call('POST', '/api/v1/logout');
    const again = await SignalingClient.connect({ url: srv.wsUrl, token: b.token });
    expect(again.welcome.resumed).toBe(false);
    expect(again.welcome.channelId).toBeNull();
    expect(again.welcome.user.nickname).toBe('gone');
    again.close();
  });

  it('a second connection with the same token replaces the first', async () => {
    const a = await srv.user('twin');
    const bye = a.ws.waitFor('bye');
    const b = await SignalingClient.connect({ url: srv.wsUrl, token: a.token });
    expect((await bye).code).toBe('SESSION_REPLACED');
    b.close();
  });

  it('self-mute, deafen, volume and server-mute are validated and shown', async () => {
    const owner = await srv.user('mod');
    const other = await srv.user('loud');
    const { channel } = await owner.ws.request('channel.create', { name: 'Mod' });
    await owner.ws.request('channel.join', { channelId: channel.id });
    await other.ws.request('channel.join', { channelId: channel.id });
    const otherId = other.ws.welcome.user.id;
    const ownerId = owner.ws.welcome.user.id;
    const muted = owner.ws.waitFor(
      'member.updated',
      (m) => m.member.nickname === 'loud' && m.member.selfMute,
    );
    const state = await other.ws.request('voice.state', { selfMute: true, selfDeaf: true });
    expect(state.member).toMatchObject({
      userId: otherId,
      selfMute: true,
      selfDeaf: true,
      serverMute: false,
    });
    expect((await muted).member).toMatchObject({ selfMute: true, selfDeaf: true });
    // One field at a time: the other keeps its value.
    const undeaf = await other.ws.request('voice.state', { selfDeaf: false });
    expect(undeaf.member).toMatchObject({ selfMute: true, selfDeaf: false });

    expect(await code(other.ws.request('voice.serverMute', { userId: ownerId, muted: true }))).toBe(
      'FORBIDDEN',
    );
    const seen = other.ws.waitFor(
      'member.updated',
      (m) => m.member.userId === otherId && m.member.serverMute,
    );
    const r = await owner.ws.request('voice.serverMute', { userId: otherId, muted: true });
    expect(r.member?.serverMute).toBe(true);
    expect((await seen).member.serverMute).toBe(true);
    expect(srv.sessions.byUser(otherId)!.serverMute).toBe(true);

    // Volume is private to the listener: it is stored for the owner's mix only (its effect on the
    // audio is the per-listener volume scenario of scenarios/voice-scenarios.ts); 100 is the default
    // and clears the entry.
    expect(await owner.ws.request('voice.volume', { userId: otherId, volume: 150 })).toEqual({});
    expect(srv.sessions.byUser(ownerId)!.volumes.get(otherId)).toBe(150);
    expect(srv.sessions.byUser(otherId)!.volumes.size).toBe(0);
    expect(await code(owner.ws.request('voice.volume', { userId: otherId, volume: 250 }))).toBe(
      'INVALID_FIELD',
    );
    expect(srv.sessions.byUser(ownerId)!.volumes.get(otherId)).toBe(150);
    await owner.ws.request('voice.volume', { userId: otherId, volume: 100 });
    expect(srv.sessions.byUser(ownerId)!.volumes.has(otherId)).toBe(false);
  });

  it('voice binding changes of one session wait their turn, at most 8: more are refused (RATE_LIMITED) and counted', async () => {
    const { ws } = await srv.user('rejoiner');
    const { channel } = await ws.request('channel.create', { name: 'Rejoin' });
    const joined = await ws.request('channel.join', { channelId: channel.id });
    const s = srv.sessions.byUser(ws.welcome.user.id)!;
    // A connection's requests run one at a time; moves are what other nodes and the lease watch
    // ask for, as many as they like: 30 at once, the first runs, 7 wait, the rest are refused.
    const outcomes = await Promise.all(
      Array.from({ length: 30 }, () =>
        srv.sessions.voiceMoved(s).then(
          () => 'ran',
          (e: unknown) => e,
        ),
      ),
    );
    expect(outcomes.filter((o) => o === 'ran')).toHaveLength(8);
    const refused = outcomes.filter((o) => o !== 'ran');
    for (const e of refused) expect(e).toMatchObject({ code: 'RATE_LIMITED', retryAfterMs: 1000 });
    expect(refused).toHaveLength(22);
    expect(
      await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'session_binding_changes' }),
    ).toBe(22);
    // Nothing moved (this node owns the channel): the join's binding is still the one mixed with.
    const held = srv.voice.endpointOf(s)!;
    expect(held.voiceId).toBe(joined.voice.voiceId);
    // The chain drained: a re-join (a rekey) goes through, and its answer is the binding now held.
    const again = await ws.request('channel.join', { channelId: channel.id });
    expect(again.voice.voiceId).not.toBe(joined.voice.voiceId);
    expect(srv.voice.endpointOf(s)!.voiceId).toBe(again.voice.voiceId);
    expect(Buffer.from(again.voice.key).equals(Buffer.from(srv.voice.endpointOf(s)!.key))).toBe(true);
  });

  it('a leave still waiting its turn when the session is resumed on another node leaves nothing: that node holds the seat', async () => {
    const { ws } = await srv.user('handed');
    const { channel } = await ws.request('channel.create', { name: 'Handed' });
    await ws.request('channel.join', { channelId: channel.id });
    const id = ws.welcome.user.id;
    const s = srv.sessions.byUser(id)!;
    // A change in progress (say a move) holds the session's turn while the leave comes in.
    let release!: () => void;
    const busy = s.bindings.run(() => new Promise<void>((r) => (release = r)));
    const left = ws.request('channel.leave', {});
    while (s.bindings.size < 2) await sleep(5);
    // Another node resumed the session and tells this one (as its request handler would).
    const replaced = srv.sessions.handleMemberRequest('member.replaced', { userId: id });
    release();
    await Promise.all([busy, replaced]);
    await left.catch(() => undefined); // its connection is closed by the replacement
    expect(await srv.ctx.directory.channelMembers(channel.id)).toEqual([id]);
    expect(srv.voice.endpointOf(s)).toBeUndefined();
  });

  it('an admin connection may moderate any channel', async () => {
    const owner = await srv.user('someone');
    const admin = await srv.user('root', { admin: true });
    const { channel } = await owner.ws.request('channel.create', { name: 'Theirs' });
    const updated = owner.ws.waitFor('channel.updated', (m) => m.channel.id === channel.id);
    const u = await admin.ws.request('channel.update', { channelId: channel.id, userLimit: 3 });
    expect(u.channel).toMatchObject({ id: channel.id, userLimit: 3, ownerId: owner.ws.welcome.user.id });
    expect((await updated).channel.userLimit).toBe(3);
    const listed = (await owner.ws.request('channel.list', {})).channels.find(
      (c: Channel) => c.id === channel.id,
    );
    expect(listed?.userLimit).toBe(3);
    const deleted = owner.ws.waitFor('channel.deleted', (m) => m.channelId === channel.id);
    expect(await admin.ws.request('channel.delete', { channelId: channel.id })).toEqual({});
    await deleted;
    expect((await owner.ws.request('channel.list', {})).channels).toEqual([]);
    expect(await code(owner.ws.request('channel.join', { channelId: channel.id }))).toBe('NOT_FOUND');
    await expect(
      SignalingClient.connect({ url: srv.wsUrl, token: owner.token, adminToken: 'wrong-admin-token-xxxx' }),
    ).rejects.toMatchObject({ code: 'INVALID_TOKEN' });
  });
});

describe('bad input over WebSocket', () => {
  it('answers malformed, unknown, invalid and oversized frames with codes and counts them', async () => {
    const { ws } = await srv.user('fuzzer');
    const next = () => ws.waitFor('error');
    let e = next();
    ws.sendRaw(new Uint8Array([0xc1, 0xff, 0x00]));
    expect((await e).code).toBe('BAD_FRAME');
    e = next();
    ws.sendRaw('{"t":"ping"}');
    expect((await e).code).toBe('BAD_FRAME');
    e = next();
    ws.sendRaw(encodeMessage({ t: 'nope', id: 7 } as never));
    expect((await e).code).toBe('UNKNOWN_TYPE');
    expect(await code(ws.request('channel.create', { name: '' }))).toBe('INVALID_FIELD');
    expect(await code(ws.request('channel.join', { channelId: 'not-an-id' as never }))).toBe('INVALID_FIELD');
    e = next();
    ws.sendRaw(encodeMessage({ t: 'ping', id: 9, ts: 1, pad: 'x'.repeat(20_000) } as never));
    expect((await e).code).toBe('FRAME_TOO_LARGE');
    // Still alive and serving.
    expect((await ws.request('ping', { ts: 1 })).ts).toBe(1);
    const m = srv.ctx.metrics;
    expect(await m.value('voice_errors_total', { code: 'BAD_FRAME', transport: 'ws' })).toBe(2);
    expect(await m.value('voice_errors_total', { code: 'UNKNOWN_TYPE' })).toBe(1);
    expect(await m.value('voice_errors_total', { code: 'INVALID_FIELD' })).toBe(2);
    expect(await m.value('voice_errors_total', { code: 'FRAME_TOO_LARGE' })).toBe(1);
  });

  it('closes a connection that sends a frame past the hard limit, and keeps serving others', async () => {
    const a = await srv.user('huge');
    const b = await srv.user('fine');
    const closed = new Promise<number>((r) => a.ws.once('close', (c: number) => r(c)));
    a.ws.sendRaw(new Uint8Array(200_000));
    // uWS drops the socket (the client sees 1009 or an abnormal 1006); the server counts it either way.
    expect([1006, 1009]).toContain(await closed);
    await expect.poll(() => srv.ctx.metrics.value('voice_errors_total', { code: 'FRAME_TOO_LARGE' })).toBe(1);
    expect((await b.ws.request('ping', { ts: 2 })).ts).toBe(2);
  });

  it('requires hello before anything else', async () => {
    const { token } = await srv.rest().login('early');
    const c = await SignalingClient.connect({ url: srv.wsUrl, token });
    c.close();
    const WebSocket = (await import('ws')).default;
    const raw = new WebSocket(srv.wsUrl);
    await new Promise((r) => raw.once('open', r));
    const reply = new Promise<Buffer>((r) => raw.once('message', (d: Buffer) => r(d)));
    raw.send(encodeMessage({ t: 'channel.list', id: 1 }));
    const { decodeServerMessage } = await import('@voice/protocol');
    const msg = decodeServerMessage(await reply);
    expect(msg.ok && msg.value).toMatchObject({ t: 'error', re: 1, code: 'NOT_AUTHENTICATED' });
    raw.close();
  });

  it('refuses a 4th connection from an address holding 3 (429 RATE_LIMITED), and accepts one after a close', async () => {
    await srv.stop();
    srv = await startTestServer({ limits: { connectionsPerAddress: 3 } });
    const held = await Promise.all([0, 1, 2].map(() => openRaw(srv.wsUrl)));
    expect(held.every((r) => r.status === 101)).toBe(true);
    const refused = await openRaw(srv.wsUrl);
    expect(refused.status).toBe(429);
    expect(refused.body).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    expect(
      await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'connections_per_address' }),
    ).toBe(1);
    // Closing one frees its place.
    held[0]!.ws!.close();
    await expect.poll(async () => (await openRaw(srv.wsUrl, true)).status).toBe(101);
    for (const r of held) r.ws?.terminate();
  });

  it('refuses connections opened faster than the per-address rate (429 RATE_LIMITED)', async () => {
    await srv.stop();
    srv = await startTestServer({ limits: { messagesPerSecond: 0.1, messageBurst: 4 } });
    const tries = [];
    for (let i = 0; i < 6; i++) tries.push(await openRaw(srv.wsUrl, true));
    expect(tries.map((r) => r.status)).toEqual([101, 101, 101, 101, 429, 429]);
    expect(await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'connects' })).toBe(2);
    // When to try again: the next token of a bucket refilling at 0.1/s, a little under 10 s away
    // (the refused tries took none), in the body and, in seconds, in Retry-After.
    for (const r of tries.slice(4)) {
      const ms = (r.body as { error: { retryAfterMs: number } }).error.retryAfterMs;
      expect(ms).toBeGreaterThan(8000);
      expect(ms).toBeLessThanOrEqual(10_000);
      expect(r.retryAfter).toBe(String(Math.ceil(ms / 1000)));
    }
  });

  it('rate-limits a flooding connection and closes one that keeps sending garbage', async () => {
    await srv.stop();
    srv = await startTestServer({ limits: { messagesPerSecond: 5, messageBurst: 5, maxBadFrames: 3 } });
    const { ws } = await srv.user('flood');
    const results = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => ws.request('ping', { ts: i })),
    );
    const limited = results.filter(
      (r) => r.status === 'rejected' && (r.reason as RequestError).code === 'RATE_LIMITED',
    );
    expect(limited.length).toBeGreaterThanOrEqual(6);
    expect(await srv.ctx.metrics.value('voice_rate_limited_total', { limit: 'ws_messages' })).toBe(
      limited.length,
    );
    // Each says when the connection's bucket (5/s) has a message again: within 200 ms.
    for (const r of limited) {
      const ms = ((r as PromiseRejectedResult).reason as RequestError).retryAfterMs;
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(200);
    }

    const g = await srv.user('garbage');
    const closed = new Promise<number>((r) => g.ws.once('close', (c: number) => r(c)));
    for (let i = 0; i < 5; i++) g.ws.sendRaw(new Uint8Array([0xc1]));
    expect(await closed).toBe(4002);
  });
});
