import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { asChannelId } from '@voice/protocol';
import {
  ADVANCE_INTERVAL_MS,
  ADVANCE_WITHHELD_REASONS,
  TimingAdvance,
  advanceFor,
  forgetPhases,
  type AdvanceOrder,
  type AdvanceWithheld,
  type AdvisedMember,
} from '../src/voice/advance.js';
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

describe('ArrivalPhases on a line (the advance: holds less the frames the buffer means to hold)', () => {
  it('keeps values as recorded, negative or over a frame, and reads plain percentiles', () => {
    const ph = new ArrivalPhases(F, 8, false);
    // A buffer that took the tick after its arrivals' (hold 19.6-20.5 ms, needing 3): not "around
    // the tick" as on the circle, but a frame early.
    for (const v of [19.6, 20.5, 19.8, 20.1, 20.3]) ph.record(v);
    const out = new Float64Array(3);
    expect(ph.percentiles([2, 50, 98], out)).toBe(true);
    expect([...out]).toEqual([19.6, 20.1, 20.5]);
    // So the advance sends it later (by 16.85 ms: its holds then sit 2.75-3.65 ms before the tick)
    // where the circle would send it earlier, a frame more hold.
    expect(advanceFor(out[0]!, out[1]!, out[2]!, F, 2)).toBeCloseTo(16.85, 9);
    ph.reset();
    ph.record(-0.4); // held less than its look-ahead frame asks
    ph.record(45); // two frames more than meant
    expect(ph.percentiles([0, 100], out)).toBe(true);
    expect([out[0], out[1]]).toEqual([-0.4, 45]);
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
    // Members whose jitter buffer asks a 2 ms margin before a pop: the lead is that plus 0.5 ms,
    // so a buffer that starts afresh takes the same tick (with 1 ms it would take the next one).
    expect(advanceFor(10, 10.4, 11, F, 2)).toBeCloseTo(7.3, 9);
    expect(advanceFor(1.5, 1.7, 2.2, F, 2)).toBeCloseTo(-1.1, 9);
    // Whole frames of hold are the buffer's: the shift is taken modulo a frame, as senders do.
    expect(advanceFor(41, 41.2, 41.6, F, 2)).toBeCloseTo(18.4, 9);
    // ... at most a quarter frame.
    expect(advanceFor(6, 6.4, 7, 10, 2)).toBeCloseTo(3.5, 9);
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

describe('TimingAdvance.advise', () => {
  const member = (phases: number[], missed = 0): AdvisedMember => {
    const phase = new ArrivalPhases(F, 128);
    for (const p of phases) phase.record(p);
    return { phase, missedInRound: missed, advanceSeq: 0, advancedAt: Number.NEGATIVE_INFINITY };
  };
  /** `n` arrivals around `at` ms before the tick, spread ±0.2 ms. */
  const around = (at: number, n = 60) => Array.from({ length: n }, (_, i) => at - 0.2 + (0.4 * i) / n);
  const channel = (members: AdvisedMember[]) => ({
    id: asChannelId('c_AAAAAAAAAAAA'),
    settings: { frameMs: F },
    members,
  });
  /** A zeroed withheld tally, and its non-zero reasons. */
  const tally = () =>
    Object.fromEntries(ADVANCE_WITHHELD_REASONS.map((r) => [r, 0])) as Record<AdvanceWithheld, number>;
  const reasons = (t: Record<AdvanceWithheld, number>) =>
    Object.fromEntries(Object.entries(t).filter(([, n]) => n > 0));

  it('orders only the member off the tick, once two members send; numbers orders; clears the round', () => {
    const onTick = member(around(1.5));
    const off = member(around(11));
    const orders: AdvanceOrder<AdvisedMember>[] = [];
    const why = tally();
    expect(new TimingAdvance().advise(channel([onTick, off]), 10_000, (o) => orders.push(o), why)).toBe(1);
    expect(reasons(why)).toEqual({ on_tick: 1 });
    expect(orders).toHaveLength(1);
    expect(orders[0]!.member).toBe(off);
    expect(orders[0]!.seq).toBe(1);
    // Latest arrival 10.8 ms before the tick, spread 0.2: to 1.1 ms before it.
    expect(orders[0]!.shiftUs).toBeGreaterThan(9_600);
    expect(orders[0]!.shiftUs).toBeLessThan(9_800);
    expect(onTick.phase.count + off.phase.count).toBe(0);
  });

  it('leaves a lone sender to the tick alignment, and a member with too few arrivals', () => {
    const orders: unknown[] = [];
    const adv = new TimingAdvance();
    const why = tally();
    expect(adv.advise(channel([member(around(11))]), 10_000, (o) => orders.push(o), why)).toBe(0);
    expect(reasons(why)).toEqual({ lone_sender: 1 });
    const why2 = tally();
    expect(
      adv.advise(channel([member(around(11)), member(around(1.5), 0), member([])]), 10_000, () => {}, why2),
    ).toBe(1);
    // A member that sent nothing is not counted.
    expect(reasons(why2)).toEqual({ on_tick: 1 });
    const why3 = tally();
    expect(
      adv.advise(channel([member(around(11)), member(around(1.5, 10))]), 10_000, (o) => orders.push(o), why3),
    ).toBe(0);
    expect(reasons(why3)).toEqual({ lone_sender: 1, few_samples: 1 });
    expect(orders).toHaveLength(0);
  });

  it('leaves a member whose arrivals spread over half a frame, and says so', () => {
    const why = tally();
    const wide = member([...around(2, 20), ...around(9, 20), ...around(16, 20)]);
    expect(new TimingAdvance().advise(channel([member(around(1.5)), wide]), 10_000, () => {}, why)).toBe(0);
    expect(reasons(why)).toEqual({ on_tick: 1, spread: 1 });
  });

  it('sends a member at most one order per 2 s, and a later send not after it missed its tick', () => {
    const adv = new TimingAdvance();
    const off = member(around(11));
    const base = member(around(1.5));
    const ch = channel([base, off]);
    const why = tally();
    expect(adv.advise(ch, 10_000, () => {}, why)).toBe(1);
    // Still off (it ignores the orders): reminded only once the interval has passed.
    for (const p of around(11)) off.phase.record(p);
    for (const p of around(1.5)) base.phase.record(p);
    expect(adv.advise(ch, 10_000 + ADVANCE_INTERVAL_MS - 1, () => {}, why)).toBe(0);
    expect(reasons(why)).toEqual({ on_tick: 2, interval: 1 });
    for (const p of around(11)) off.phase.record(p);
    for (const p of around(1.5)) base.phase.record(p);
    const orders: AdvanceOrder<AdvisedMember>[] = [];
    expect(adv.advise(ch, 10_000 + 2 * ADVANCE_INTERVAL_MS, (o) => orders.push(o), why)).toBe(1);
    expect(orders[0]!.seq).toBe(2);
    // Missed a tick this round: no later send; an earlier one (arrivals just after the tick) goes.
    const late = member(around(11), 3);
    const straddling = member([...around(0.1, 30), ...around(19.8, 30)], 3);
    const got: AdvanceOrder<AdvisedMember>[] = [];
    const why2 = tally();
    expect(adv.advise(channel([late, straddling]), 20_000, (o) => got.push(o), why2)).toBe(1);
    expect(reasons(why2)).toEqual({ missed: 1 });
    expect(got[0]!.member).toBe(straddling);
    expect(got[0]!.shiftUs).toBeLessThan(-1_000);
    expect(late.missedInRound).toBe(0);
  });

  it('forgetPhases voids a round (the tick itself moved)', () => {
    const m = member(around(11), 2);
    const why = tally();
    forgetPhases(channel([m, member([])]), why);
    expect(reasons(why)).toEqual({ tick_moved: 1 });
    expect(m.phase.count).toBe(0);
    expect(m.missedInRound).toBe(0);
  });
});
