import { fromMonoFloat, framesIn, i16ToFloat } from './convert.js';
import { DriftController } from './drift.js';
import { SincResampler } from './resampler.js';
import { checkStreamFormat, ENGINE_RATE, type PullSource, type StreamFormat } from './types.js';

/** Level above the target (48 kHz samples) beyond which the excess is dropped at once: 60 ms. */
const MAX_EXCESS = 2880;

export interface PlaybackChainOptions {
  readonly device: StreamFormat;
  /** Frame size pulled from the source at 48 kHz: 480 or 960. */
  readonly frameSamples: number;
  readonly source: PullSource;
  /**
   * Steer the resampler by the source's level (default: when the source reports one). Off, the
   * device plays at its nominal rate and any clock difference piles up in (or drains) the source.
   */
  readonly driftCompensation?: boolean;
  /** Called with each rendered 48 kHz span, e.g. for an echo canceller's far end or a meter. */
  readonly onRendered?: (mono: Float32Array, n: number) => void;
}

/**
 * Device asks for bytes; the chain pulls 48 kHz frames from the source as the resampler needs them,
 * converts to the device's rate, format and channels, and steers the ratio against drift.
 */
export class PlaybackChain {
  readonly device: StreamFormat;
  readonly frameSamples: number;
  readonly drift: DriftController | null;
  /** Output volume, linear (1 = unchanged). */
  volume = 1;
  framesPulled = 0;
  /** Times the level was far above the target and the excess was dropped. */
  resyncs = 0;
  private readonly resampler: SincResampler;
  private readonly pcm: Int16Array;
  private readonly frame: Float32Array;
  private mono = new Float32Array(4096);

  constructor(private readonly o: PlaybackChainOptions) {
    checkStreamFormat(o.device);
    if (o.frameSamples !== 480 && o.frameSamples !== 960)
      throw new TypeError('frameSamples must be 480 or 960');
    this.device = o.device;
    this.frameSamples = o.frameSamples;
    this.pcm = new Int16Array(o.frameSamples);
    this.frame = new Float32Array(o.frameSamples);
    this.resampler = new SincResampler({
      inRate: ENGINE_RATE,
      outRate: o.device.sampleRate,
      capacity: 8 * o.frameSamples,
    });
    const steer = o.driftCompensation ?? typeof o.source.levelSamples === 'function';
    const target = o.source.targetSamples;
    this.drift =
      steer && typeof o.source.levelSamples === 'function' && target !== undefined
        ? new DriftController({ target })
        : null;
  }

  /** Fills `out` (a whole number of device frames) with the next audio. */
  render(out: Uint8Array): void {
    const n = framesIn(out.byteLength, this.device);
    if (n > this.mono.length) this.mono = new Float32Array(n); // only when the device's period grows
    let got = 0;
    while (got < n) {
      got += this.resampler.read(this.mono, n - got, got);
      if (got < n) this.pullFrame();
    }
    if (this.volume !== 1) for (let i = 0; i < n; i++) this.mono[i]! *= this.volume;
    this.o.onRendered?.(this.mono, n);
    fromMonoFloat(this.mono, n, this.device, out);
    if (this.drift) {
      const src = this.o.source;
      if (src.targetSamples !== undefined) this.drift.target = src.targetSamples;
      let level = src.levelSamples!() + this.resampler.buffered;
      const excess = level - this.drift.target;
      if (excess > MAX_EXCESS && src.discard) {
        level -= src.discard(excess);
        this.resyncs++;
        this.drift.resync(level);
      }
      this.resampler.setCorrection(this.drift.update(level, n / this.device.sampleRate));
    }
  }

  private pullFrame(): void {
    this.o.source.pull(this.pcm);
    this.framesPulled++;
    i16ToFloat(this.pcm, this.frame, this.frameSamples);
    this.resampler.write(this.frame, this.frameSamples);
  }
}
