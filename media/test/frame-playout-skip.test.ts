import { describe, expect, it } from 'vitest';
import { FramePlayout, PlayoutFrame, createOpus, type OpusDecoder } from '../src/index.js';
import { voiced } from './signals.js';

/**
 * FramePlayout.skip(): a stream nobody hears in a mix is played without decoding (the server does
 * that for a speaker whose listeners all take it as STREAM packets), and decoding resumes with the
 * last skipped packets decoded first, so the decoder has the history the next packet was coded on.
 */

const FRAME = 960;

/** Logs what it was asked to do. Packets carry their frame index in byte 1. */
class LogDecoder implements OpusDecoder {
  readonly backend = 'libopus' as const;
  readonly frameSamples = FRAME;
  readonly supportsFec = false;
  readonly log: string[] = [];
  decode(p: Uint8Array, out: Int16Array): number {
    this.log.push(`D${p[1]}`);
    out.fill(1, 0, FRAME);
    return FRAME;
  }
  conceal(out: Int16Array): number {
    this.log.push('C');
    out.fill(0, 0, FRAME);
    return FRAME;
  }
  decodeFec(_next: Uint8Array, out: Int16Array): number {
    return this.conceal(out);
  }
  reset(): void {
    this.log.push('R');
  }
  destroy(): void {}
}

describe('FramePlayout.skip', () => {
  it('plays the same frames as next() without a decoder call, then warms the decoder with the last two packets', () => {
    const lost = new Set([12, 30]);
    const run = (skipping: (k: number) => boolean) => {
      const dec = new LogDecoder();
      const p = new FramePlayout({ frameSamples: FRAME, decoder: dec });
      const kinds: number[] = [];
      const logAt: number[] = [];
      const out = new Int16Array(FRAME);
      for (let k = 0; k < 60; k++) {
        if (!lost.has(k)) p.insert(k, new Uint8Array([8, k]), 2, 20 * k + 3);
        logAt.push(dec.log.length);
        kinds.push(skipping(k) ? p.skip(20 * k + 10) : p.next(20 * k + 10, out));
      }
      return { kinds, log: dec.log, logAt, stats: p.stats() };
    };
    const all = run(() => false);
    const skipped = run((k) => k >= 10 && k < 40);
    // Same kinds frame by frame (the loss at 12 and 30 is seen while skipping too).
    expect(skipped.kinds).toEqual(all.kinds);
    expect(skipped.stats.lost).toBe(all.stats.lost);
    expect(skipped.stats.concealed).toBe(all.stats.concealed);
    expect(skipped.stats.skipped).toBe(28);
    expect(skipped.stats.warmed).toBe(2);
    // Nothing decoded while skipping; at frame 40: reset, frames 38 and 39 (output discarded), then 40.
    expect(skipped.logAt[39]).toBe(skipped.logAt[10]);
    expect(skipped.log.slice(skipped.logAt[40], skipped.logAt[41])).toEqual(['R', 'D38', 'D39', 'D40']);
    expect(skipped.kinds[40]).toBe(PlayoutFrame.DECODED);
  });

  it('a resumed real decoder is much closer to one that never stopped than a cold one', async () => {
    const opus = await createOpus();
    const frames = 120;
    const pcm = voiced(frames * FRAME);
    // A moving spectrum as well: a glide over the buzz.
    for (let i = 0; i < pcm.length; i++)
      pcm[i] = pcm[i]! / 2 + Math.round(4000 * Math.sin((2 * Math.PI * (600 * i + (i * i) / 400)) / 48_000));
    const enc = opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000, complexity: 9, fec: false });
    const buf = new Uint8Array(1000);
    const packets: Uint8Array[] = [];
    for (let f = 0; f < frames; f++)
      packets.push(buf.slice(0, enc.encode(pcm.subarray(f * FRAME, (f + 1) * FRAME), buf)));
    enc.destroy();
    /** Output of frames `from`.. after skipping from frame 20 to `from` with `warmFrames`. */
    const play = (warmFrames: number, skipTo: number): Int16Array => {
      const p = new FramePlayout({
        frameSamples: FRAME,
        decoder: opus.createDecoder({ frameSamples: FRAME }),
        warmFrames,
      });
      const out = new Int16Array(FRAME);
      const got = new Int16Array(frames * FRAME);
      for (let k = 0; k < frames; k++) {
        p.insert(k, packets[k]!, packets[k]!.length, 20 * k + 3);
        if (k >= 20 && k < skipTo) p.skip(20 * k + 10);
        else {
          p.next(20 * k + 10, out);
          got.set(out, k * FRAME);
        }
      }
      p.close();
      return got;
    };
    const ref = play(2, 0);
    /** Error energy of the first frame after each resume against the reference, dB below it. */
    const errorDb = (warmFrames: number): number => {
      let e = 0;
      let s = 0;
      for (let at = 40; at < frames; at += 9) {
        const got = play(warmFrames, at);
        for (let i = at * FRAME; i < (at + 1) * FRAME; i++) {
          e += (got[i]! - ref[i]!) ** 2;
          s += ref[i]! ** 2;
        }
      }
      return 10 * Math.log10(e / s);
    };
    const cold = errorDb(0);
    const warm = errorDb(2);
    // Measured (libopus addon): cold -3.0 dB (as much error as signal), warm -11.2 dB. Deterministic.
    expect(warm, `warm ${warm.toFixed(1)} dB, cold ${cold.toFixed(1)} dB`).toBeLessThan(cold - 6);
  });

  it('is refused with time-stretching (its splices need the audio)', async () => {
    const opus = await createOpus();
    const p = new FramePlayout({
      frameSamples: FRAME,
      decoder: opus.createDecoder({ frameSamples: FRAME }),
      timeStretch: true,
    });
    expect(() => p.skip(0)).toThrow(TypeError);
    p.close();
  });
});
