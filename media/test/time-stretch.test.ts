import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sineInt16, TimeStretch, toneDbfs } from '../src/index.js';
import { voiced } from './signals.js';

/** Largest step between neighbouring samples in [from, to). */
function maxStep(x: Int16Array, from: number, to: number): number {
  let m = 0;
  for (let i = from + 1; i < to; i++) m = Math.max(m, Math.abs(x[i]! - x[i - 1]!));
  return m;
}

function noise(length: number, amplitude: number, seed: number): Int16Array {
  let s = seed >>> 0;
  return new Int16Array(length).map(() => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return Math.round(((s / 2 ** 32) * 2 - 1) * amplitude);
  });
}

describe('TimeStretch (WSOLA by whole pitch periods)', () => {
  it('accelerate removes exactly one period of a tone: same frequency and level, no step at either splice', () => {
    const ts = new TimeStretch();
    const tone = sineInt16(2400, 200, -6); // period 240 samples
    const buf = tone.slice();
    const after = [...tone.subarray(1920, 2400)];
    const removed = ts.accelerate(buf, 0, 1920);
    expect(removed % 240).toBe(0);
    expect(removed).toBeGreaterThan(0);
    expect(ts.lastCorrelation).toBeGreaterThan(0.999);
    const len = 1920 - removed;
    // After the crossfaded period, the region's rest is the original from two periods on.
    expect([...buf.subarray(removed, len)]).toEqual([...tone.subarray(2 * removed, 1920)]);
    // The tone's own largest step bounds every step of the result (no click).
    const step = maxStep(tone, 0, 1920);
    expect(maxStep(buf, 0, len)).toBeLessThanOrEqual(step + 2);
    // Beyond the region nothing moved.
    expect([...buf.subarray(1920, 2400)]).toEqual(after);
    expect(toneDbfs(buf, 200, 48_000, 0, 960)).toBeCloseTo(toneDbfs(tone, 200, 48_000, 0, 960), 1);
  });

  it('expand inserts exactly one period of a voiced signal without a step, and keeps what follows', () => {
    const ts = new TimeStretch();
    const x = voiced(3000);
    const buf = new Int16Array(4000);
    buf.set(x.subarray(0, 1920));
    const added = ts.expand(buf, 0, 1920, 4000);
    expect(added % 320).toBe(0);
    expect(added).toBeGreaterThan(0);
    // The start is untouched and the end is the original region shifted by the period.
    expect([...buf.subarray(0, added)]).toEqual([...x.subarray(0, added)]);
    expect([...buf.subarray(2 * added, 1920 + added)]).toEqual([...x.subarray(added, 1920)]);
    expect(maxStep(buf, 0, 1920 + added)).toBeLessThanOrEqual(maxStep(x, 0, 1920) + 2);
  });

  it('refuses loud audio that is not periodic (white noise), and splices quiet audio whatever it is', () => {
    const ts = new TimeStretch();
    const loud = noise(1920, 12_000, 7);
    const before = loud.slice();
    expect(ts.accelerate(loud, 0, 1920)).toBe(0);
    expect(ts.expand(loud, 0, 960, 1920)).toBe(0);
    expect(loud).toEqual(before);
    const quiet = noise(1920, 200, 9);
    expect(ts.accelerate(quiet, 0, 1920)).toBeGreaterThan(0);
  });

  it('needs room: a region shorter than two shortest periods, or no space to grow, is left alone', () => {
    const ts = new TimeStretch();
    const buf = sineInt16(2000, 200, -6);
    const copy = buf.slice();
    expect(ts.accelerate(buf, 0, 200)).toBe(0);
    expect(ts.expand(buf, 0, 1000, 1100)).toBe(0); // 100 samples of room < 120
    expect(buf).toEqual(copy);
  });

  it('property: on any periodic signal, the change is whole periods and the ends match the original', () => {
    fc.assert(
      fc.property(fc.integer({ min: 130, max: 700 }), fc.integer({ min: 0, max: 1 }), (period, op) => {
        const hz = 48_000 / period;
        const x = new Int16Array(3000).map((_, i) =>
          Math.round(9000 * Math.sin((2 * Math.PI * hz * i) / 48_000)),
        );
        const ts = new TimeStretch();
        const buf = new Int16Array(6000);
        buf.set(x);
        const len = 2 * 720;
        const d = op === 0 ? -ts.accelerate(buf, 0, len) : ts.expand(buf, 0, len, 6000);
        if (d === 0) return ts.lastCorrelation < ts.minCorrelation;
        const p = Math.abs(d);
        // A lag the search accepts reproduces the signal within 1 % (possibly a multiple of the period).
        const newLen = len + d;
        return buf[0] === x[0] && buf[newLen - 1] === x[len - 1] && p >= ts.minPeriod && p <= ts.maxPeriod;
      }),
      { numRuns: 60 },
    );
  });
});
