import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { ChannelId, UserId } from '@voice/protocol';
import { createOpus, toneDbfs, type OpusFactory } from '@voice/media';
import { SignalingClient, ToneSource, VoiceClient } from '../../client/src/index.js';
import { ADMIN_TOKEN, startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

/**
 * Server-mute evasion: a server mute belongs to (user, channel) until someone with the right lifts
 * it, across leave and re-join, a reconnect after the session ended, and a server restart.
 */

let opus: OpusFactory;
const cleanup: (() => unknown)[] = [];
beforeAll(async () => {
  opus = await createOpus();
});
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function server(dataDir?: string): Promise<TestServer> {
  const srv = await startTestServer({ graceMs: 1_000 }, dataDir);
  cleanup.push(() => srv.stop());
  return srv;
}

/** Level of `hz` that `c` played over its last second (median of 100 ms windows). */
function heard(c: VoiceClient, hz: number): number {
  const s = c.recording().samples;
  expect(s.length, 'the listener played at least a second').toBeGreaterThanOrEqual(48_000);
  const levels: number[] = [];
  for (let at = s.length - 48_000; at + 4800 <= s.length; at += 4800)
    levels.push(toneDbfs(s, hz, 48_000, at, 4800));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length / 2)]!;
}

async function listen(clients: VoiceClient[]): Promise<void> {
  await sleep(400);
  for (const c of clients) c.clearRecording();
  await sleep(1100);
}

describe('server mute belongs to (user, channel)', () => {
  it('survives leave and re-join: the listener still hears nothing until the owner lifts it', async () => {
    const srv = await server();
    const bot = async (nickname: string, create = false) => {
      const c = await VoiceClient.connect({
        server: srv.url,
        nickname,
        opus,
        heartbeatMs: 500,
        helloRetryMs: 200,
        channel: 'Stage',
        create,
      });
      cleanup.push(() => c.close());
      await c.waitReady(3000);
      return c;
    };
    const owner = await bot('stage-owner', true);
    const loud = await bot('loud-one');
    owner.startVoice(new ToneSource(440, -20));
    loud.startVoice(new ToneSource(700, -20));
    await listen([owner]);
    expect(heard(owner, 700), 'owner hears the member before the mute').toBeGreaterThan(-23);

    const r = await owner.signaling.request('voice.serverMute', { userId: loud.user.id, muted: true });
    expect(r.member?.serverMute).toBe(true);
    const rejoined = owner.signaling.waitFor('member.joined', (m) => m.member.userId === loud.user.id, 5000);
    await loud.leave();
    const again = await loud.join('Stage');
    expect(again.members.find((m) => m.userId === loud.user.id)?.serverMute).toBe(true);
    expect((await rejoined).member.serverMute).toBe(true);
    await loud.waitReady(3000);
    loud.startVoice(new ToneSource(700, -20));
    await listen([owner]);
    expect(heard(owner, 700), 'owner hears the muted member after its re-join').toBeLessThan(-50);

    await owner.signaling.request('voice.serverMute', { userId: loud.user.id, muted: false });
    await loud.leave();
    expect((await loud.join('Stage')).members.find((m) => m.userId === loud.user.id)?.serverMute).toBe(false);
    await loud.waitReady(3000);
    loud.startVoice(new ToneSource(700, -20));
    await listen([owner]);
    expect(heard(owner, 700), 'owner hears the member once unmuted').toBeGreaterThan(-23);
  });

  it('survives a reconnect after the session ended, and a server restart', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-mute-'));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    let srv = await server(dir);
    const owner = await srv.user('mute-owner');
    const target = await srv.user('mute-target');
    const { channel } = await owner.ws.request('channel.create', { name: 'Quiet' });
    await owner.ws.request('channel.join', { channelId: channel.id });
    await target.ws.request('channel.join', { channelId: channel.id });
    const targetId = target.ws.welcome.user.id;
    await owner.ws.request('voice.serverMute', { userId: targetId, muted: true });

    const isMutedOnJoin = async (ws: SignalingClient, channelId: ChannelId, userId: UserId) => {
      const r = await ws.request('channel.join', { channelId });
      return r.members.find((m) => m.userId === userId)?.serverMute;
    };

    // Drop the connection and resume within the grace period (1 s): still in the channel, still muted.
    target.ws.terminate();
    const resumed = await SignalingClient.connect({ url: srv.wsUrl, token: target.token });
    expect(resumed.welcome.resumed).toBe(true);
    expect(resumed.welcome.channelId).toBe(channel.id);
    const seen = await owner.ws.request('channel.members', { channelId: channel.id });
    expect(seen.members.find((m) => m.userId === targetId)?.serverMute).toBe(true);

    // Drop it again and let the grace period end the session: a fresh session re-joins.
    const left = owner.ws.waitFor('member.left', (m) => m.userId === targetId && m.reason === 'timeout');
    resumed.terminate();
    await left;
    const back = await SignalingClient.connect({ url: srv.wsUrl, token: target.token });
    cleanup.push(() => back.close());
    expect(back.welcome.resumed).toBe(false);
    expect(await isMutedOnJoin(back, channel.id, targetId)).toBe(true);

    // Restart on the same data directory: the mute is in the store.
    back.close();
    owner.ws.close();
    await srv.close();
    srv = await server(dir);
    const after = await SignalingClient.connect({ url: srv.wsUrl, token: target.token });
    cleanup.push(() => after.close());
    expect(await isMutedOnJoin(after, channel.id, targetId)).toBe(true);
    // The mute is per channel: elsewhere the user speaks.
    const ownerAgain = await SignalingClient.connect({ url: srv.wsUrl, token: owner.token });
    cleanup.push(() => ownerAgain.close());
    const other = await ownerAgain.request('channel.create', { name: 'Loud' });
    expect(await isMutedOnJoin(after, other.channel.id, targetId)).toBe(false);
  });

  it('the owner or an admin sees and lifts the stored mute of a user who is not in the channel (WS and REST)', async () => {
    const srv = await server();
    const owner = await srv.user('mod-owner');
    const target = await srv.user('mod-target');
    const bystander = await srv.user('mod-bystander');
    const targetId = target.ws.welcome.user.id;
    const { channel } = await owner.ws.request('channel.create', { name: 'Moderated' });
    const muteWhileThere = async () => {
      await owner.ws.request('channel.join', { channelId: channel.id });
      await target.ws.request('channel.join', { channelId: channel.id });
      const before = Date.now();
      await owner.ws.request('voice.serverMute', { userId: targetId, muted: true });
      // Both leave: the moderator need not be in the channel to see or lift the mute.
      await target.ws.request('channel.leave', {});
      await owner.ws.request('channel.leave', {});
      return before;
    };

    const mutedAfter = await muteWhileThere();
    const listed = await owner.ws.request('channel.mutes', { channelId: channel.id });
    expect(listed.next).toBeNull();
    expect(listed.mutes.map(({ userId, nickname }) => ({ userId, nickname }))).toEqual([
      { userId: targetId, nickname: 'mod-target' },
    ]);
    expect(listed.mutes[0]!.mutedAt).toBeGreaterThanOrEqual(mutedAfter - 1);
    expect(listed.mutes[0]!.mutedAt).toBeLessThanOrEqual(Date.now());
    // Only the owner or an admin.
    expect(await code(bystander.ws.request('channel.mutes', { channelId: channel.id }))).toBe('FORBIDDEN');
    expect(
      await code(
        bystander.ws.request('voice.serverMute', { channelId: channel.id, userId: targetId, muted: false }),
      ),
    ).toBe('FORBIDDEN');
    // Without channelId the request is about your own channel: you must be in one.
    expect(await code(owner.ws.request('voice.serverMute', { userId: targetId, muted: false }))).toBe(
      'NOT_IN_CHANNEL',
    );
    // An absent user cannot be newly muted, only have a stored mute lifted.
    const stranger = bystander.ws.welcome.user.id;
    expect(
      await code(
        owner.ws.request('voice.serverMute', { channelId: channel.id, userId: stranger, muted: true }),
      ),
    ).toBe('NOT_FOUND');
    const lifted = await owner.ws.request('voice.serverMute', {
      channelId: channel.id,
      userId: targetId,
      muted: false,
    });
    expect(lifted.member).toBeNull();
    expect((await owner.ws.request('channel.mutes', { channelId: channel.id })).mutes).toEqual([]);
    expect(
      await code(
        owner.ws.request('voice.serverMute', { channelId: channel.id, userId: targetId, muted: false }),
      ),
    ).toBe('NOT_FOUND');
    // Lifted for real: the target joins unmuted.
    const back = await target.ws.request('channel.join', { channelId: channel.id });
    expect(back.members.find((m) => m.userId === targetId)?.serverMute).toBe(false);
    await target.ws.request('channel.leave', {});

    // The same over REST: list (owner or admin), lift with DELETE, 404 when nothing is stored.
    await muteWhileThere();
    const rest = (token: string, method: string, path: string) =>
      fetch(`${srv.url}/api/v1/channels/${channel.id}/mutes${path}`, {
        method,
        headers: { authorization: `Bearer ${token}` },
      });
    const page = await rest(owner.token, 'GET', '?limit=10');
    expect(page.status).toBe(200);
    expect(await page.json()).toMatchObject({
      items: [{ userId: targetId, nickname: 'mod-target' }],
      total: 1,
      limit: 10,
      offset: 0,
    });
    expect((await rest(bystander.token, 'GET', '')).status).toBe(403);
    expect((await rest(ADMIN_TOKEN, 'GET', '')).status).toBe(200);
    expect((await rest(bystander.token, 'DELETE', `/${targetId}`)).status).toBe(403);
    expect((await rest(ADMIN_TOKEN, 'DELETE', `/${targetId}`)).status).toBe(204);
    expect((await rest(owner.token, 'DELETE', `/${targetId}`)).status).toBe(404);
    expect(await (await rest(owner.token, 'GET', '')).json()).toMatchObject({ items: [], total: 0 });
    expect((await target.ws.request('channel.join', { channelId: channel.id })).members[0]?.serverMute).toBe(
      false,
    );
  });

  it('a DELETE over REST unmutes a member who is in the channel, live', async () => {
    const srv = await server();
    const owner = await srv.user('live-owner');
    const target = await srv.user('live-target');
    const targetId = target.ws.welcome.user.id;
    const { channel } = await owner.ws.request('channel.create', { name: 'Live' });
    await owner.ws.request('channel.join', { channelId: channel.id });
    await target.ws.request('channel.join', { channelId: channel.id });
    await owner.ws.request('voice.serverMute', { userId: targetId, muted: true });
    const seen = owner.ws.waitFor(
      'member.updated',
      (m) => m.member.userId === targetId && !m.member.serverMute,
    );
    const res = await fetch(`${srv.url}/api/v1/channels/${channel.id}/mutes/${targetId}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${owner.token}` },
    });
    expect(res.status).toBe(204);
    await seen;
    const members = await owner.ws.request('channel.members', { channelId: channel.id });
    expect(members.members.find((m) => m.userId === targetId)?.serverMute).toBe(false);
  });
});
