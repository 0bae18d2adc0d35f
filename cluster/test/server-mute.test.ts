import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ChannelId, UserId } from '@voice/protocol';
import { SignalingClient } from '../../client/src/index.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * Server-mute evasion: a server mute belongs to (user, channel) until someone with the right lifts
 * it, across a reconnect after the session ended and a server restart. (Across leave and re-join,
 * heard in the audio: scenarios/voice-scenarios.ts, on one server and on a cluster.)
 */

const cleanup: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function server(dataDir?: string): Promise<TestServer> {
  const srv = await startTestServer({ graceMs: 1_000 }, dataDir);
  cleanup.push(() => srv.stop());
  return srv;
}

describe('server mute belongs to (user, channel)', () => {
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
});
