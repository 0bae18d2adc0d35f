import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { virtualChannel, type Sent } from './helpers/virtual-channel.js';

/**
 * A listener moves from a forwarding run (one speaker's own packets, sent as they arrive) to the
 * mix (a second speaker starts) and back (it stops): its stream must go on frame after frame, no
 * timestamp sent twice and none left out. The server's real ChannelCore on a virtual clock, fed
 * real Opus packets as the ingress feeds it; what member 0 (a silent listener) is sent is kept.
 */
const FRAME_MS = 20;

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

/** Each packet plays at the frame after the one before: none repeated, none left out. */
function expectContiguous(sent: readonly Sent[]): void {
  for (let i = 1; i < sent.length; i++) {
    expect(sent[i]!.frame - sent[i - 1]!.frame, `packet ${i} (frame ${sent[i]!.frame})`).toBe(1);
  }
}

/**
 * Member 1 talks for 200 frames, arriving `phaseA` ms before each tick; member 2 talks over it for
 * frames 50-99 and 130-159, arriving `phaseB` ms before each tick. Member 0 listens.
 */
function run(phaseA: number, phaseB: number): { got: readonly Sent[]; skipped: number } {
  const ch = virtualChannel(opus, FRAME_MS, 3);
  const talksB = (f: number): boolean => (f >= 50 && f < 100) || (f >= 130 && f < 160);
  for (let f = 0; f < 200; f++) {
    const due = f * FRAME_MS;
    const order = phaseA >= phaseB ? [1, 2] : [2, 1];
    for (const i of order) {
      if (i === 2 && !talksB(f)) continue;
      ch.now = due - (i === 1 ? phaseA : phaseB);
      ch.arrive(i, f);
    }
    ch.now = due;
    ch.tick(due);
  }
  const out = { got: [...ch.got], skipped: ch.core.stats.mixRepeatsSkipped };
  ch.close();
  return out;
}

describe('forward -> mix -> forward transitions', () => {
  for (const [a, b] of [
    [5, 4],
    [4, 5],
    [17, 3],
    [3, 17],
    [11, 11],
  ] as const) {
    it(`one timeline for the listener (speakers ${a} and ${b} ms before the tick)`, () => {
      const { got, skipped } = run(a, b);
      expectContiguous(got);
      // Forwarded while one talks, mixed at the tick while two do: both transitions happened twice.
      const kinds = got.map((s) => (s.onArrival ? 'a' : 't')).join('');
      expect(kinds).toMatch(/^a+t+a+t+a+$/);
      // Every frame of member 1's 200 reached the listener once (its first opens the run).
      expect(got.length).toBe(200);
      // The forwarded packet of the first frame of each overlap was kept; its mix was not sent.
      expect(skipped).toBe(2);
    });
  }
});
