import { beforeAll, describe, expect, it } from 'vitest';
import { FramePlayout, createOpus, toneDbfs, type OpusFactory } from '../src/index.js';
import { voiced } from './signals.js';

/**
 * A time-stretched playout with the server's settings (cluster VoiceMember: a 2 ms margin, the
 * excess given back whole, only a frame-late packet a delay peak), pulled at exact 20 ms ticks on a
 * virtual clock: a buffer that a late burst grew is given back to the delay it ran at before, by
 * pitch periods, in loud audio; a clean link at any phase is never stretched.
 */

const N = 960;
const FRAMES = 300;
let opus: OpusFactory;
let packets: Uint8Array[];
let src: Int16Array;

/** `frames` packets of `signal` cut in frames of `n` samples. */
function encode(signal: Int16Array, n: number, frames: number): Uint8Array[] {
  // No in-band FEC: a stall's skipped frame would count as a loss and turn on the FEC look-ahead.
  const enc = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const buf = new Uint8Array(1500);
  const out = Array.from({ length: frames }, (_, f) =>
    buf.slice(0, enc.encode(signal.subarray(f * n, (f + 1) * n), buf)),
  );
  enc.destroy();
  return out;
}

beforeAll(async () => {
  opus = await createOpus();
  src = voiced((FRAMES + 1) * N);
  packets = encode(src, N, FRAMES);
});

/**
 * Plays the packets; packet f arrives at `arrival(f)` (ms), pulls at f * 20 + 10. Returns the
 * output, the playout delay after each pull and the playout's counters.
 */
function play(arrival: (f: number) => number, timeStretch = true, n = N, list = packets) {
  const ms = n / 48;
  const p = new FramePlayout({
    frameSamples: n,
    decoder: opus.createDecoder({ frameSamples: n }),
    timeStretch,
    jitter: { marginMs: 2, stretchKeepMs: 0, stretchGrowthOnly: true, peakMinMs: ms },
  });
  const frames = list.length;
  const order = list.map((_, f) => f).sort((x, y) => arrival(x) - arrival(y) || x - y);
  const out = new Int16Array(frames * n);
  const frame = new Int16Array(n);
  const delays: number[] = [];
  let next = 0;
  for (let t = 0; t < frames; t++) {
    const now = t * ms + ms / 2;
    while (next < order.length && arrival(order[next]!) <= now) {
      const f = order[next++]!;
      p.insert(f, list[f]!, list[f]!.length, arrival(f));
    }
    p.next(now, frame);
    out.set(frame, t * n);
    delays.push(p.jitter.stats().delayMs);
  }
  const st = p.stats();
  const jb = p.jitter.stats();
  p.close();
  return { out, delays, st, jb };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Packets 3 ms before their pull, except those cut in [from, from + stallMs), held until its end. */
const stalled =
  (from: number, stallMs: number, shiftAt = Infinity, shiftMs = 0) =>
  (f: number) => {
    const t = f * 20 + 7 + (f >= shiftAt ? shiftMs : 0);
    return t >= from && t < from + stallMs ? from + stallMs : t;
  };

describe('FramePlayout with the server settings: a grown buffer shrinks back', () => {
  it('never stretches a clean link, at any phase of the arrivals against the pulls', () => {
    for (const phase of [1, 7, 12, 18, 19.5]) {
      const r = play((f) => f * 20 + 10 - phase);
      expect({ phase, acc: r.st.accelerated, exp: r.st.stretchExpanded }).toEqual({ phase, acc: 0, exp: 0 });
      const plain = play((f) => f * 20 + 10 - phase, false);
      expect(Buffer.from(r.out.buffer).equals(Buffer.from(plain.out.buffer)), `phase ${phase}`).toBe(true);
    }
  });

  it('never stretches a clean link whose arrival baseline moves (one packet early lowers every delay’s base)', () => {
    // Packets 3 ms before their pull; at frame 120 one comes 15 ms early (a sender catching up):
    // the delays, measured from the earliest transit, all read 15 ms more for a window, while the
    // playout schedule does not move.
    // (At every phase of the catch-up window: the judgement comes once per 15 pulls.)
    for (let early = 120; early < 135; early++) {
      const arrival = (f: number) => f * 20 + 7 - (f === early ? 15 : 0);
      const r = play(arrival);
      const plain = play(arrival, false);
      expect({ early, acc: r.st.accelerated, exp: r.st.stretchExpanded }).toEqual({ early, acc: 0, exp: 0 });
      expect(Buffer.from(r.out.buffer).equals(Buffer.from(plain.out.buffer))).toBe(true);
    }
  });

  for (const stallMs of [25, 40]) {
    it(`gives back what a ${stallMs} ms stall added within 2 s, by pitch periods, with no frame dropped`, () => {
      const at = 100 * 20;
      const r = play(stalled(at, stallMs));
      const plain = play(stalled(at, stallMs), false);
      const before = median(r.delays.slice(60, 100));
      // Both grew by a frame or more; without stretching it stays (loud audio: nothing is dropped).
      expect(median(plain.delays.slice(110, 200)) - before).toBeGreaterThan(15);
      expect(median(r.delays.slice(103, 110)) - before).toBeGreaterThan(15);
      // With it, 2 s after the stall, the delay is back to within one pitch period (150 Hz: 6.7 ms).
      const after = median(r.delays.slice(200, 210));
      expect(after - before, `before ${before}, after ${after}`).toBeLessThan(48_000 / 150 / 48);
      expect(after - before).toBeGreaterThan(-3);
      expect(r.st.accelerated).toBeGreaterThan(0);
      expect(r.jb.overflowDrops).toBe(0);
      // The audio stays at its level in every frame after the stall's own concealment.
      const ref = toneDbfs(src, 150, 48_000, 0, 48_000);
      for (let f = 110; f < FRAMES; f++)
        expect(toneDbfs(r.out, 150, 48_000, f * N, N), `frame ${f}`).toBeGreaterThan(ref - 2);
    });
  }

  it('also when a packet among the late ones was lost (the resume continues the talkspurt)', () => {
    const at = 100 * 20;
    const late = stalled(at, 40, 50, 2);
    // The arrivals moved 2 ms later at frame 50 (so the grown frame is less than a frame over the
    // target, and only the floor finds it), and frame 100, the first of the two held, never
    // arrives: the buffer resumes at 101, still the same talkspurt.
    const r = play((f) => (f === 100 ? Number.POSITIVE_INFINITY : late(f)));
    const before = median(r.delays.slice(60, 100));
    expect(median(r.delays.slice(103, 110)) - before).toBeGreaterThan(15);
    const after = median(r.delays.slice(200, 210));
    expect(after - before, `before ${before}, after ${after}`).toBeLessThan(48_000 / 150 / 48);
    expect(r.st.accelerated).toBeGreaterThan(0);
  });

  it('at 10 ms frames too: a 40 ms stall given back within 2 s', () => {
    const n = 480;
    const list = encode(src, n, 2 * FRAMES);
    const at = 200 * 10;
    const arrival = (f: number) => {
      const t = f * 10 + 3;
      return t >= at && t < at + 40 ? at + 40 : t;
    };
    const r = play(arrival, true, n, list);
    const before = median(r.delays.slice(120, 200));
    expect(median(r.delays.slice(206, 220)) - before).toBeGreaterThan(15);
    const after = median(r.delays.slice(400, 420));
    expect(after - before, `before ${before}, after ${after}`).toBeLessThan(48_000 / 150 / 48);
    expect(r.st.accelerated).toBeGreaterThan(0);
    expect(r.jb.overflowDrops).toBe(0);
  });

  it('also after the arrivals moved later than the target (a timing advance), by its floor', () => {
    // From frame 50 the packets come 2 ms later (1 ms before the pull): the delay sits below the
    // target, so the grown frame is less than a frame over it; judged against the talkspurt's
    // lowest delay it is a frame of growth.
    const at = 120 * 20;
    const r = play(stalled(at, 25, 50, 2));
    const before = median(r.delays.slice(90, 120));
    const after = median(r.delays.slice(220, 230));
    expect(median(r.delays.slice(125, 135)) - before).toBeGreaterThan(15);
    expect(after - before, `before ${before}, after ${after}`).toBeLessThan(48_000 / 150 / 48);
    expect(r.jb.overflowDrops).toBe(0);
  });
});
