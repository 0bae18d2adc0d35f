/**
 * Steers the playback resampler so the sound card's clock follows the network's. The device consumes
 * audio at its own rate (a crystal 0.01-0.1 % off); the network delivers it at the server's. Left
 * alone, the difference fills or drains the buffer between them without bound: 0.1 % is 600 ms in
 * ten minutes. The controller reads how much audio is buffered ahead of the device (smoothed, since
 * it moves in whole frames), and a PI loop sets the resampler's correction so that level stays at the
 * target. The correction averaged over the last whole minute is the measured clock ratio (`driftPpm`):
 * a block average, since the correction ripples at the beat between the two clocks.
 */

export interface DriftControllerOptions {
  /** Level to hold, samples at 48 kHz. */
  readonly target: number;
  /** Largest correction either way (default 0.005: 5,000 ppm, far beyond real crystals). */
  readonly maxCorrection?: number;
  /** Loop bandwidth, rad/s (default 0.1: settles in about a minute, ignores network jitter). */
  readonly bandwidth?: number;
  /** Smoothing of the measured level, seconds (default 1). */
  readonly smoothingSeconds?: number;
}

const RATE = 48_000;
const MEAN_SECONDS = 60;

export class DriftController {
  private targetLevel: number;
  private readonly max: number;
  private readonly kp: number;
  private readonly ki: number;
  private readonly smoothing: number;
  private level = Number.NaN;
  private integral = 0;
  private c = 1;
  private mean = 0;
  private blockSum = 0;
  private blockTime = 0;

  constructor(o: DriftControllerOptions) {
    if (!(o.target > 0)) throw new TypeError('target must be > 0');
    this.targetLevel = o.target;
    this.max = o.maxCorrection ?? 0.005;
    const w = o.bandwidth ?? 0.1;
    if (!(this.max > 0 && this.max < 0.05)) throw new TypeError('maxCorrection must be in (0, 0.05)');
    if (!(w > 0 && w < 10)) throw new TypeError('bandwidth must be in (0, 10) rad/s');
    // Level error e (samples) moves as de/dt = RATE * (drift - correction); critically damped at w.
    this.kp = (2 * w) / RATE;
    this.ki = (w * w) / RATE;
    this.smoothing = o.smoothingSeconds ?? 1;
  }

  /** Level to hold, samples. An adaptive jitter buffer moves it; the loop follows. */
  get target(): number {
    return this.targetLevel;
  }

  set target(t: number) {
    if (t > 0) this.targetLevel = t;
  }

  /** The correction to apply (>1: consume faster). */
  get correction(): number {
    return this.c;
  }

  /** Measured clock difference over the last whole minute, ppm: < 0 when the device clock is fast. */
  get driftPpm(): number {
    return this.mean * 1e6;
  }

  /** The smoothed level, samples. */
  get smoothedLevel(): number {
    return this.level;
  }

  /** Feeds the level seen after `dtSeconds` of device time; returns the new correction. */
  update(buffered: number, dtSeconds: number): number {
    if (!(dtSeconds > 0)) return this.c;
    if (Number.isNaN(this.level)) this.level = buffered;
    else this.level += (buffered - this.level) * Math.min(1, dtSeconds / this.smoothing);
    const e = this.level - this.targetLevel;
    this.integral += this.ki * e * dtSeconds;
    // Anti-windup: the integral alone never asks for more than the limit.
    if (this.integral > this.max) this.integral = this.max;
    else if (this.integral < -this.max) this.integral = -this.max;
    let c = this.kp * e + this.integral;
    if (c > this.max) c = this.max;
    else if (c < -this.max) c = -this.max;
    this.c = 1 + c;
    this.blockSum += c * dtSeconds;
    this.blockTime += dtSeconds;
    if (this.blockTime >= MEAN_SECONDS) {
      this.mean = this.blockSum / this.blockTime;
      this.blockSum = this.blockTime = 0;
    }
    return this.c;
  }

  /** The level jumped for a known reason (audio was dropped): restart the smoothing there. */
  resync(level: number): void {
    this.level = level;
  }

  reset(): void {
    this.level = Number.NaN;
    this.integral = 0;
    this.c = 1;
    this.mean = this.blockSum = this.blockTime = 0;
  }
}
