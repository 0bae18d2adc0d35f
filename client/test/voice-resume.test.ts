import { once } from 'node:events';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { ToneSource, VoiceClient, type VoiceClientOptions } from '../src/index.js';
import { toneLevelDbfs } from '../../test-support/levels.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/** Signaling drops (network loss): the client comes back within the grace period, voice resumes. */

let opus: OpusFactory;
let srv: TestServer;
const closers: (() => unknown)[] = [];
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

const heardDbfs = (c: VoiceClient, hz: number, ms: number): number =>
  toneLevelDbfs(c.recording().samples, hz, ms);

describe('VoiceClient resumes when signaling drops', () => {
  it('reconnects with its token, keeps its channel, and its voice is heard again', async () => {
    const speaker = await bot('speaker', {
      channel: 'Resume',
      create: true,
      source: new ToneSource(440, -20),
    });
    const listener = await bot('listener', { channel: 'Resume' });
    await Promise.all([speaker.waitReady(3000), listener.waitReady(3000)]);
    await sleep(1500);
    expect(heardDbfs(listener, 440, 1000)).toBeGreaterThan(-23);
    const channelId = speaker.channel!.id;
    const oldSignaling = speaker.signaling;

    const events: string[] = [];
    speaker.on('reconnecting', () => events.push('reconnecting'));
    speaker.on('disconnected', () => events.push('disconnected'));
    const resumed = once(speaker, 'resumed') as Promise<[boolean]>;
    oldSignaling.terminate(); // the TCP connection drops without a close handshake
    const [restored] = await resumed;
    expect(restored).toBe(true);
    expect(events).toEqual(['reconnecting']);
    expect(speaker.isClosed).toBe(false);
    expect(speaker.signaling).not.toBe(oldSignaling);
    await speaker.waitReady(3000);
    expect(speaker.channel?.id).toBe(channelId);
    // Voice flows again: the listener hears the tone at its level after the resume.
    listener.clearRecording();
    await sleep(2000);
    expect(heardDbfs(listener, 440, 1000)).toBeGreaterThan(-23);
    expect(heardDbfs(listener, 440, 1000)).toBeLessThan(-17);
    // And signaling works on the new connection.
    await speaker.setSelfMute(true);
    await sleep(1000);
    expect(heardDbfs(listener, 440, 500)).toBeLessThan(-60);
  });

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
