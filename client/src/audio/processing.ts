import { amplitudeToDbfs, dbfsToAmplitude, SILENCE_DBFS, VoiceActivityDetector } from '@voice/media';
import { ENGINE_RATE } from './types.js';

/**
 * The capture processing chain: stages that each transform one 48 kHz mono float frame in place.
 * Noise suppression and echo cancellation (a later issue) are stages too; an echo canceller also gets
 * the far-end signal through `farEnd()`.
 *
 * Why not web-audio-api's graph: it renders in 128-sample quanta on its own clock, so a 10 ms period
 * (480 samples, 3.75 quanta) needs up to one more quantum of buffering and arrives in uneven pieces,
 * and it allocates AudioBuffers per quantum. The three stages we need are a few lines each, run
 * on the device's own period and allocate nothing.
 */
export interface ProcessingStage {
  readonly name: string;
  /** Transforms `frame[0..n)` in place. */
  process(frame: Float32Array, n: number): void;
  /** What the speaker played for the same period (for an echo canceller); optional. */
  farEnd?(frame: Float32Array, n: number): void;
  reset?(): void;
}

/** Linear gain, set in dB (-60..+30); 0 dB passes samples through unchanged. */
export class GainStage implements ProcessingStage {
  readonly name = 'gain';
  private g = 1;
  private db = 0;

  constructor(gainDb = 0) {
    this.gainDb = gainDb;
  }

  get gainDb(): number {
    return this.db;
  }

  set gainDb(db: number) {
    if (!Number.isFinite(db) || db < -60 || db > 30)
      throw new TypeError(`gain must be in [-60, 30] dB, got ${db}`);
    this.db = db;
    this.g = dbfsToAmplitude(db);
  }

  process(frame: Float32Array, n: number): void {
    if (this.db === 0) return;
    const g = this.g;
    for (let i = 0; i < n; i++) frame[i]! *= g;
  }
}

/**
 * Second-order Butterworth high-pass (RBJ cookbook biquad, direct form I): removes rumble, handling
 * noise and DC below the voice band. -3 dB at `cutoffHz`, -12 dB per octave below.
 */
export class HighPassStage implements ProcessingStage {
  readonly name = 'high-pass';
  readonly cutoffHz: number;
  private readonly b0: number;
  private readonly b1: number;
  private readonly b2: number;
  private readonly a1: number;
  private readonly a2: number;
  private x1 = 0;
  private x2 = 0;
  private y1 = 0;
  private y2 = 0;

  constructor(cutoffHz = 80, sampleRate = ENGINE_RATE) {
    if (!(cutoffHz > 0 && cutoffHz < sampleRate / 2)) throw new TypeError('cutoffHz must be in (0, Nyquist)');
    this.cutoffHz = cutoffHz;
    const w0 = (2 * Math.PI * cutoffHz) / sampleRate;
    const alpha = Math.sin(w0) / (2 * Math.SQRT1_2); // Q = 1/sqrt(2)
    const cos = Math.cos(w0);
    const a0 = 1 + alpha;
    this.b0 = (1 + cos) / 2 / a0;
    this.b1 = -(1 + cos) / a0;
    this.b2 = (1 + cos) / 2 / a0;
    this.a1 = (-2 * cos) / a0;
    this.a2 = (1 - alpha) / a0;
  }

  process(frame: Float32Array, n: number): void {
    let { x1, x2, y1, y2 } = this;
    const { b0, b1, b2, a1, a2 } = this;
    for (let i = 0; i < n; i++) {
      const x = frame[i]!;
      const y = b0 * x + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
      x2 = x1;
      x1 = x;
      y2 = y1;
      y1 = y;
      frame[i] = y;
    }
    // Flush denormals so a long silence does not slow the loop down.
    this.x1 = x1;
    this.x2 = x2;
    this.y1 = Math.abs(y1) < 1e-30 ? 0 : y1;
    this.y2 = Math.abs(y2) < 1e-30 ? 0 : y2;
  }

  reset(): void {
    this.x1 = this.x2 = this.y1 = this.y2 = 0;
  }
}

export interface LevelMeterOptions {
  readonly frameMs: number;
  /** Voice activity threshold, dBFS RMS (default -45). */
  readonly thresholdDbfs?: number;
}

/**
 * Measures each frame after the other stages (RMS and peak, dBFS) and runs the voice activity
 * detector on it. Passes audio through unchanged.
 */
export class LevelMeter implements ProcessingStage {
  readonly name = 'meter';
  rmsDbfs = SILENCE_DBFS;
  peakDbfs = SILENCE_DBFS;
  private vad: VoiceActivityDetector;
  private readonly frameMs: number;

  constructor(o: LevelMeterOptions) {
    this.frameMs = o.frameMs;
    this.vad = new VoiceActivityDetector({ frameMs: o.frameMs, thresholdDbfs: o.thresholdDbfs ?? -45 });
  }

  get speaking(): boolean {
    return this.vad.speaking;
  }

  get thresholdDbfs(): number {
    return this.vad.thresholdDbfs;
  }

  set thresholdDbfs(db: number) {
    if (!Number.isFinite(db) || db < -100 || db > 0)
      throw new TypeError(`threshold must be in [-100, 0] dBFS, got ${db}`);
    this.vad = new VoiceActivityDetector({ frameMs: this.frameMs, thresholdDbfs: db });
  }

  process(frame: Float32Array, n: number): void {
    let acc = 0;
    let pk = 0;
    for (let i = 0; i < n; i++) {
      const v = frame[i]!;
      acc += v * v;
      const a = v < 0 ? -v : v;
      if (a > pk) pk = a;
    }
    this.rmsDbfs = amplitudeToDbfs(n > 0 ? Math.sqrt(acc / n) : 0);
    this.peakDbfs = amplitudeToDbfs(pk);
    this.vad.update(this.rmsDbfs);
  }

  reset(): void {
    this.vad.reset();
    this.rmsDbfs = this.peakDbfs = SILENCE_DBFS;
  }
}

/** Runs stages in order. A stage that throws is counted and skipped for that frame. */
export class ProcessingChain {
  private readonly list: ProcessingStage[];
  errors = 0;

  constructor(
    stages: readonly ProcessingStage[],
    private readonly onError?: (err: unknown) => void,
  ) {
    if (stages.length > 16) throw new TypeError('at most 16 stages');
    this.list = [...stages];
  }

  get stages(): readonly ProcessingStage[] {
    return this.list;
  }

  /** Inserts a stage before the one named `before` (default: at the end). */
  insert(stage: ProcessingStage, before?: string): void {
    if (this.list.length >= 16) throw new TypeError('at most 16 stages');
    const at = before === undefined ? -1 : this.list.findIndex((s) => s.name === before);
    if (at < 0) this.list.push(stage);
    else this.list.splice(at, 0, stage);
  }

  process(frame: Float32Array, n: number): void {
    for (const s of this.list) {
      try {
        s.process(frame, n);
      } catch (err) {
        this.errors++;
        this.onError?.(err);
      }
    }
  }

  farEnd(frame: Float32Array, n: number): void {
    for (const s of this.list) {
      if (!s.farEnd) continue;
      try {
        s.farEnd(frame, n);
      } catch (err) {
        this.errors++;
        this.onError?.(err);
      }
    }
  }

  reset(): void {
    for (const s of this.list) s.reset?.();
  }
}
