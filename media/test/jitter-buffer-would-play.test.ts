import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JitterBuffer, JitterPop } from '../src/index.js';

const FRAME_MS = 20;
const packet = new Uint8Array(40).fill(7);

/**
 * `wouldPlay` predicts, before a packet is inserted, whether the pop at a given play time plays a
 * frame. The server moves a listener from a forwarding run to a mix on it: a "yes" that the pop
 * then breaks leaves that listener without audio until the buffers play, so a yes must hold.
 */
describe('JitterBuffer.wouldPlay', () => {
  it('a talkspurt start: exact against the pop, with and without a grown target', () => {
    for (const minTargetFrames of [1, 3]) {
      for (let lead = 0; lead < 3 * FRAME_MS * minTargetFrames; lead += 0.5) {
        // The first packet arrives `lead` ms before the pop at play time 1000.
        const jb = new JitterBuffer({ frameMs: FRAME_MS, marginMs: 2, minTargetFrames });
        const predicted = jb.wouldPlay(50, 1000 - lead, 1000);
        jb.insert(50, packet, 1000 - lead);
        const played = jb.pop(1000) !== JitterPop.EMPTY;
        expect({ minTargetFrames, lead, predicted }).toEqual({ minTargetFrames, lead, predicted: played });
      }
    }
  });

  it('on any arrival schedule, a yes is always kept by the next pop', () => {
    let yes = 0;
    let no = 0;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 3 }),
        // Per frame: whether it is sent, and its delay (ms) on the link.
        fc.array(fc.tuple(fc.boolean(), fc.double({ min: 0, max: 70, noNaN: true })), {
          minLength: 20,
          maxLength: 200,
        }),
        (minTargetFrames, frames) => {
          const jb = new JitterBuffer({ frameMs: FRAME_MS, marginMs: 2, minTargetFrames });
          const arrivals = frames
            .map(([sent, delay], k) => ({ sent, k, at: 1000 + k * FRAME_MS + delay }))
            .filter((a) => a.sent)
            .sort((x, y) => x.at - y.at);
          let next = 0;
          for (let t = 0; t < frames.length + 10; t++) {
            const playAt = 1000 + t * FRAME_MS;
            // Only the last packet before this pop is predicted (the server asks on each arrival,
            // with the packets before it already in).
            let predicted: boolean | null = null;
            for (; next < arrivals.length && arrivals[next]!.at < playAt; next++) {
              const a = arrivals[next]!;
              predicted = jb.wouldPlay(a.k, a.at, playAt);
              jb.insert(a.k, packet, a.at);
            }
            const played = jb.pop(playAt) !== JitterPop.EMPTY;
            if (predicted === true) {
              yes++;
              if (!played) return false;
            } else if (predicted === false) no++;
          }
          return true;
        },
      ),
      { seed: 20261202, numRuns: 300 },
    );
    // Both answers were exercised (a predictor that always says no would pass the above alone).
    expect(yes).toBeGreaterThan(1000);
    expect(no).toBeGreaterThan(100);
  });
});
