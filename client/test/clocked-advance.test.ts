import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, Ticker, type OpusFactory } from '@voice/media';
import { Sender } from '../src/voice/sender.js';
import { ClockedSource } from '../src/voice/sources.js';

/**
 * A timing advance on a device-driven sender (the desktop app's capture, `ClockedSource`): the
 * instant each frame is cut moves in the device stream, the frames stay the stream's consecutive
 * samples and the timestamps one frame apart. The device is the one fake: it hands over blocks of
 * a known signal, irregular ones (441, 480, 519 samples) as resampling sound cards do; the
 * sender, its Opus encoder and the source are the product's.
 */

let opus: OpusFactory;
const senders: Sender[] = [];

beforeAll(async () => {
  opus = await createOpus();
});
afterEach(() => {
  for (const s of senders.splice(0)) s.close();
});

const F = 960; // 20 ms at 48 kHz
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const BLOCKS = [441, 480, 519, 480];

/** The device stream: a sample no other position repeats within the test (a ramp, folded). */
const sampleAt = (i: number): number => ((i * 37) % 60_001) - 30_000;

interface Out {
  ts: number;
  /** The frame encoded (copied from the sender after it encoded it). */
  pcm: Int16Array;
  /** Device samples handed over when it was sent: before the block it went in, and after it. */
  from: number;
  to: number;
}

/** A device feeding `src`, and what the sender sent, with where in the device stream it went. */
function rig() {
  const src = new ClockedSource();
  const out: Out[] = [];
  const at = { from: 0, to: 0 };
  const s: Sender = new Sender({
    frameMs: 20,
    encoder: opus.createEncoder({ frameSamples: F }),
    source: src,
    send: (_flags, ts) => {
      out.push({ ts, pcm: s.lastFrame!.slice(), from: at.from, to: at.to });
      return out.length - 1;
    },
    firstTimestamp: 0,
    muted: () => false,
    sentLog: null,
  });
  senders.push(s);
  s.start();
  let pos = 0;
  let b = 0;
  return {
    src,
    s,
    out,
    get pos() {
      return pos;
    },
    /** The device hands over blocks until `samples` more of its stream are in. */
    run(samples: number): void {
      const end = pos + samples;
      while (pos < end) {
        const n = Math.min(BLOCKS[b++ % BLOCKS.length]!, end - pos);
        const block = new Int16Array(n);
        for (let i = 0; i < n; i++) block[i] = sampleAt(pos + i);
        at.from = pos;
        at.to = pos + n;
        src.deliver(block, performance.now(), true);
        pos += n;
      }
      at.from = at.to = pos;
    },
  };
}

describe('timing advance on a device-driven (clocked) sender', () => {
  it('moves the cut in the device stream by the least hold; frames and timestamps stay continuous', () => {
    const r = rig();
    /** The hold (samples) the test's advances put in force, and from which frame on. */
    const holds: { frame: number; hold: number }[] = [{ frame: 0, hold: 0 }];
    const advance = (ms: number, hold: number): void => {
      const before = r.out.length;
      expect(r.s.advance(ms)).toBe(true);
      expect(r.src.hold).toBe(hold);
      // A frame already waiting goes at the new hold: now, when the hold got shorter than its wait.
      holds.push({ frame: before, hold });
    };
    r.run(8 * F + 300);
    advance(5, 240); // 5 ms later
    r.run(8 * F - 150);
    // 3 ms earlier: frame 15, complete 150 samples ago and due at 240, goes now.
    advance(-3, 96);
    r.run(8 * F + 500);
    // 7 ms earlier than 2 ms of hold would be before the frame is complete: the same phase is 13 ms
    // of hold (a later send by 11 ms), never a frame or more.
    advance(-7, 720);
    r.run(8 * F);
    const sent = r.out;
    expect(sent.length).toBeGreaterThan(30);
    // Every frame is the device stream's next 960 samples: none lost or repeated, across the moves.
    sent.forEach((o, n) => {
      for (let i = 0; i < F; i++)
        if (o.pcm[i] !== sampleAt(n * F + i)) expect(o.pcm[i], `frame ${n}`).toBe(sampleAt(n * F + i));
    });
    // Timestamps one frame apart: no gap, no overlap for the server's buffer to see as a slip.
    sent.forEach((o, n) => expect(o.ts).toBe(n * F));
    // Each frame went once `hold` samples of the stream had come in after its last: in the block
    // that brought that sample, or, when a shorter hold made it due, at the advance itself.
    sent.forEach((o, n) => {
      let hold = 0;
      for (const h of holds) if (h.frame <= n) hold = h.hold;
      const due = (n + 1) * F + hold; // samples in when it is due
      if (o.from === o.to) {
        // Sent by the advance to 96 samples: due by then, and not yet due at the hold before (240).
        expect(n).toBe(15);
        expect(o.from).toBeGreaterThanOrEqual(due);
        expect(o.from).toBeLessThan((n + 1) * F + 240);
      } else {
        expect(o.from, `frame ${n}`).toBeLessThan(due);
        expect(o.to, `frame ${n}`).toBeGreaterThanOrEqual(due);
      }
    });
    expect(sent.filter((o) => o.from === o.to)).toHaveLength(1);
    expect(r.s.stats()).toMatchObject({ advances: 3, advancesIgnored: 0 });
    expect(r.s.stats().advancedMs).toBeCloseTo(5 - 3 + 13, 9);
  });

  it('a new sender starts on the device phase; a pause is a gap in timestamps, not in the cut', () => {
    const r = rig();
    r.run(3 * F);
    r.s.advance(10);
    expect(r.src.hold).toBe(480);
    r.s.close();
    // Another sender (a new binding) on the same device: no hold until it is advanced itself.
    const r2 = rig();
    expect(r2.src.hold).toBe(0);
    r2.run(2 * F);
    expect(r2.out.map((o) => o.ts)).toEqual([0, F]);
    expect(() => r2.s.advance(Number.POSITIVE_INFINITY)).toThrow(TypeError);
  });

  it('a hold shorter than the device period goes by the device clock, not at the next block', async () => {
    // A sound card handing over 10 ms blocks on its own clock (a drift-free timer here): a 20 ms
    // frame completes every other block. After a 4 ms advance each frame goes 4 ms after its last
    // block, when the device captures the 192nd sample after it, not with the next block 10 ms later.
    const src = new ClockedSource();
    const sent: { ts: number; at: number }[] = [];
    const s = new Sender({
      frameMs: 20,
      encoder: opus.createEncoder({ frameSamples: F }),
      source: src,
      send: (_flags, ts) => sent.push({ ts, at: performance.now() }) - 1,
      firstTimestamp: 0,
      muted: () => false,
      sentLog: null,
    });
    senders.push(s);
    s.start();
    /** When each block that completed a frame came, by the frame it completed. */
    const completed: number[] = [];
    let pos = 0;
    const block = new Int16Array(480);
    const device = new Ticker({
      periodMs: 10,
      maxLatePeriods: 10,
      onTick: () => {
        for (let i = 0; i < 480; i++) block[i] = sampleAt(pos + i);
        pos += 480;
        if (pos % F === 0) completed[pos / F - 1] = performance.now();
        src.deliver(block, performance.now(), true);
      },
    });
    device.start();
    try {
      await sleep(200);
      expect(s.advance(4)).toBe(true);
      expect(src.hold).toBe(192);
      const from = sent.length;
      await sleep(500);
      const lag = (a: number, b: number): number => {
        const d = sent
          .slice(a, b)
          .map((p, i) => p.at - completed[a + i]!)
          .sort((x, y) => x - y);
        return d[d.length >> 1]!;
      };
      expect(sent.length - from).toBeGreaterThan(15);
      // Before: sent in the block that completed it. After: about 4 ms later (a timer: up to a ms
      // early, as its delay is whole ms, and late by a ms or so, more on a loaded machine; the
      // next block would be 10 ms).
      expect(lag(1, from)).toBeLessThan(1.5);
      expect(lag(from + 1, sent.length)).toBeGreaterThan(2.5);
      expect(lag(from + 1, sent.length)).toBeLessThan(8);
      sent.forEach((p, n) => expect(p.ts).toBe(n * F));
    } finally {
      device.close();
    }
  });
});
