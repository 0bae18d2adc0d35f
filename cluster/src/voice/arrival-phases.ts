/**
 * One member's arrival phases against its channel's tick: for each frame the tick took, how long
 * before that tick its packet arrived, modulo a frame (the hold less the whole frames buffered).
 * A bounded ring, preallocated; nothing is allocated per packet or per judgement.
 *
 * The phases live on a circle of one frame: a member whose packets arrive right at the tick has
 * some just before it (phase near 0) and some just after the previous one (near a frame). Its
 * percentiles are read from the cluster, starting after the largest empty arc of the circle, so
 * such a member reads as arriving from slightly after the tick (negative) to slightly before it.
 */
export class ArrivalPhases {
  readonly #ring: Float64Array;
  readonly #sorted: Float64Array;
  #count = 0;
  #next = 0;

  constructor(
    readonly frameMs: number,
    capacity = 128,
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
    this.#ring[this.#next] = ((phaseMs % f) + f) % f;
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
