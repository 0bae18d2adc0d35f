import { describe, expect, it } from 'vitest';
import { SHARED_SLOT_TASKS, TickScheduler, type ScheduledHandle } from '../src/voice/scheduler.js';

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

  it('runs afterRun once per wake-up, right after its tasks, one loop iteration after the wake', async () => {
    const events: string[] = [];
    const s = new TickScheduler(20, 2, undefined, 'timer', () => events.push('after'));
    // Two tasks in one slot, two in the other: each wake-up runs one slot.
    for (const name of ['a', 'b', 'c', 'd']) s.add({ due: () => void events.push(name) });
    // Ten wake-ups (100 ms unloaded; longer on a loaded machine, whose late wake-ups run both slots).
    for (let t = 0; t < 300 && events.filter((e) => e === 'after').length < 10; t++) await sleep(10);
    s.close();
    const wakes = events
      .join(' ')
      .split('after')
      .filter((w) => w.trim() !== '');
    expect(wakes.length).toBeGreaterThanOrEqual(10);
    for (const w of wakes) expect(w.trim()).toMatch(/^(a c|b d)( (a c|b d))?$/);
    expect(events.at(-1)).toBe('after');
  });

  it('tasks that share wake the clock once a frame for all of them, each still ticking once per frame', async () => {
    let wakes = 0;
    const s = new TickScheduler(20, 8, undefined, 'timer', () => void wakes++);
    const counts = new Array<number>(8).fill(0);
    const handles: ScheduledHandle[] = [];
    for (let i = 0; i < 8; i++)
      handles.push(
        s.add({
          due: () => {
            counts[i]!++;
            handles[i]!.share(true);
          },
        }),
      );
    // One per slot until they run; then all in one.
    expect(new Set(handles.map((h) => h.slot)).size).toBe(8);
    await sleep(60);
    expect(handles.every((h) => h.shared)).toBe(true);
    expect(new Set(handles.map((h) => h.slot)).size).toBe(1);
    wakes = 0;
    counts.fill(0);
    await sleep(500);
    s.close();
    // 25 frames: 25 wake-ups (fewer on a loaded machine, whose late wake-ups catch up in one), not 8 x 25.
    expect(wakes).toBeLessThanOrEqual(30);
    for (const c of counts) {
      expect(c).toBeGreaterThanOrEqual(20);
      expect(c).toBeLessThanOrEqual(26);
    }
  });

  for (const wake of ['timer', 'thread', 'timerfd'] as const)
    it(`a sleeping task is not called and costs no wake-up; woken, it runs in its slot on the same grid (${wake})`, async () => {
      let wakes = 0;
      const s = new TickScheduler(20, 8, undefined, wake, () => void wakes++);
      const dues: number[][] = [[], []];
      const handles = [0, 1].map((i) => s.add({ due: (at) => void dues[i]!.push(at) }));
      expect(handles[0]!.slot).not.toBe(handles[1]!.slot);
      await sleep(100);
      const slot0 = handles[0]!.slot;
      const phase0 = dues[0]!.at(-1)! % 20;
      handles[0]!.sleep(true);
      expect(handles[0]!.asleep).toBe(true);
      const n0 = dues[0]!.length;
      wakes = 0;
      await sleep(300);
      // The other task alone wakes the clock: once a frame (15 frames), not twice.
      expect(dues[0]!.length).toBe(n0);
      expect(wakes).toBeGreaterThanOrEqual(10);
      expect(wakes).toBeLessThanOrEqual(17);
      // Both asleep: not one wake-up.
      handles[1]!.sleep(true);
      await sleep(20); // a wake-up already on its way
      wakes = 0;
      const n1 = dues[1]!.length;
      await sleep(300);
      expect(wakes).toBe(0);
      expect(dues[1]!.length).toBe(n1);
      expect(s.running).toBe(true);
      // Woken: the same slot, due on the same grid as before, and no frame made up for the sleep.
      handles[0]!.sleep(false);
      await sleep(110);
      expect(handles[0]!.slot).toBe(slot0);
      const resumed = dues[0]!.slice(n0);
      expect(resumed.length).toBeGreaterThanOrEqual(3);
      expect(resumed.length).toBeLessThanOrEqual(6);
      for (const at of resumed) {
        const d = (((at - phase0) % 20) + 20) % 20;
        expect(Math.min(d, 20 - d)).toBeLessThan(0.1);
      }
      for (let i = 1; i < resumed.length; i++) expect(resumed[i]! - resumed[i - 1]!).toBeCloseTo(20, 1);
      s.close();
    });

  it('a sleeping task still holds its slot: tasks added meanwhile go elsewhere, and it wakes into a slot of its own', () => {
    const s = new TickScheduler(20, 8, undefined, 'timer');
    const sleeper = s.add({ due: () => undefined });
    sleeper.sleep(true);
    const others = Array.from({ length: 7 }, () => s.add({ due: () => undefined }));
    const slots = others.map((h) => h.slot);
    // Eight tasks in eight slots: none of the newcomers took the sleeper's.
    expect(slots).not.toContain(sleeper.slot);
    expect(new Set(slots).size).toBe(7);
    sleeper.sleep(false);
    expect(new Set([sleeper.slot, ...slots]).size).toBe(8);
    // Removed while asleep, its slot is free again for the next one.
    sleeper.sleep(true);
    const slot = sleeper.slot;
    sleeper.remove();
    expect(s.add({ due: () => undefined }).slot).toBe(slot);
    s.close();
  });

  it('a task moved to a slot still to come in the frame skips it once; one that stops sharing gets a slot of its own', async () => {
    const s = new TickScheduler(20, 8);
    const dues: number[] = [];
    let calls = 0;
    const h: ScheduledHandle[] = [];
    // a (slot 0) shares on its second tick, after b (slot 1) made slot 1 the shared one: a moves
    // from slot 0 to slot 1, later in the same frame, and must not tick again in it.
    h.push(
      s.add({
        due: (dueAt) => {
          dues.push(dueAt);
          if (++calls === 2) h[0]!.share(true);
        },
      }),
    );
    h.push(s.add({ due: () => h[1]!.share(true) }));
    expect([h[0]!.slot, h[1]!.slot]).toEqual([0, 1]);
    for (let t = 0; t < 100 && dues.length < 4; t++) await sleep(10);
    expect(h[0]!.slot).toBe(1);
    // From its tick in slot 0 to its next, in slot 1: a frame and a slot (2.5 ms), not one slot.
    expect(dues[2]! - dues[1]!).toBeGreaterThanOrEqual(20);
    // A third task goes to an empty slot, not the shared one; a sharing task that stops gets one too.
    const c = s.add({ due: () => {} });
    expect(c.slot).not.toBe(1);
    h[0]!.share(false);
    expect(h[0]!.shared).toBe(false);
    expect([1, c.slot]).not.toContain(h[0]!.slot);
    // The last one sharing that stops stays where it is (nobody crowds it).
    h[1]!.share(false);
    expect(h[1]!.slot).toBe(1);
    s.close();
  });

  it('puts at most SHARED_SLOT_TASKS in one shared slot (the last of them waits for the others)', async () => {
    const s = new TickScheduler(20, 8);
    const handles: ScheduledHandle[] = [];
    const n = SHARED_SLOT_TASKS + 4;
    for (let i = 0; i < n; i++) handles.push(s.add({ due: () => handles[i]!.share(true) }));
    for (let t = 0; t < 100 && !handles.every((h) => h.shared); t++) await sleep(10);
    s.close();
    const per = new Map<number, number>();
    for (const h of handles) per.set(h.slot, (per.get(h.slot) ?? 0) + 1);
    expect([...per.values()].sort((a, b) => b - a)).toEqual([SHARED_SLOT_TASKS, 4]);
  });
});
