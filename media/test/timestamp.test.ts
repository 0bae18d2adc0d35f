import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { TimestampUnwrapper, frameIndexOf } from '../src/index.js';

const U32 = 2 ** 32;

describe('TimestampUnwrapper', () => {
  it('matches a reference model of the true sample position across wraps and reordering', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: U32 - 1 }),
        // Steps of whole frames forward (a stream), with some going back (reordered packets) and
        // some large jumps forward (pauses on a clock-following timestamp).
        fc.array(fc.oneof(fc.integer({ min: -8, max: 16 }), fc.integer({ min: 16, max: 1_000_000 })), {
          maxLength: 300,
        }),
        fc.constantFrom(480, 960),
        (start, steps, frame) => {
          const u = new TimestampUnwrapper();
          // Reference: positions as exact integers, the wire carries them mod 2^32.
          let truePos = start;
          expect(u.unwrap(start)).toBe(start);
          for (const s of steps) {
            truePos += s * frame;
            const wire = ((truePos % U32) + U32) % U32;
            expect(u.unwrap(wire)).toBe(truePos);
          }
        },
      ),
    );
  });

  it('gives consecutive frame indices through a wrap that is not on a frame boundary', () => {
    const u = new TimestampUnwrapper();
    const start = U32 - 5 * 960 + 17; // 2^32 is not a multiple of 960
    const idx: number[] = [];
    for (let k = 0; k < 10; k++) idx.push(u.frameIndex((start + k * 960) % U32, 960));
    for (let k = 1; k < 10; k++) expect((idx[k]! - idx[k - 1]! + U32) % U32).toBe(1);
  });

  it('rounds to the nearest frame, so a sender offset by under half a frame keeps its indices', () => {
    expect(frameIndexOf(960 * 7 + 400, 960)).toBe(7);
    expect(frameIndexOf(960 * 7 - 400, 960)).toBe(7);
    expect(frameIndexOf(-960, 960)).toBe(U32 - 1);
  });

  it('reset() starts a new reference', () => {
    const u = new TimestampUnwrapper();
    u.unwrap(1000);
    u.unwrap(1960);
    u.reset();
    expect(u.unwrap(5)).toBe(5);
  });
});
