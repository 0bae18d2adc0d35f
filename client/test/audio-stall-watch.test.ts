import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StallWatch } from '../src/audio/stall-watch.js';

/** The stall watch on a fake clock: periods every 10 ms, then none; a blocked event loop. */
describe('StallWatch', () => {
  let t = 0;
  const now = (): number => t;
  /** Advances the clock and the timers by `ms`, beating every 10 ms while `beating`. */
  const run = (ms: number, beating: boolean, w: StallWatch): void => {
    for (let i = 0; i < ms / 10; i++) {
      t += 10;
      if (beating) w.beat();
      vi.advanceTimersByTime(10);
    }
  };
  beforeEach(() => {
    vi.useFakeTimers();
    t = 0;
  });
  afterEach(() => vi.useRealTimers());

  it('says nothing while periods come, and once after stallMs without one', () => {
    const stalls: number[] = [];
    const w = new StallWatch({ stallMs: 1000, startMs: 5000, now, onStall: (ms) => stalls.push(ms) });
    w.start();
    run(10_000, true, w);
    expect(stalls).toEqual([]);
    run(990, false, w);
    expect(stalls).toEqual([]);
    run(200, false, w);
    expect(stalls).toHaveLength(1);
    expect(stalls[0]).toBeGreaterThanOrEqual(1000);
    expect(stalls[0]).toBeLessThanOrEqual(1100);
    run(5000, false, w); // once
    expect(stalls).toHaveLength(1);
  });

  it('does not judge the first startMs, then judges a stream that never started', () => {
    const stalls: number[] = [];
    const w = new StallWatch({ stallMs: 1000, startMs: 5000, now, onStall: (ms) => stalls.push(ms) });
    w.start();
    run(4900, false, w);
    expect(stalls).toEqual([]);
    run(200, false, w);
    expect(stalls).toHaveLength(1);
    expect(stalls[0]).toBeGreaterThanOrEqual(5000);
  });

  it('a check that runs late (our event loop blocked) is not a stall; the device then has its window', () => {
    const stalls: number[] = [];
    const w = new StallWatch({ stallMs: 1000, startMs: 100, now, onStall: (ms) => stalls.push(ms) });
    w.start();
    run(500, true, w);
    t += 3000; // the loop was blocked for 3 s: no timer ran, the periods wait behind it
    vi.advanceTimersByTime(100);
    expect(stalls).toEqual([]);
    run(500, true, w); // the queued periods arrive
    expect(stalls).toEqual([]);
    // A dead device after a block is still found.
    t += 3000;
    vi.advanceTimersByTime(100);
    run(1200, false, w);
    expect(stalls).toHaveLength(1);
  });

  it('stop() ends the watch; bad arguments throw TypeError', () => {
    const stalls: number[] = [];
    const w = new StallWatch({ stallMs: 100, startMs: 100, now, onStall: (ms) => stalls.push(ms) });
    w.start();
    w.stop();
    run(1000, false, w);
    expect(stalls).toEqual([]);
    expect(() => new StallWatch({ stallMs: 0, startMs: 1, onStall: () => undefined })).toThrow(TypeError);
    expect(() => new StallWatch({ stallMs: 1, startMs: Number.NaN, onStall: () => undefined })).toThrow(
      TypeError,
    );
  });
});
