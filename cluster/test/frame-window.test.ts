import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameWindow } from '../src/voice/frame-window.js';

describe('FrameWindow', () => {
  it('answers as a set of the frames added, within 32 of the newest (older count as members)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.array(fc.integer({ min: -40, max: 40 }), { maxLength: 60 }),
        (start, steps) => {
          const w = new FrameWindow();
          const added = new Set<number>();
          let newest = Number.NEGATIVE_INFINITY;
          let k = 0;
          for (const s of steps) {
            k += s;
            w.add((start + k) >>> 0);
            added.add(k);
            newest = Math.max(newest, k);
          }
          for (let q = k - 80; q <= k + 80; q++) {
            const want = steps.length > 0 && q <= newest && (newest - q > 32 || added.has(q) || q === newest);
            expect(w.has((start + q) >>> 0), `frame ${q}`).toBe(want);
          }
          w.clear();
          expect(w.has(start >>> 0)).toBe(false);
        },
      ),
    );
  });
});
