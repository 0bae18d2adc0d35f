import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { advanceFor } from '../src/voice/advance.js';
import { ArrivalPhases } from '../src/voice/arrival-phases.js';

const F = 20;

/**
 * Reference model: the cluster's percentiles by brute force. Every rotation of the circle is
 * tried; the cluster is the one whose span (last less first) is the shortest, read from where it
 * starts (values past the cut less one frame).
 */
function reference(values: number[], ps: number[]): number[] {
  const s = values.map((v) => ((v % F) + F) % F).sort((a, b) => a - b);
  let best: number[] = s;
  for (let start = 1; start < s.length; start++) {
    const rotated = [...s.slice(start).map((v) => v - F), ...s.slice(0, start)];
    const span = (r: number[]) => r[r.length - 1]! - r[0]!;
    if (span(rotated) < span(best)) best = rotated;
  }
  return ps.map((p) => best[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!);
}

describe('ArrivalPhases', () => {
  it('reads a cluster that straddles the tick as arriving from just after it to just before it', () => {
    const ph = new ArrivalPhases(F, 64);
    for (let i = 0; i < 20; i++) ph.record(i % 2 === 0 ? 0.5 + i * 0.01 : 19.6 + i * 0.01);
    const out = new Float64Array(2);
    expect(ph.percentiles([5, 95], out)).toBe(true);
    expect(out[0]).toBeCloseTo(19.61 - F, 6); // 0.39 ms after the tick
    expect(out[1]).toBeCloseTo(0.66, 6); // the 19th of 20
  });

  it('matches the brute-force model on any phases, and keeps only the newest `capacity`', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: F, maxExcluded: true, noNaN: true }), {
          minLength: 1,
          maxLength: 80,
        }),
        fc.integer({ min: 1, max: 64 }),
        (values, capacity) => {
          const ph = new ArrivalPhases(F, capacity);
          for (const v of values) ph.record(v);
          const kept = values.slice(-capacity);
          expect(ph.count).toBe(kept.length);
          const ps = [5, 50, 95];
          const out = new Float64Array(3);
          expect(ph.percentiles(ps, out)).toBe(true);
          // Ties in the largest gap may pick another cut of the same span: compare spans and ranks.
          const want = reference(kept, ps);
          expect(out[2]! - out[0]!).toBeCloseTo(want[2]! - want[0]!, 9);
          for (const [i, v] of want.entries()) expect(((out[i]! - v) % F) + 0).toBeCloseTo(0, 9);
        },
      ),
    );
  });

  it('is empty after reset, folds stray values into the frame and ignores non-finite ones', () => {
    const ph = new ArrivalPhases(F, 8);
    const out = new Float64Array(1);
    expect(ph.percentiles([50], out)).toBe(false);
    ph.record(Number.NaN);
    ph.record(Number.POSITIVE_INFINITY);
    expect(ph.count).toBe(0);
    ph.record(23); // a frame and 3 ms
    expect(ph.percentiles([50], out)).toBe(true);
    expect(out[0]).toBeCloseTo(3, 9);
    ph.reset();
    expect(ph.count).toBe(0);
    expect(() => new ArrivalPhases(0)).toThrow(TypeError);
    expect(() => new ArrivalPhases(F, 0)).toThrow(TypeError);
  });
});

describe('advanceFor', () => {
  it('moves the latest arrivals to 1 ms plus half the spread before the tick, later or (a little) earlier', () => {
    // Half a frame early, 0.4 ms spread: send 8.8 ms later.
    expect(advanceFor(10, 10.4, 11, F)).toBeCloseTo(8.8, 9);
    // Around the tick (some just after it): send earlier so all precede it.
    expect(advanceFor(-0.5, 0.1, 0.8, F)).toBeCloseTo(-1.8, 9);
    // More jitter, more lead (capped at a quarter frame).
    expect(advanceFor(10, 12, 13, F)).toBeCloseTo(8, 9);
    expect(advanceFor(10, 19, 19.5, F)).toBeCloseTo(5, 9);
    // Spread over half a frame: no phase to move to.
    expect(advanceFor(2, 8, 12, F)).toBe(0);
    // Close enough: nothing.
    expect(advanceFor(1.6, 2, 2.5, F)).toBe(0);
    expect(advanceFor(0.6, 0.8, 1.5, F)).toBe(0);
  });

  it('never moves a packet past its tick, nor the earliest across the previous tick', () => {
    fc.assert(
      fc.property(
        fc.double({ min: -F / 2, max: F, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0, max: F, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (latest, width, at) => {
          const earliest = Math.min(latest + width, F - 0.001);
          fc.pre(earliest >= latest);
          const s = advanceFor(latest, latest + at * (earliest - latest), earliest, F);
          if (s === 0) return;
          expect(Math.abs(s)).toBeGreaterThanOrEqual(1);
          // After the shift the earliest stay within the frame ahead of the tick.
          expect(earliest - s).toBeLessThanOrEqual(F - 1 + 1e-9);
          // And a later send leaves the latest at least 1 ms before the tick.
          if (s > 0) expect(latest - s).toBeGreaterThanOrEqual(1 - 1e-9);
        },
      ),
    );
  });
});
