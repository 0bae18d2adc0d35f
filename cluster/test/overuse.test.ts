import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OveruseDetector } from '../src/voice/overuse.js';

/** Feeds `windows` windows of 50 ticks at `ms` each; returns the complexity after each window. */
function feed(d: OveruseDetector, ms: number, windows: number): number[] {
  const out: number[] = [];
  for (let w = 0; w < windows; w++) {
    for (let t = 0; t < 50; t++) d.record(ms);
    out.push(d.complexity);
  }
  return out;
}

describe('OveruseDetector (per-channel CPU adaptation)', () => {
  it('steps complexity down by 2 per overused window, to its floor', () => {
    const d = new OveruseDetector(9, { budgetMs: 2 });
    expect(feed(d, 3, 6)).toEqual([7, 5, 3, 1, 1, 1]);
    expect(d.adaptedDown).toBe(4);
    expect(d.overused).toBe(true);
  });

  it('decides on the mean of a whole window: one slow tick does not adapt, a slow window does', () => {
    const d = new OveruseDetector(9, { budgetMs: 2 });
    // 49 x 0.5 ms + one 50 ms stall: mean 1.49 ms, under budget.
    for (let t = 0; t < 50; t++) expect(d.record(t === 10 ? 50 : 0.5)).toBe(false);
    expect(d.complexity).toBe(9);
    // 48 x 0.5 ms + two 40 ms ticks: mean 2.08 ms, over; the decision comes on the 50th tick.
    for (let t = 0; t < 49; t++) expect(d.record(t < 2 ? 40 : 0.5)).toBe(false);
    expect(d.record(0.5)).toBe(true);
    expect(d.complexity).toBe(7);
  });

  it('climbs back one step after five calm windows, never above the setting', () => {
    const d = new OveruseDetector(9, { budgetMs: 2 });
    feed(d, 3, 2); // 9 -> 5
    // Calm means under half the budget; between half and the whole budget it holds.
    expect(feed(d, 1.5, 10).every((c) => c === 5)).toBe(true);
    expect(feed(d, 0.5, 10)).toEqual([5, 5, 5, 5, 6, 6, 6, 6, 6, 7]);
    feed(d, 0.5, 20);
    expect(d.complexity).toBe(9);
    expect(d.overused).toBe(false);
  });

  it('a new setting from the owner starts over from it', () => {
    const d = new OveruseDetector(9, { budgetMs: 2 });
    feed(d, 3, 3);
    d.configure(4);
    expect(d.complexity).toBe(4);
    expect(feed(d, 3, 3)).toEqual([2, 1, 1]);
  });

  it('always stays within [min(floor, setting), setting]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 10 }),
        fc.array(fc.double({ min: 0, max: 10, noNaN: true }), { maxLength: 2000 }),
        (setting, ticks) => {
          const d = new OveruseDetector(setting, { budgetMs: 2 });
          for (const ms of ticks) {
            d.record(ms);
            expect(d.complexity).toBeLessThanOrEqual(setting);
            expect(d.complexity).toBeGreaterThanOrEqual(Math.min(1, setting));
          }
        },
      ),
    );
  });
});
