import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { SenderTimeline, TIMELINE_JUMP_MS } from '../src/index.js';

const F = 960; // 20 ms

describe('SenderTimeline (README 8.1, 8.8)', () => {
  it('passes a continuing timeline through unchanged, across the uint32 wrap and through pauses', () => {
    const t = new SenderTimeline();
    const start = 0xffff_ffff - 5 * F;
    for (let i = 0; i < 20; i++)
      expect(t.map((start + i * F) >>> 0, i === 0, i * 20, F)).toBe((start + i * F) >>> 0);
    // A 3 s pause whose timestamps advanced with the time (RTP): no restart.
    const after = (start + 19 * F + 150 * F) >>> 0;
    expect(t.map(after, true, 19 * 20 + 3000, F)).toBe(after);
    expect(t.restarts).toBe(0);
  });

  it('keeps a reordered packet and a talkspurt start overtaken by one frame where they are', () => {
    const t = new SenderTimeline();
    t.map(10 * F, true, 0, F);
    t.map(12 * F, false, 40, F);
    expect(t.map(11 * F, false, 41, F)).toBe(11 * F); // reordered
    expect(t.map(11 * F, true, 42, F)).toBe(11 * F); // MARKER one frame behind
    expect(t.map((12 * F - 500 * 48) >>> 0, false, 43, F)).toBe((12 * F - 500 * 48) >>> 0); // 500 ms late: stays late
    expect(t.restarts).toBe(0);
  });

  it('continues a timeline restarted behind (MARKER) after the newest frame by the time that passed', () => {
    const t = new SenderTimeline();
    for (let i = 0; i < 40; i++) t.map(i * F, i === 0, i * 20, F);
    // 400 ms after frame 39 the sender starts again at 0: 39 frames behind.
    const at = 39 * 20 + 400;
    expect(t.map(0, true, at, F)).toBe(39 * F + 20 * F);
    expect(t.restarts).toBe(1);
    // Its next packets follow on the same offset, and nothing else restarts.
    for (let i = 1; i < 10; i++) expect(t.map(i * F, false, at + i * 20, F)).toBe((59 + i) * F);
    expect(t.restarts).toBe(1);
    // Without MARKER, two frames behind is reordering, not a restart.
    expect(t.map(5 * F, false, at + 200, F)).toBe(64 * F);
    expect(t.restarts).toBe(1);
  });

  it('takes a jump of more than a second either way, MARKER or not, as a new timeline of at least one frame on', () => {
    const t = new SenderTimeline();
    t.map(1_000_000, false, 0, F);
    const ahead = (1_000_000 + (TIMELINE_JUMP_MS + 100) * 48) >>> 0;
    expect(t.map(ahead, false, 20, F)).toBe(1_000_000 + F);
    const behind = (1_000_000 - (TIMELINE_JUMP_MS + 100) * 48) >>> 0;
    expect(t.map(behind, false, 21, F)).toBe(1_000_000 + 2 * F);
    expect(t.restarts).toBe(2);
    t.reset();
    expect(t.restarts).toBe(0);
    expect(t.map(7, false, 30, F)).toBe(7);
  });

  it('never maps a MARKER packet behind the newest frame by two frames or more (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            step: fc.integer({ min: -300, max: 300 }),
            marker: fc.boolean(),
            dt: fc.integer({ min: 0, max: 2000 }),
          }),
          { minLength: 1, maxLength: 200 },
        ),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (steps, start) => {
          const t = new SenderTimeline();
          let ts = start;
          let now = 0;
          let newest = t.map(ts, true, now, F);
          for (const s of steps) {
            ts = (ts + s.step * F) >>> 0;
            now += s.dt;
            const m = t.map(ts, s.marker, now, F);
            const d = (m - newest) | 0;
            if (s.marker) expect(d).toBeGreaterThan(-2 * F);
            expect(d).toBeGreaterThanOrEqual(-TIMELINE_JUMP_MS * 48);
            if (d > 0) newest = m;
          }
        },
      ),
      { seed: 8108, numRuns: 300 },
    );
  });
});
