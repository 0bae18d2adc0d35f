import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { ToneSource, type VoiceClient } from '../../client/src/index.js';
import { channelOf, connectBot } from '../../test-support/bots.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * `clock.minBufferFrames`: the fewest frames the members' jitter buffers on the server target. Two
 * speakers (so the server mixes them for the third member): with 3, every member's buffer targets
 * 3 frames and holds its frames at least two frames, measured by the server's own hold figures.
 */

let opus: OpusFactory;
let srv: TestServer | null = null;
const bots: VoiceClient[] = [];

beforeAll(async () => {
  opus = await createOpus();
});
afterEach(async () => {
  for (const b of bots.splice(0)) await b.close();
  await srv?.stop();
  srv = null;
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function holdWith(minBufferFrames: number | undefined) {
  srv = await startTestServer(minBufferFrames === undefined ? {} : { clock: { minBufferFrames } });
  const s = srv;
  const [a, b] = await channelOf(
    (_i, nickname, extra) =>
      connectBot(s.url, nickname, opus, extra).then((c) => {
        bots.push(c);
        return c;
      }),
    `Buffer ${minBufferFrames ?? 'default'}`,
    ['mb-a', 'mb-b', 'mb-l'],
  );
  a!.startVoice(new ToneSource(440, -20));
  b!.startVoice(new ToneSource(660, -20));
  await sleep(1500);
  const core = s.voice.channelStats().find((c) => c.id === a!.channel!.id)!.core;
  return core.members
    .filter((m) => m.userId !== bots[2]!.user.id)
    .map((m) => ({ target: m.jitter.stats().target, hold: m.tickHoldMs.percentile(50) }));
}

describe('clock.minBufferFrames', () => {
  it('sets the least target of the members’ buffers on the server, and so their hold', async () => {
    const def = await holdWith(undefined);
    for (const b of bots.splice(0)) await b.close();
    await srv!.stop();
    const three = await holdWith(3);
    for (const m of def) expect(m.target).toBe(1);
    for (const m of three) {
      expect(m.target).toBe(3);
      // At least two frames more than the default's (under a frame, 2-5 ms on a quiet machine;
      // a loaded one can start a talkspurt a tick late, so no upper bound is judged here).
      expect(m.hold).toBeGreaterThanOrEqual(40);
    }
  });
});
