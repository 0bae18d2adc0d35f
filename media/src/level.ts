/** Levels in dBFS and a voice-activity detector. Int16 frames are scaled by 1/32768. */

export type PcmFrame = Float32Array | Int16Array;

/** Floor for levels of silence (log of zero). */
export const SILENCE_DBFS = -120;

export function amplitudeToDbfs(amplitude: number): number {
  if (!(amplitude > 0)) return SILENCE_DBFS;
  const db = 20 * Math.log10(amplitude);
  return db < SILENCE_DBFS ? SILENCE_DBFS : db;
}

export function dbfsToAmplitude(dbfs: number): number {
  return 10 ** (dbfs / 20);
}

function scaleOf(frame: PcmFrame): number {
  return frame instanceof Int16Array ? 1 / 32768 : 1;
}

/** Root mean square, linear (full scale 1.0). A full-scale sine has RMS 0.707 (-3.01 dBFS). */
export function rms(frame: PcmFrame): number {
  const n = frame.length;
  if (n === 0) return 0;
  let acc = 0;
  for (let i = 0; i < n; i++) {
    const v = frame[i]!;
    acc += v * v;
  }
  return Math.sqrt(acc / n) * scaleOf(frame);
}

/** Largest absolute sample, linear. */
export function peak(frame: PcmFrame): number {
  let m = 0;
  for (let i = 0; i < frame.length; i++) {
    const v = frame[i]!;
    const a = v < 0 ? -v : v;
    if (a > m) m = a;
  }
  return m * scaleOf(frame);
}

/** RMS level in dBFS (RMS relative to full-scale amplitude; floor SILENCE_DBFS). */
export function rmsDbfs(frame: PcmFrame): number {
  return amplitudeToDbfs(rms(frame));
}

/** Peak level in dBFS. */
export function peakDbfs(frame: PcmFrame): number {
  return amplitudeToDbfs(peak(frame));
}

/** Transitions reported by the VAD. */
export const VadEvent = { NONE: 0, START: 1, STOP: 2 } as const;
export type VadEventType = (typeof VadEvent)[keyof typeof VadEvent];

export interface VadOptions {
  /** Frame duration, ms (default 20). */
  readonly frameMs?: number;
  /** RMS level that counts as voice, dBFS (default -45). */
  readonly thresholdDbfs?: number;
  /** While speaking, frames at or above this level keep speech alive (default threshold - 6 dB). */
  readonly releaseDbfs?: number;
  /** Consecutive frames above threshold before speech starts (default 2). */
  readonly attackFrames?: number;
  /** Time below the release level before speech stops, ms (default 300). */
  readonly hangoverMs?: number;
}

/**
 * Level-based voice-activity detector with hysteresis: START after `attackFrames` consecutive frames at
 * or above the threshold; STOP after `hangoverMs` of frames below the (lower) release level.
 */
export class VoiceActivityDetector {
  readonly frameMs: number;
  readonly thresholdDbfs: number;
  readonly releaseDbfs: number;
  readonly attackFrames: number;
  readonly hangoverFrames: number;
  private active = false;
  private above = 0;
  private below = 0;
  private lastLevel = SILENCE_DBFS;

  constructor(options: VadOptions = {}) {
    const { frameMs = 20, thresholdDbfs = -45, attackFrames = 2, hangoverMs = 300 } = options;
    const releaseDbfs = options.releaseDbfs ?? thresholdDbfs - 6;
    if (!(frameMs > 0)) throw new TypeError('frameMs must be > 0');
    if (!Number.isInteger(attackFrames) || attackFrames < 1) throw new TypeError('attackFrames must be >= 1');
    if (!(hangoverMs >= 0)) throw new TypeError('hangoverMs must be >= 0');
    if (releaseDbfs > thresholdDbfs) throw new TypeError('releaseDbfs must not exceed thresholdDbfs');
    this.frameMs = frameMs;
    this.thresholdDbfs = thresholdDbfs;
    this.releaseDbfs = releaseDbfs;
    this.attackFrames = attackFrames;
    this.hangoverFrames = Math.max(1, Math.ceil(hangoverMs / frameMs));
  }

  get speaking(): boolean {
    return this.active;
  }

  /** Level of the last frame seen, dBFS. */
  get level(): number {
    return this.lastLevel;
  }

  /** Measures one frame and returns the transition it causes. */
  process(frame: PcmFrame): VadEventType {
    return this.update(rmsDbfs(frame));
  }

  /** Feeds one frame's level (dBFS) and returns the transition it causes. */
  update(levelDbfs: number): VadEventType {
    this.lastLevel = levelDbfs;
    if (!this.active) {
      if (levelDbfs >= this.thresholdDbfs) {
        if (++this.above >= this.attackFrames) {
          this.active = true;
          this.below = 0;
          return VadEvent.START;
        }
      } else {
        this.above = 0;
      }
      return VadEvent.NONE;
    }
    if (levelDbfs >= this.releaseDbfs) {
      this.below = 0;
      return VadEvent.NONE;
    }
    if (++this.below >= this.hangoverFrames) {
      this.active = false;
      this.above = 0;
      return VadEvent.STOP;
    }
    return VadEvent.NONE;
  }

  reset(): void {
    this.active = false;
    this.above = 0;
    this.below = 0;
    this.lastLevel = SILENCE_DBFS;
  }
}
