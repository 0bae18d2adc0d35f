import { describe, expect, it } from 'vitest';
import {
  FramePlayout,
  createOpus,
  opusPacketHasLbrr,
  toneDbfs,
  type FramePlayoutStats,
  type OpusEncoderOptions,
  type OpusFactory,
} from '../src/index.js';
import { voiced } from './signals.js';

const N = 960;

/** One packet per frame of `src`. */
function encodeAll(
  opus: OpusFactory,
  src: Int16Array,
  frames: number,
  o: Partial<OpusEncoderOptions>,
): Uint8Array[] {
  const enc = opus.createEncoder({ frameSamples: N, ...o });
  const buf = new Uint8Array(1500);
  const packets = Array.from({ length: frames }, (_, f) =>
    buf.slice(0, enc.encode(src.subarray(f * N, (f + 1) * N), buf)),
  );
  enc.destroy();
  return packets;
}

/** Plays `packets` (each arriving 3 ms after its frame starts, unless lost) with and without stretching. */
function playBoth(
  opus: OpusFactory,
  packets: Uint8Array[],
  lost = new Set<number>(),
  growLookAheadByStretch = false,
) {
  return [false, true].map((timeStretch) => {
    const p = new FramePlayout({
      frameSamples: N,
      decoder: opus.createDecoder({ frameSamples: N }),
      timeStretch,
      growLookAheadByStretch,
    });
    const out = new Int16Array(packets.length * N);
    const frame = new Int16Array(N);
    for (let f = 0; f < packets.length; f++) {
      if (!lost.has(f)) p.insert(f, packets[f]!, packets[f]!.length, f * 20 + 3);
      p.next(f * 20 + 10, frame);
      out.set(frame, f * N);
    }
    const st = p.stats();
    p.close();
    return { st, out };
  }) as [{ st: FramePlayoutStats; out: Int16Array }, { st: FramePlayoutStats; out: Int16Array }];
}

/**
 * Ten seconds of loud voiced audio from a sender whose clock runs 1 % fast: its packets come ever
 * earlier, so the buffered delay grows by 10 ms a second and must be given back while the audio
 * never pauses. Pulls are exact, 20 ms apart.
 */
function run(opus: OpusFactory, timeStretch: boolean) {
  const seconds = 10;
  const frames = seconds * 50;
  const src = voiced((frames + 1) * N);
  const packets = encodeAll(opus, src, frames, { bitrate: 64_000, complexity: 9 });
  const p = new FramePlayout({
    frameSamples: N,
    decoder: opus.createDecoder({ frameSamples: N }),
    timeStretch,
  });
  const out = new Int16Array(frames * N);
  const frame = new Int16Array(N);
  let sent = 0;
  const delays: number[] = [];
  for (let f = 0; f < frames; f++) {
    const now = f * 20 + 10;
    while (sent < frames && sent * 20 * 0.99 <= now) {
      p.insert(sent, packets[sent]!, packets[sent]!.length, sent * 20 * 0.99);
      sent++;
    }
    p.next(now, frame);
    out.set(frame, f * N);
    delays.push(p.jitter.stats().delayMs);
  }
  const st = p.stats();
  const jb = p.jitter.stats();
  p.close();
  return { out, st, jb, delays };
}

/** Largest step between neighbouring samples from `from` on. */
function maxStep(x: Int16Array, from: number): number {
  let m = 0;
  for (let i = from + 1; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - x[i - 1]!));
  return m;
}

describe('FramePlayout with time-stretching (accelerate, preemptive expand)', () => {
  it('gives back a fast sender’s growing delay in loud audio by whole pitch periods: no frame dropped, no click, no hole', async () => {
    const opus = await createOpus();
    const plain = run(opus, false);
    const stretched = run(opus, true);
    // Without it, the excess waits for a quiet moment that never comes, then whole frames go.
    expect(plain.jb.overflowDrops).toBeGreaterThanOrEqual(2);
    expect(plain.st.accelerated).toBe(0);
    // With it: no frame dropped; about the drift's worth removed (10 s at 1 %: 100 ms, less what
    // the target still holds), the delay kept near the target.
    expect(stretched.jb.overflowDrops).toBe(0);
    expect(stretched.st.acceleratedMs).toBeGreaterThan(60);
    expect(stretched.st.acceleratedMs).toBeLessThan(110);
    expect(Math.max(...stretched.delays.slice(-100))).toBeLessThan(stretched.jb.targetDelayMs + 40);
    // Every 20 ms after the start stays at the tone's level (no hole), and no step exceeds the
    // clean decode's own largest step by more than a little (a splice at the wrong phase is a click).
    const ref = toneDbfs(plain.out, 150, 48_000, 50 * N, N);
    // (The last frames are past the end of the stream once its delay was given back.)
    for (let f = 5; f < 480; f++) {
      expect(toneDbfs(stretched.out, 150, 48_000, f * N, N), `frame ${f}`).toBeGreaterThan(ref - 2);
    }
    const cleanStep = maxStep(plain.out.subarray(0, 100 * N), 5 * N);
    expect(maxStep(stretched.out.subarray(0, 480 * N), 5 * N)).toBeLessThan(cleanStep * 1.3);
  });

  it('is sample-identical to the plain playout on a clean link (nothing to stretch)', async () => {
    const opus = await createOpus();
    const frames = 200;
    const packets = encodeAll(opus, voiced((frames + 1) * N), frames, { bitrate: 64_000 });
    const [plain, stretched] = playBoth(opus, packets);
    expect(stretched.st.accelerated + stretched.st.stretchExpanded).toBe(0);
    expect(stretched.out.some((v) => v !== 0)).toBe(true);
    expect(Buffer.from(stretched.out.buffer).equals(Buffer.from(plain.out.buffer))).toBe(true);
  });

  it('grows the FEC look-ahead after a loss by one concealed frame by default, by inserted pitch periods if asked; the next loss is rebuilt from FEC either way', async () => {
    const opus = await createOpus({ backend: 'libopus' });
    const frames = 200;
    // A tone whose pitch changes every frame (as in frame-playout.test.ts): the encoder marks it
    // active speech and carries LBRR; within a frame it is periodic, so periods can be inserted.
    const src = new Int16Array((frames + 1) * N);
    let phase = 0;
    for (let f = 0; f <= frames; f++) {
      const hz = 300 + ((f * 137) % 900);
      for (let i = 0; i < N; i++) {
        phase += (2 * Math.PI * hz) / 48_000;
        src[f * N + i] = Math.round(6000 * Math.sin(phase));
      }
    }
    const packets = encodeAll(opus, src, frames, { fec: true, packetLossPercent: 10, signal: 'voice' });
    const lost = new Set([50, 150]);
    expect(opusPacketHasLbrr(packets[151]!, packets[151]!.length)).toBe(true);
    // By default a stretching playout grows it as a plain one does: one concealed frame.
    const [, byFrame] = playBoth(opus, packets, lost);
    expect(byFrame.st.fecRecovered).toBe(1);
    expect(byFrame.st.expanded).toBe(1);
    expect(byFrame.st.stretchExpandedMs).toBe(0);
    const [plain, stretched] = playBoth(opus, packets, lost, true);
    // Both turn the look-ahead on after the first loss and rebuild the second from FEC.
    expect(plain.st.fecRecovered).toBe(1);
    expect(stretched.st.fecRecovered).toBe(1);
    // The plain playout grows by one concealed frame; the stretched one by a frame's worth of periods.
    expect(plain.st.expanded).toBe(1);
    expect(stretched.st.expanded).toBe(0);
    expect(stretched.st.stretchExpandedMs).toBeGreaterThanOrEqual(20);
    expect(stretched.st.stretchExpandedMs).toBeLessThan(20 + 15);
    // The only concealed frame is the first loss (before the look-ahead existed).
    expect(stretched.st.concealed).toBe(1);
    expect(plain.st.concealed).toBe(2);
  });
});
