import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { countFitting, encodeMessage, MAX_FRAME_BYTES, type ServerMessage } from '../src/index.js';

/** The server pages every signaling list with countFitting: a page must fit, and be nearly full. */
describe('countFitting', () => {
  const envelope = (items: unknown[]) =>
    ({
      t: 'result',
      re: 0xffff_ffff,
      data: { channels: items, next: '9999999' },
    }) as unknown as ServerMessage;
  const item = fc.record({
    id: fc.string({ minLength: 14, maxLength: 14 }),
    name: fc.string({ unit: 'grapheme', maxLength: 64 }),
    n: fc.oneof(fc.integer(), fc.double()),
    flag: fc.boolean(),
  });

  it('takes the longest prefix that fits the frame (up to the 4 bytes an array header may grow)', () => {
    fc.assert(
      fc.property(
        fc.array(item, { maxLength: 400 }),
        fc.integer({ min: 200, max: MAX_FRAME_BYTES }),
        (items, max) => {
          const n = countFitting(items, envelope, max);
          expect(n).toBeGreaterThanOrEqual(0);
          expect(n).toBeLessThanOrEqual(items.length);
          expect(encodeMessage(envelope(items.slice(0, n))).byteLength).toBeLessThanOrEqual(max);
          // Reference model: one more item would not have fitted (allowing the header's slack).
          if (n < items.length) {
            expect(encodeMessage(envelope(items.slice(0, n + 1))).byteLength).toBeGreaterThan(max - 4);
          }
        },
      ),
    );
  });

  it('is 0 when even the envelope does not fit, and everything when all fits', () => {
    expect(countFitting([1, 2, 3], envelope, 10)).toBe(0);
    expect(countFitting([1, 2, 3], envelope)).toBe(3);
  });
});
