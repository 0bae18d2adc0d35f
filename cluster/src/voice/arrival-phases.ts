/**
 * Arrival phases against a tick: for each frame, how long before the tick its packet arrived. A
 * bounded ring, preallocated; nothing is allocated per packet or per judgement.
 *
 * The timing advance records, per member, its hold less the whole frames its jitter buffer means
 * to hold (look-ahead, a grown target), read on a line (`circular` false): a member whose buffer
 * took the tick after the one its arrivals lead (it restarted just after a tick) reads as a
 * frame early, and is told to send later, not earlier.
 *
 * Circular (the default, for send instants on a sender's own clock): the phases live on a circle
 * of one frame: a member whose packets arrive right at the tick has
 * some just before it (phase near 0) and some just after the previous one (near a frame). Its
 * percentiles are read from the cluster, starting after the largest empty arc of the circle, so
 * such a member reads as arriving from slightly after the tick (negative) to slightly before it.
 */
export class ArrivalPhases {
  readonly #ring: Float64Array;
  readonly #sorted: Float64Array;
  #count = 0;
  #next = 0;

  /**
   * `circular` false: values are kept as recorded (a hold less the whole frames its buffer means
   * to hold, which may be negative or over a frame) and read on a line, not a circle.
   */
  constructor(
    readonly frameMs: number,
    capacity = 128,
    readonly circular = true,
  ) {
    if (!(frameMs > 0)) throw new TypeError('frameMs must be positive');
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new TypeError('capacity must be a positive integer');
    this.#ring = new Float64Array(capacity);
    this.#sorted = new Float64Array(capacity);
  }

  get count(): number {
    return this.#count;
  }

  /** A frame's phase, ms before the tick in [0, frameMs) (other values are folded into it). */
  record(phaseMs: number): void {
    if (!Number.isFinite(phaseMs)) return;
    const f = this.frameMs;
    this.#ring[this.#next] = this.circular ? ((phaseMs % f) + f) % f : phaseMs;
    this.#next = (this.#next + 1) % this.#ring.length;
    if (this.#count < this.#ring.length) this.#count++;
  }

  reset(): void {
    this.#count = 0;
    this.#next = 0;
  }

  /**
   * Percentiles (0..100) of the cluster, in ms before the tick, in (-frameMs, frameMs): negative
   * for arrivals just after the tick (their frames waited for the next one). Writes `out[i]` for `ps[i]`; false (nothing written) when empty. Sorts a copy
   * (every 2 s per member, not per packet).
   */
  percentiles(ps: readonly number[], out: Float64Array): boolean {
    const n = this.#count;
    if (n === 0) return false;
    const s = this.#sorted.subarray(0, n);
    s.set(this.#ring.subarray(0, n));
    s.sort();
    if (!this.circular) {
      for (let k = 0; k < ps.length; k++)
        out[k] = s[Math.min(n - 1, Math.max(0, Math.ceil((ps[k]! / 100) * n) - 1))]!;
      return true;
    }
    const f = this.frameMs;
    // The cluster starts after the largest gap between neighbours on the circle.
    let start = 0;
    let gap = s[0]! + f - s[n - 1]!;
    for (let i = 1; i < n; i++) {
      const g = s[i]! - s[i - 1]!;
      if (g > gap) {
        gap = g;
        start = i;
      }
    }
    for (let k = 0; k < ps.length; k++) {
      const rank = Math.min(n - 1, Math.max(0, Math.ceil((ps[k]! / 100) * n) - 1));
      const i = start + rank;
      // Phases before the wrap come first, read as just after the tick (less one frame).
      out[k] = start === 0 ? s[i]! : i < n ? s[i]! - f : s[i - n]!;
    }
    return true;
  }
}
