/**
 * Time-scale modification of decoded speech by whole pitch periods (WSOLA, as NetEq's accelerate
 * and preemptive expand): the playout shortens or lengthens its delay by a few milliseconds at a
 * time, inside voiced audio or quiet, instead of dropping or inserting a whole frame.
 *
 * Both operations work in place on a region of a caller's buffer and allocate nothing:
 * - accelerate removes one period P: y[0,P) = crossfade(x[0,P) -> x[P,2P)), then x[2P..) follows;
 * - expand inserts one period: y[0,P) = x[0,P), y[P,2P) = crossfade(x[P,2P) -> x[0,P)), then
 *   x[P..) follows.
 * Both ends of the changed span meet the original signal sample for sample, so there is no step.
 * P is the lag in [minPeriod, maxPeriod] whose normalised correlation between x[0,P) and x[P,2P)
 * is highest; the change is made only when that correlation reaches `minCorrelation` (a periodic
 * signal: the splice is inaudible) or the region is quiet (nothing to hear), as NetEq decides.
 */
export interface TimeStretchOptions {
  /** Shortest period tried, samples (default 120: 2.5 ms at 48 kHz, a 400 Hz voice). */
  readonly minPeriod?: number;
  /** Longest period tried, samples (default 720: 15 ms, a 67 Hz voice). */
  readonly maxPeriod?: number;
  /** Normalised correlation needed to splice loud audio (default 0.9, NetEq's threshold). */
  readonly minCorrelation?: number;
  /** Peak below which a region counts as quiet and is spliced whatever its correlation (default 328, -40 dBFS). */
  readonly quietPeak?: number;
}

/** What a TimeStretch has done so far. */
export interface StretchCounts {
  readonly accelerated: number;
  readonly expanded: number;
  readonly samplesRemoved: number;
  readonly samplesAdded: number;
}

export class TimeStretch implements StretchCounts {
  readonly minPeriod: number;
  readonly maxPeriod: number;
  readonly minCorrelation: number;
  readonly quietPeak: number;
  /** Correlation of the last period search (diagnostics and tests). */
  lastCorrelation = 0;
  /** Accelerations and expansions made, and samples removed or added. */
  accelerated = 0;
  expanded = 0;
  samplesRemoved = 0;
  samplesAdded = 0;

  constructor(o: TimeStretchOptions = {}) {
    const { minPeriod = 120, maxPeriod = 720, minCorrelation = 0.9, quietPeak = 328 } = o;
    if (!Number.isInteger(minPeriod) || minPeriod < 16)
      throw new TypeError('minPeriod must be an integer >= 16');
    if (!Number.isInteger(maxPeriod) || maxPeriod < minPeriod)
      throw new TypeError('maxPeriod must be an integer >= minPeriod');
    if (!(minCorrelation > 0 && minCorrelation <= 1)) throw new TypeError('minCorrelation must be in (0, 1]');
    if (!(quietPeak >= 0)) throw new TypeError('quietPeak must be >= 0');
    this.minPeriod = minPeriod;
    this.maxPeriod = maxPeriod;
    this.minCorrelation = minCorrelation;
    this.quietPeak = quietPeak;
  }

  /**
   * Removes one period from buf[start, start+length) in place. Returns the samples removed (0 when
   * the region is too short or not periodic enough); the region is then length - removed long.
   * `maxRemove` bounds the period (a caller that must not remove more than its excess).
   */
  accelerate(buf: Int16Array, start: number, length: number, maxRemove = Number.POSITIVE_INFINITY): number {
    const p = this.#period(buf, start, length, maxRemove);
    if (p === 0) return 0;
    for (let i = 0; i < p; i++) {
      const w = (i + 0.5) / p;
      buf[start + i] = Math.round(buf[start + i]! * (1 - w) + buf[start + p + i]! * w);
    }
    buf.copyWithin(start + p, start + 2 * p, start + length);
    this.accelerated++;
    this.samplesRemoved += p;
    return p;
  }

  /**
   * Inserts one period into buf[start, start+length) in place, using buf up to `start + limit`.
   * Returns the samples added (0 when there is no room, or the region is not periodic enough).
   */
  expand(buf: Int16Array, start: number, length: number, limit: number): number {
    const p = this.#period(buf, start, length, limit - length);
    if (p === 0) return 0;
    // Make room: x[P..) moves to [2P..); then [P,2P) becomes x[P,2P) fading into x[0,P).
    buf.copyWithin(start + 2 * p, start + p, start + length);
    for (let i = 0; i < p; i++) {
      const w = (i + 0.5) / p;
      buf[start + p + i] = Math.round(buf[start + 2 * p + i]! * (1 - w) + buf[start + i]! * w);
    }
    this.expanded++;
    this.samplesAdded += p;
    return p;
  }

  /** The best period for a splice in the region, at most `room`, or 0 (too short, or not periodic). */
  #period(buf: Int16Array, start: number, length: number, room = Number.POSITIVE_INFINITY): number {
    const hi = Math.min(this.maxPeriod, Math.floor(length / 2), room);
    if (hi < this.minPeriod) return 0;
    let peak = 0;
    for (let i = 0; i < 2 * hi; i++) {
      const v = buf[start + i]!;
      const a = v < 0 ? -v : v;
      if (a > peak) peak = a;
    }
    // Coarse search on every 4th lag and every 4th sample (12 kHz: voice's periodicity is below
    // 4 kHz), 16 times cheaper than a full one, then the best lag refined at full resolution; the
    // splice is judged on the full-resolution correlation, so a coarse miss only means no splice.
    let best = 0;
    let bestC = -2;
    for (let p = this.minPeriod; p <= hi; p += 4) {
      const c = this.#correlation(buf, start, p, 4);
      if (c > bestC) {
        bestC = c;
        best = p;
      }
    }
    bestC = -2;
    const from = Math.max(this.minPeriod, best - 3);
    const to = Math.min(hi, best + 3);
    for (let p = from; p <= to; p++) {
      const c = this.#correlation(buf, start, p, 1);
      if (c > bestC) {
        bestC = c;
        best = p;
      }
    }
    this.lastCorrelation = bestC;
    if (peak <= this.quietPeak) return best;
    return bestC >= this.minCorrelation ? best : 0;
  }

  /** Normalised correlation of x[0,p) and x[p,2p), on every `stride`-th sample. */
  #correlation(buf: Int16Array, start: number, p: number, stride: number): number {
    let xy = 0;
    let xx = 0;
    let yy = 0;
    for (let i = 0; i < p; i += stride) {
      const x = buf[start + i]!;
      const y = buf[start + p + i]!;
      xy += x * y;
      xx += x * x;
      yy += y * y;
    }
    if (xx === 0 || yy === 0) return xx === yy ? 1 : 0;
    return xy / Math.sqrt(xx * yy);
  }
}
