import { SineGenerator, dbfsToAmplitude, type OpusFactory } from '@voice/media';

/** What every talking virtual user sends: a quiet tone, with a click at fixed instants. */
export interface FrameBankOptions {
  readonly frameMs: 10 | 20;
  /** Background tone, Hz and dBFS (peak): a steady stream of real Opus at a speech-like bitrate. */
  readonly toneHz?: number;
  readonly toneDbfs?: number;
  /** Click: a burst of `clickHz` at `clickAmplitude` (linear), `clickMs` long. */
  readonly clickHz?: number;
  readonly clickAmplitude?: number;
  readonly clickMs?: number;
  readonly bitrate?: number;
  readonly complexity?: number;
}

const LOOP_MS = 1000;

/**
 * Opus frames encoded once per process and shared by all its users: `loop` frames of background
 * (one second, a whole number of tone cycles so the loop is seamless) and one click frame (with
 * the frame that follows it) per millisecond offset of the click inside a frame, so a click can be placed on a clock instant to
 * within half a millisecond without encoding anything at run time.
 */
export class FrameBank {
  readonly frameMs: 10 | 20;
  readonly frameSamples: number;
  /** Background frames, in order; frame i of the loop is `loop[i % loop.length]`. */
  readonly loop: readonly Uint8Array[];
  /** `clicks[k]`: the background frame with the click starting k ms into the frame. */
  readonly clicks: readonly Uint8Array[];
  /**
   * `tails[k]`: the frame sent after `clicks[k]`. Opus delays its output by its look-ahead (6.5 ms),
   * so a click late in a frame comes out in the next packet: that packet must be encoded after it.
   */
  readonly tails: readonly Uint8Array[];
  readonly toneHz: number;
  readonly clickHz: number;
  readonly clickAmplitude: number;
  readonly toneAmplitude: number;

  private constructor(
    o: Required<FrameBankOptions>,
    loop: Uint8Array[],
    clicks: Uint8Array[],
    tails: Uint8Array[],
  ) {
    this.frameMs = o.frameMs;
    this.frameSamples = o.frameMs * 48;
    this.loop = loop;
    this.clicks = clicks;
    this.tails = tails;
    this.toneHz = o.toneHz;
    this.clickHz = o.clickHz;
    this.clickAmplitude = o.clickAmplitude;
    this.toneAmplitude = dbfsToAmplitude(o.toneDbfs);
  }

  static build(opus: OpusFactory, options: FrameBankOptions): FrameBank {
    const o: Required<FrameBankOptions> = {
      toneHz: 440,
      toneDbfs: -30,
      clickHz: 2000,
      clickAmplitude: 0.8,
      clickMs: 3,
      bitrate: 32_000,
      complexity: 5,
      ...options,
    };
    if (o.frameMs !== 10 && o.frameMs !== 20) throw new TypeError('frameMs must be 10 or 20');
    if (!(o.clickAmplitude > 0 && o.clickAmplitude <= 1)) throw new TypeError('clickAmplitude in (0, 1]');
    const n = o.frameMs * 48;
    const frames = LOOP_MS / o.frameMs;
    const pcm = new SineGenerator(o.toneHz, dbfsToAmplitude(o.toneDbfs)).fill(new Int16Array(frames * n));
    const scratch = new Uint8Array(1500);
    const encoder = () =>
      opus.createEncoder({ frameSamples: n, bitrate: o.bitrate, complexity: o.complexity, fec: false });
    const enc = encoder();
    const loop: Uint8Array[] = [];
    try {
      for (let f = 0; f < frames; f++)
        loop.push(scratch.slice(0, enc.encode(pcm.subarray(f * n, (f + 1) * n), scratch)));
    } finally {
      enc.destroy();
    }
    // Each click frame is encoded after a few background frames, as it is heard in a stream.
    const clicks: Uint8Array[] = [];
    const tails: Uint8Array[] = [];
    const w = (2 * Math.PI * o.clickHz) / 48_000;
    const width = Math.round(o.clickMs * 48);
    for (let k = 0; k < o.frameMs; k++) {
      const e = encoder();
      try {
        for (let f = 0; f < 5; f++) e.encode(pcm.subarray(f * n, (f + 1) * n), scratch);
        const frame = pcm.slice(5 * n, 6 * n);
        for (let i = 0; i < width && k * 48 + i < n; i++) {
          frame[k * 48 + i] = Math.round(32767 * o.clickAmplitude * Math.sin(w * (i + 1)));
        }
        clicks.push(scratch.slice(0, e.encode(frame, scratch)));
        tails.push(scratch.slice(0, e.encode(pcm.subarray(6 * n, 7 * n), scratch)));
      } finally {
        e.destroy();
      }
    }
    return new FrameBank(o, loop, clicks, tails);
  }
}
