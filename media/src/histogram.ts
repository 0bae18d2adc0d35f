export interface HistogramOptions {
  /** Lower edge of the first bucket (default 0). Smaller values are counted in the first bucket. */
  readonly min?: number;
  /** Width of one bucket, in the unit of the recorded values. */
  readonly bucketWidth: number;
  /** Number of buckets. Values at or beyond `min + buckets * bucketWidth` are counted in the last one. */
  readonly buckets: number;
  /**
   * Sliding window: when set, only the most recent `window` samples count towards percentiles and the
   * mean (older ones are evicted one by one). When unset, everything since the last `reset()` counts.
   */
  readonly window?: number;
}

export interface HistogramSnapshot {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/**
 * Fixed-bucket percentile tracker. `record()` is O(1) and allocates nothing; `percentile()` walks the
 * buckets (O(buckets)). Percentiles are interpolated linearly inside the bucket, so the error is at most
 * one bucket width (values outside the range are clamped to the first/last bucket).
 */
export class Histogram {
  readonly min: number;
  readonly bucketWidth: number;
  readonly buckets: number;
  readonly window: number;
  private readonly counts: Uint32Array;
  private readonly ring: Float64Array | null;
  private ringPos = 0;
  private n = 0;
  private sum = 0;
  private seen = 0;
  private maxSeen = Number.NEGATIVE_INFINITY;

  constructor(options: HistogramOptions) {
    const { min = 0, bucketWidth, buckets, window = 0 } = options;
    if (!(bucketWidth > 0) || !Number.isFinite(bucketWidth)) throw new TypeError('bucketWidth must be > 0');
    if (!Number.isInteger(buckets) || buckets < 1 || buckets > 1 << 20) {
      throw new TypeError('buckets must be an integer in 1..1048576');
    }
    if (!Number.isInteger(window) || window < 0) throw new TypeError('window must be a non-negative integer');
    this.min = min;
    this.bucketWidth = bucketWidth;
    this.buckets = buckets;
    this.window = window;
    this.counts = new Uint32Array(buckets);
    this.ring = window > 0 ? new Float64Array(window) : null;
  }

  /** Samples currently counted (at most `window` when windowed). */
  get count(): number {
    return this.n;
  }

  /** Samples recorded since the last reset, evicted or not. */
  get total(): number {
    return this.seen;
  }

  /** Largest value recorded since the last reset (not windowed); -Infinity when empty. */
  get max(): number {
    return this.maxSeen;
  }

  /** Bytes of typed-array storage (fixed at construction). */
  get memoryBytes(): number {
    return this.counts.byteLength + (this.ring?.byteLength ?? 0);
  }

  /** Mean of the counted samples; 0 when empty. */
  get mean(): number {
    return this.n === 0 ? 0 : this.sum / this.n;
  }

  private bucketOf(value: number): number {
    const i = Math.floor((value - this.min) / this.bucketWidth);
    return i < 0 ? 0 : i >= this.buckets ? this.buckets - 1 : i;
  }

  record(value: number): void {
    if (Number.isNaN(value)) return;
    const ring = this.ring;
    if (ring !== null) {
      if (this.n === this.window) {
        const old = ring[this.ringPos]!;
        this.counts[this.bucketOf(old)]!--;
        this.sum -= old;
        this.n--;
      }
      ring[this.ringPos] = value;
      this.ringPos = this.ringPos + 1 === this.window ? 0 : this.ringPos + 1;
    }
    this.counts[this.bucketOf(value)]!++;
    this.sum += value;
    this.n++;
    this.seen++;
    if (value > this.maxSeen) this.maxSeen = value;
  }

  /** The p-th percentile (0..100) of the counted samples; 0 when empty. */
  percentile(p: number): number {
    const n = this.n;
    if (n === 0) return 0;
    const rank = Math.max(1, Math.ceil((Math.min(100, Math.max(0, p)) / 100) * n));
    const counts = this.counts;
    let below = 0;
    for (let i = 0; i < this.buckets; i++) {
      const c = counts[i]!;
      if (below + c >= rank) {
        const v = this.min + (i + (rank - below) / c) * this.bucketWidth;
        return v > this.maxSeen ? this.maxSeen : v;
      }
      below += c;
    }
    return this.maxSeen;
  }

  reset(): void {
    this.counts.fill(0);
    this.ring?.fill(0);
    this.ringPos = 0;
    this.n = 0;
    this.sum = 0;
    this.seen = 0;
    this.maxSeen = Number.NEGATIVE_INFINITY;
  }

  /** Summary for metrics (allocates one small object: call it per report, not per sample). */
  snapshot(): HistogramSnapshot {
    return {
      count: this.n,
      mean: this.mean,
      p50: this.percentile(50),
      p95: this.percentile(95),
      p99: this.percentile(99),
      max: this.n === 0 ? 0 : this.maxSeen,
    };
  }
}
