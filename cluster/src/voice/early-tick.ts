/**
 * Mix on completion: a channel's tick may run before its scheduled phase, as soon as every speaker
 * its last mix had has its next frame in (the last of them just arrived), so the mix does not wait
 * for the clock's slot. The media clock stays the scheduler's: the scheduled wake-up of a frame that
 * already ran early is skipped, and an early tick comes at most once per frame period and never
 * more than a frame less `MARGIN_FRAMES` after the previous tick ran.
 */
const MARGIN_FRAMES = 0.25;

export class EarlyTicks {
  /** When the latest tick was due on the scheduler's clock (NaN: none yet). */
  #lastDueAt = Number.NaN;
  /** When the latest tick ran (performance clock). */
  #lastRunAt = Number.NEGATIVE_INFINITY;
  /** The scheduled due time of the frame that ran early (NaN: none pending). */
  #ranFor = Number.NaN;
  constructor(
    readonly frameMs: number,
    /** Off: `tryEarly` always refuses (config `clock.mixOnReady`). */
    readonly enabled = true,
  ) {}

  /**
   * The scheduler's wake-up for the frame due at `dueAt`: how many frame periods it plays (1, more
   * after a stall), or 0 when that frame already ran early.
   */
  scheduled(dueAt: number, now: number): number {
    if (!Number.isNaN(this.#ranFor)) {
      const ran = this.#ranFor;
      this.#ranFor = Number.NaN;
      // The same frame (its slot may have moved earlier since: the phase alignment). Its due time
      // is the scheduler's: the next early tick counts from it, else the chain kept the old phase
      // after every move, the phases the alignment read never changed, and it moved the tick again
      // at every round, round the whole frame (advance.test.ts, device-driven speakers).
      if (dueAt - ran < this.frameMs / 2) {
        this.#lastDueAt = dueAt;
        return 0;
      }
    }
    // Frames of time since the last tick (1, or more after a stall or a skip; an earlier phase
    // after alignment is a shorter period, still one frame).
    const frames = Number.isNaN(this.#lastDueAt)
      ? 1
      : Math.max(1, Math.round((dueAt - this.#lastDueAt) / this.frameMs));
    this.#lastDueAt = dueAt;
    this.#lastRunAt = now;
    return frames;
  }

  /**
   * The channel slept through `frames` frame periods (no tick ran, none was needed): the next
   * scheduled wake-up plays one frame, not the ones slept through.
   */
  slept(frames: number): void {
    if (!Number.isNaN(this.#lastDueAt)) this.#lastDueAt += frames * this.frameMs;
    this.#ranFor = Number.NaN;
  }

  /**
   * Every frame the next tick mixes is in at `now`: when that tick runs now, the time it was due
   * (later than `now`), else 0.
   */
  tryEarly(now: number): number {
    if (!this.enabled || Number.isNaN(this.#lastDueAt) || !Number.isNaN(this.#ranFor)) return 0;
    const next = this.#lastDueAt + this.frameMs;
    // Due already (the scheduler's wake-up is on its way: it plays the frames a stall missed), or
    // too soon after the last tick (a burst of late packets would make ticks come faster than time).
    if (now >= next || now < this.#lastRunAt + this.frameMs * (1 - MARGIN_FRAMES)) return 0;
    this.#ranFor = next;
    this.#lastDueAt = next;
    this.#lastRunAt = now;
    return next;
  }
}
