import { once } from 'node:events';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { VoiceClient, type VoiceClientOptions } from '../src/index.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * Signaling drops (network loss). The resume itself (same channel, voice heard again, controls work)
 * is a voice scenario in cluster/test/scenarios/voice-scenarios.ts, run on one server and on a cluster.
 */

let opus: OpusFactory;
let srv: TestServer;
const closers: (() => unknown)[] = [];

beforeAll(async () => {
  opus = await createOpus();
});
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
  await srv.stop();
});

async function bot(nickname: string, extra: Partial<VoiceClientOptions> = {}): Promise<VoiceClient> {
  const c = await VoiceClient.connect({ server: srv.url, nickname, opus, heartbeatMs: 500, ...extra });
  closers.push(() => c.close());
  return c;
}

describe('VoiceClient resumes when signaling drops', () => {
  it('comes back after the server closed it for not reading (4004), but not after a logout (4000)', async () => {
    const c = await bot('slowpoke', { channel: 'Slow', create: true });
    await c.waitReady(3000);
    const channelId = c.channel!.id;
    const events: string[] = [];
    c.on('reconnecting', () => events.push('reconnecting'));
    c.on('disconnected', () => events.push('disconnected'));
    // What the server does when this client's unread frames reach the limit (cluster edges test).
    const resumed = once(c, 'resumed') as Promise<[boolean]>;
    srv.sessions.byUser(c.user.id)!.conn!.close(4004, 'too slow: messages not read');
    expect((await resumed)[0]).toBe(true);
    expect(events).toEqual(['reconnecting']);
    await c.waitReady(3000);
    expect(c.channel?.id).toBe(channelId);
    // Any other code of ours stays final.
    const gone = once(c, 'disconnected');
    srv.sessions.byUser(c.user.id)!.conn!.close(4000, 'logged out');
    await gone;
    expect(c.isClosed).toBe(true);
    expect(events).toEqual(['reconnecting', 'disconnected']);
  });

  it('with resume off, a drop closes the client as before', async () => {
    const c = await bot('noresume', { channel: 'Off', create: true, resume: false });
    const gone = once(c, 'disconnected');
    c.signaling.terminate();
    await gone;
    expect(c.isClosed).toBe(true);
  });
});
