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
  it('with resume off, a drop closes the client as before', async () => {
    const c = await bot('noresume', { channel: 'Off', create: true, resume: false });
    const gone = once(c, 'disconnected');
    c.signaling.terminate();
    await gone;
    expect(c.isClosed).toBe(true);
  });
});
