import { describe, expect, it } from 'vitest';
import { EarlyTicks } from '../src/voice/early-tick.js';

/** The rules of mix on completion (early-tick.ts) on a made-up clock: the schedule keeps time. */
const FRAME = 20;

describe('EarlyTicks', () => {
  it('runs a frame early once, and skips that frame at its scheduled wake-up', () => {
    const e = new EarlyTicks(FRAME);
    expect(e.tryEarly(-5), 'nothing scheduled yet: no phase to run before').toBe(0);
    expect(e.scheduled(0, 0.2)).toBe(1);
    expect(e.tryEarly(16)).toBe(20);
    expect(e.tryEarly(17), 'never twice for one frame').toBe(0);
    expect(e.scheduled(20, 20.3), 'that frame ran already').toBe(0);
    expect(e.scheduled(40, 40.1)).toBe(1);
  });

  it('never sooner than a frame less a quarter after the last tick ran, nor once due', () => {
    const e = new EarlyTicks(FRAME);
    expect(e.scheduled(0, 3)).toBe(1); // ran 3 ms late
    expect(e.tryEarly(17.9)).toBe(0);
    expect(e.tryEarly(18.1)).toBe(20);
    const f = new EarlyTicks(FRAME);
    f.scheduled(0, 0);
    expect(f.tryEarly(20), 'due: the scheduled wake-up runs it').toBe(0);
    expect(new EarlyTicks(FRAME, false).tryEarly(10), 'off').toBe(0);
  });

  it('a frame run early whose slot then moved earlier is still skipped', () => {
    const e = new EarlyTicks(FRAME);
    e.scheduled(0, 0);
    expect(e.tryEarly(15)).toBe(20);
    // The alignment moved the channel's slot 12 clock slots (of 1.25 ms) earlier meanwhile.
    expect(e.scheduled(5, 5.1)).toBe(0);
    expect(e.scheduled(25, 25)).toBe(1);
  });

  it('follows the slot when the alignment moves it: the next early tick is due on the new phase', () => {
    const e = new EarlyTicks(FRAME);
    e.scheduled(0, 0);
    expect(e.tryEarly(15)).toBe(20);
    // Moved 3 slots (of 1.25 ms) earlier: the scheduler's wake-up for that frame comes at 16.25.
    expect(e.scheduled(16.25, 16.3)).toBe(0);
    // Every frame then runs early: each is due a frame after the scheduler's, not after the old chain's.
    expect(e.tryEarly(33)).toBe(36.25);
    expect(e.scheduled(36.25, 36.3)).toBe(0);
    expect(e.tryEarly(53)).toBe(56.25);
  });

  it('keeps the media clock: one tick per frame period, early or not', () => {
    const e = new EarlyTicks(FRAME);
    let ticks = 0;
    let early = 0;
    let phase = 4;
    for (let f = 0; f < 1000; f++) {
      const due = f * FRAME;
      // The frames are in 0-5 ms before the tick is due, or (every 7th frame) not before it.
      if (f % 7 !== 3 && e.tryEarly(due - phase) > 0) early++;
      ticks += e.scheduled(due, due + 0.1);
      phase = (phase * 13 + 5) % 6;
    }
    expect(ticks + early).toBe(1000);
    expect(early, 'most ran early').toBeGreaterThan(500);
  });
});
