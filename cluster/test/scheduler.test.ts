import { describe, expect, it } from 'vitest';
import { TickScheduler } from '../src/voice/scheduler.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TickScheduler', () => {
  it('cuts a frame into at most one phase per millisecond (the clock period is never under 1 ms)', () => {
    const ten = new TickScheduler(10, 16);
    expect(ten.slotCount).toBe(10);
    expect(ten.slotMs).toBe(1);
    expect(new TickScheduler(20, 16).slotCount).toBe(16);
    expect(() => new TickScheduler(20, 0)).toThrow(TypeError);
  });

  it('spreads tasks over phase slots and ticks each once per frame', async () => {
    const s = new TickScheduler(20, 8);
    const counts = new Array<number>(16).fill(0);
    const handles = counts.map((_, i) => s.add({ due: () => void counts[i]!++ }));
    const slots = handles.map((h) => h.slot);
    // Least loaded first: 16 tasks over 8 slots is 2 per slot.
    for (let k = 0; k < 8; k++) expect(slots.filter((x) => x === k)).toHaveLength(2);
    await sleep(500);
    s.close();
    for (const c of counts) {
      expect(c).toBeGreaterThanOrEqual(20);
      expect(c).toBeLessThanOrEqual(26);
    }
  });

  it('moves a task earlier, never into a crowded slot, and stops ticking removed tasks', async () => {
    const s = new TickScheduler(20, 8);
    const a = s.add({ due: () => {} });
    const b = s.add({ due: () => {} });
    expect([a.slot, b.slot]).toEqual([0, 1]);
    expect(b.advance(1)).toBe(1);
    expect(b.slot).toBe(0);
    // Slot 0 now holds 2 tasks, the cap for 3 tasks over 8 slots (ceil(3/8)+1): c may not join it.
    const c = s.add({ due: () => {} });
    expect(c.slot).toBe(1);
    expect(c.advance(1)).toBe(0);
    let ticks = 0;
    const d = s.add({ due: () => void ticks++ });
    await sleep(100);
    d.remove();
    const after = ticks;
    await sleep(100);
    expect(after).toBeGreaterThan(2);
    expect(ticks).toBe(after);
    // Tasks a, b, c remain: the clock still runs; once all are removed it stops (no idle wake-ups).
    expect(s.running).toBe(true);
    for (const h of [a, b, c]) h.remove();
    expect(s.running).toBe(false);
    s.close();
  });

  it('runs afterRun once per wake-up, after the work its tasks deferred with setImmediate (as nact does)', async () => {
    const events: string[] = [];
    const s = new TickScheduler(20, 2, undefined, 'timer', () => events.push('after'));
    // Two tasks in one slot, two in the other: each wake-up runs one slot.
    for (const name of ['a', 'b', 'c', 'd']) s.add({ due: () => void setImmediate(() => events.push(name)) });
    // Ten wake-ups (100 ms unloaded; longer on a loaded machine, whose late wake-ups run both slots).
    for (let t = 0; t < 300 && events.filter((e) => e === 'after').length < 10; t++) await sleep(10);
    s.close();
    const wakes = events
      .join(' ')
      .split('after')
      .filter((w) => w.trim() !== '');
    expect(wakes.length).toBeGreaterThanOrEqual(10);
    // Every wake-up's deferred work comes before its 'after' (a late wake-up may run both slots).
    for (const w of wakes) expect(w.trim()).toMatch(/^(a c|b d)( (a c|b d))?$/);
    expect(events.at(-1)).toBe('after');
  });
});
