import { describe, expect, it } from 'vitest';
import { JitterBuffer, JitterPop } from '../src/index.js';

/**
 * Two packets lost in a row at a listener that pops a frame 10 ms ahead of its play time (a
 * time-stretching playout pops each packet when it will play, after what its sync buffer holds).
 * The buffer keeps one frame of look-ahead (RED), so it is 28 ms behind the arrivals in play time
 * but only 18 ms at the instant it pops: the packet after the two lost ones (carrying the second
 * one's copy) comes 2 ms after the second one's pop. Frames arrive at 20k ms; the pop for slot j
 * runs at 20j + 18 and plays at 20j + 28.
 */
function run(dropLateCopies: boolean) {
  const jb = new JitterBuffer({ frameMs: 20, minTargetFrames: 1, marginMs: 3, dropLateCopies });
  jb.lookAhead = 1;
  const pkt = new Uint8Array([1, 2, 3]);
  const lost = new Set([40, 41]);
  const played: { slot: number; seq: number; delay: number }[] = [];
  const events: { at: number; pop?: number; insert?: number }[] = [];
  for (let k = 0; k < 120; k++) {
    events.push({ at: 20 * k, insert: k });
    events.push({ at: 20 * k + 18, pop: k });
  }
  events.sort((a, b) => a.at - b.at);
  for (const e of events) {
    if (e.insert !== undefined) {
      const k = e.insert;
      if (lost.has(k)) continue;
      jb.insert(k, pkt, e.at);
      // RED: each packet carries the frame before; stored only where that frame is missing.
      if (k > 0) jb.insertRedundant(k - 1, pkt, pkt.length);
    } else {
      const r = jb.pop(e.at + 10);
      if (r === JitterPop.PACKET) played.push({ slot: e.pop!, seq: jb.packetSeq, delay: jb.stats().delayMs });
    }
  }
  return { played, stats: jb.stats() };
}

describe('JitterBuffer: the copy that rides on the packet after a double loss', () => {
  it('with dropLateCopies, resumes at that packet on the same schedule: no frame later, no drop after', () => {
    const { played, stats } = run(true);
    const at = (seq: number) => played.find((p) => p.seq === seq);
    const before = at(39)!;
    const after = at(42)!;
    expect(at(41)).toBeUndefined(); // its copy came after its turn: dropped, counted
    expect(stats.staleDrops).toBe(1);
    // Frame 42 plays as many slots after 39 as it is frames after it: the schedule held.
    expect(after.slot - before.slot).toBe(42 - 39);
    expect(after.delay).toBeCloseTo(before.delay, 6);
    // And every later frame at its slot, none dropped to catch up.
    for (const p of played.filter((x) => x.seq > 42)) expect(p.slot - p.seq).toBe(before.slot - 39);
    expect(stats.overflowDrops).toBe(0);
  });

  it('without it (a server mixing at its tick), plays the copy a frame later: the schedule slips by one', () => {
    const { played } = run(false);
    const at = (seq: number) => played.find((p) => p.seq === seq)!;
    expect(at(41).slot - at(39).slot).toBe(41 - 39 + 1);
  });
});
