import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  floatToInt16,
  gainMapKey,
  int16ToFloat,
  limitToInt16,
  mixMinus,
  mixToInt16,
  MixGroups,
  mixWeighted,
  sine,
  sineInt16,
  softLimit,
  sumFrames,
  toneDbfs,
} from '../src/index.js';

const N = 960;
const FREQ = { A: 300, B: 700, C: 1100 } as const;
const frames = {
  A: sine(N, FREQ.A, -12),
  B: sine(N, FREQ.B, -12),
  C: sine(N, FREQ.C, -12),
};
const ids = ['A', 'B', 'C'] as const;
const list = [frames.A, frames.B, frames.C];

function levels(mix: Float32Array): Record<'A' | 'B' | 'C', number> {
  return { A: toneDbfs(mix, FREQ.A), B: toneDbfs(mix, FREQ.B), C: toneDbfs(mix, FREQ.C) };
}

describe('mix-minus primitives', () => {
  it('sums three tones and removes the own one for a speaker', () => {
    const sum = sumFrames(list, 3, new Float32Array(N));
    const all = levels(sum);
    for (const id of ids) expect(all[id]).toBeCloseTo(-12, 1);
    const forA = levels(mixMinus(sum, frames.A, new Float32Array(N)));
    expect(forA.B).toBeCloseTo(-12, 1);
    expect(forA.C).toBeCloseTo(-12, 1);
    expect(forA.A).toBeLessThan(-80);
  });

  it('applies per-speaker gains: 0 removes, 2 adds 6 dB, and excludes the own index', () => {
    const out = mixWeighted(list, [0, 2, 1], 3, -1, new Float32Array(N));
    const l = levels(out);
    expect(l.A).toBeLessThan(-80);
    expect(l.B).toBeCloseTo(-12 + 6.02, 1);
    expect(l.C).toBeCloseTo(-12, 1);
    const minusC = levels(mixWeighted(list, [1, 1, 1], 3, 2, new Float32Array(N)));
    expect(minusC.C).toBeLessThan(-80);
    expect(minusC.A).toBeCloseTo(-12, 1);
  });

  it('zeroes the output for no speakers and checks lengths', () => {
    const out = new Float32Array(N).fill(1);
    expect(sumFrames([], 0, out).every((v) => v === 0)).toBe(true);
    expect(() => sumFrames([new Float32Array(10)], 1, out)).toThrow(TypeError);
  });
});

describe('gain map keys', () => {
  it('is stable and order-independent; default gains map to the shared key', () => {
    expect(gainMapKey(undefined)).toBe('');
    expect(gainMapKey(new Map())).toBe('');
    expect(gainMapKey({ a: 1, b: 1 })).toBe('');
    const k1 = gainMapKey(
      new Map([
        ['x', 0.5],
        ['y', 0],
        ['z', 1],
      ]),
    );
    const k2 = gainMapKey({ y: 0, x: 0.5 });
    expect(k1).toBe(k2);
    expect(k1).not.toBe('');
    expect(gainMapKey({ x: 0.5 })).not.toBe(k1);
    expect(gainMapKey({ x: 3 })).toBe(gainMapKey({ x: 2 })); // clamped to 0..2
    expect(gainMapKey({ 'a,b': 0.5 })).not.toBe(gainMapKey({ a: 1, b: 0.5 }));
    expect(() => gainMapKey({ x: Number.NaN })).toThrow(TypeError);
  });
});

describe('MixGroups', () => {
  it('shares one mix for silent default listeners and one mix-minus per speaker (10 members, 2 speakers)', () => {
    const mg = new MixGroups(N, 10);
    for (let i = 0; i < 10; i++) mg.setListener(`m${i}`);
    mg.mix(['m0', 'm1'], [frames.A, frames.B], 2);
    expect(mg.outputCount).toBe(3);
    const silent = mg.output('m5')!;
    for (let i = 2; i < 10; i++) expect(mg.output(`m${i}`)).toBe(silent);
    expect(toneDbfs(silent, FREQ.A)).toBeCloseTo(-12, 1);
    expect(toneDbfs(silent, FREQ.B)).toBeCloseTo(-12, 1);
    const m0 = mg.output('m0')!;
    expect(toneDbfs(m0, FREQ.A)).toBeLessThan(-80);
    expect(toneDbfs(m0, FREQ.B)).toBeCloseTo(-12, 1);
    const distinct = new Set(Array.from({ length: mg.outputCount }, (_, i) => mg.outputAt(i)));
    expect(distinct.size).toBe(3);
  });

  it('gives listeners with equal custom gain maps the same mix, and mutes a speaker at gain 0', () => {
    const mg = new MixGroups(N, 4);
    for (const id of ['A', 'B', 'C', 'L1', 'L2', 'L3']) mg.setListener(id);
    mg.setListener('L1', { A: 0 });
    mg.setListener('L2', new Map([['A', 0]]));
    mg.setListener('L3', { A: 0, B: 1 });
    mg.setListener('C', { A: 0 }); // C speaks: its mix is its own (minus C, without A)
    expect(mg.groupKey('L1')).toBe(mg.groupKey('L2'));
    expect(mg.groupKey('L3')).toBe(mg.groupKey('L1'));
    expect(mg.groupCount).toBe(1);
    mg.mix(ids, list, 3);
    const l1 = mg.output('L1')!;
    expect(mg.output('L2')).toBe(l1);
    expect(mg.output('L3')).toBe(l1);
    expect(levels(l1).A).toBeLessThan(-80);
    expect(levels(l1).B).toBeCloseTo(-12, 1);
    const c = levels(mg.output('C')!);
    expect(c.A).toBeLessThan(-80);
    expect(c.C).toBeLessThan(-80);
    expect(c.B).toBeCloseTo(-12, 1);
    // A, B speak with default gains (2 mix-minus), C (own), the L group: no silent default listener.
    expect(mg.outputCount).toBe(4);
    mg.removeListener('L1');
    mg.removeListener('L2');
    mg.removeListener('L3');
    mg.setListener('C');
    expect(mg.groupCount).toBe(0);
    expect(mg.output('L1')).toBeUndefined();
  });
});

describe('limiter and conversion', () => {
  it('never exceeds full scale and keeps a -12 dBFS tone within 0.5 dB', () => {
    const extreme = sumFrames([sine(N, 300, 6), sine(N, 700, 6), sine(N, 1100, 6)], 3, new Float32Array(N));
    expect(Math.max(...softLimit(extreme, new Float32Array(N)).map(Math.abs))).toBeLessThanOrEqual(1);
    // An Int16Array cannot hold more than 32767, so "max <= 32767" proves nothing: an unlimited
    // conversion wraps around instead. Each sample keeps its input's sign, and the peaks come close
    // to full scale without reaching past it.
    const extreme16 = limitToInt16(extreme, new Int16Array(N));
    for (let i = 0; i < N; i++)
      if (Math.abs(extreme[i]!) > 1e-3)
        expect(Math.sign(extreme16[i]!), `sample ${i}`).toBe(Math.sign(extreme[i]!));
    expect(Math.max(...extreme16)).toBeGreaterThan(32_000);
    expect(Math.min(...extreme16)).toBeLessThan(-32_000);
    // Three -6 dBFS talkers overlap to 1.5x full scale.
    const loud = sumFrames([sine(N, 300, -6), sine(N, 700, -6), sine(N, 1100, -6)], 3, new Float32Array(N));
    const limited = softLimit(loud, new Float32Array(N));
    expect(Math.max(...limited.map(Math.abs))).toBeLessThan(1);
    const pcm = limitToInt16(loud, new Int16Array(N));
    // The one-pass limiter is exactly the two steps it fuses (the property test below: any input).
    expect(Array.from(pcm)).toEqual(Array.from(floatToInt16(limited, new Int16Array(N))));
    // No flat tops: a hard clipper would repeat the full-scale value.
    let flat = 0;
    for (let i = 1; i < N; i++) if (Math.abs(pcm[i]!) > 32000 && pcm[i] === pcm[i - 1]) flat++;
    expect(flat).toBeLessThan(3);

    const quiet = sine(N, 440, -12);
    expect(Math.abs(toneDbfs(softLimit(quiet, new Float32Array(N)), 440) - -12)).toBeLessThan(0.5);
    const q16 = limitToInt16(quiet, new Int16Array(N));
    expect(Math.abs(toneDbfs(q16, 440) - -12)).toBeLessThan(0.5);
    // Below about -6 dBFS the level is preserved within 3 dB.
    const mid = sine(N, 440, -6);
    expect(Math.abs(toneDbfs(softLimit(mid, new Float32Array(N)), 440) - -6)).toBeLessThan(3);
  });

  it('mixToInt16 is exact while the frame fits and the soft limiter when it would clip', () => {
    // A -1 dBFS tone (peaks over the -6 dBFS knee) fits: every int16 comes back exactly.
    const pcm = sineInt16(N, 440, -1);
    const f = int16ToFloat(pcm, new Float32Array(N));
    const out = new Int16Array(N);
    expect(mixToInt16(f, out)).toBe(false);
    expect(Array.from(out)).toEqual(Array.from(pcm));
    // The extremes of int16 too (-32768 reads as clipping: the limiter, never a wrap).
    const edges = Float32Array.from([32767 / 32768, -32767 / 32768, 0, 1 / 32768]);
    const e16 = new Int16Array(4);
    expect(mixToInt16(edges, e16)).toBe(false);
    expect(Array.from(e16)).toEqual([32767, -32767, 0, 1]);
    // Two -3 dBFS talkers overlapping clip: the frame goes through the limiter, as limitToInt16.
    const loud = sumFrames([sine(N, 300, -3), sine(N, 700, -3)], 2, new Float32Array(N));
    const lim = new Int16Array(N);
    expect(mixToInt16(loud, lim)).toBe(true);
    expect(Array.from(lim)).toEqual(Array.from(limitToInt16(loud, new Int16Array(N))));
  });

  it('is bounded, monotonic and odd for any input (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -1000, max: 1000, noNaN: true }), { minLength: 2, maxLength: 64 }),
        (xs) => {
          const input = Float32Array.from(xs).sort();
          const out = softLimit(input, new Float32Array(input.length));
          for (let i = 0; i < out.length; i++) {
            expect(Math.abs(out[i]!)).toBeLessThanOrEqual(1);
            if (Math.abs(input[i]!) <= 0.5) expect(out[i]).toBe(input[i]);
            if (i > 0) expect(out[i]!).toBeGreaterThanOrEqual(out[i - 1]!);
          }
          const neg = softLimit(
            input.map((v) => -v),
            new Float32Array(input.length),
          );
          for (let i = 0; i < out.length; i++) expect(neg[i]).toBeCloseTo(-out[i]!, 6);
        },
      ),
    );
  });

  it('limitToInt16 is softLimit then floatToInt16, sample for sample, and never wraps (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.float({ min: -1000, max: 1000, noNaN: true }), { minLength: 1, maxLength: 64 }),
        (xs) => {
          const input = Float32Array.from(xs);
          const fused = limitToInt16(input, new Int16Array(input.length));
          const twoStep = floatToInt16(
            softLimit(input, new Float32Array(input.length)),
            new Int16Array(input.length),
          );
          expect(Array.from(fused)).toEqual(Array.from(twoStep));
          for (let i = 0; i < input.length; i++) if (input[i]! >= 1e-4) expect(fused[i]).toBeGreaterThan(0);
        },
      ),
    );
  });

  it('converts between float and Int16', () => {
    const f = Float32Array.of(0, 0.5, -0.5, 1, -1, 2, -2);
    expect(Array.from(floatToInt16(f, new Int16Array(7)))).toEqual([
      0, 16384, -16383, 32767, -32767, 32767, -32768,
    ]);
    const back = int16ToFloat(Int16Array.of(0, 16384, -32768), new Float32Array(3));
    expect(Array.from(back)).toEqual([0, 0.5, -1]);
  });
});
