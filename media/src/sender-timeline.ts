/**
 * A sender's timeline jumps this far (ms) from where its arrival time puts it: a new timeline (a
 * new binding or a client that restarts its timestamps), not a pause or reordering.
 */
export const TIMELINE_JUMP_MS = 1000;

/** Samples per millisecond at the voice path's only rate, 48 kHz. */
const SAMPLES_PER_MS = 48;

/**
 * Maps one sender's uint32 AUDIO or STREAM timestamps onto a timeline that only continues, the one
 * rule the server (each member's upstream, protocol README 8.1) and the client (each STREAM source,
 * 8.8) share. A timestamp more than TIMELINE_JUMP_MS behind the newest or ahead of the time that
 * passed since it arrived, or MARKER on a timestamp two frames or more behind the newest (one frame
 * behind is a talkspurt's first packet overtaken by its second), starts a new timeline: it is moved
 * to continue after the newest frame by the time that passed, in whole frames (at least one), so a
 * jitter buffer carries on as after a pause instead of dropping the new frames as late.
 *
 * Allocates nothing; timestamps stay uint32 (the offset wraps with them).
 */
export class SenderTimeline {
  /** Timeline restarts since construction or `reset()`. */
  restarts = 0;
  #offset = 0;
  #newestTs = Number.NaN;
  #newestAt = 0;

  /** When the newest timestamp arrived (the caller's ms clock); NaN before any. */
  get newestAt(): number {
    return Number.isNaN(this.#newestTs) ? Number.NaN : this.#newestAt;
  }

  /** `timestamp` on the continuing timeline (uint32), arrived at `nowMs` (any monotonic ms clock). */
  map(timestamp: number, marker: boolean, nowMs: number, frameSamples: number): number {
    let ts = (timestamp + this.#offset) >>> 0;
    if (Number.isNaN(this.#newestTs)) {
      this.#newestTs = ts;
      this.#newestAt = nowMs;
      return ts;
    }
    const d = (ts - this.#newestTs) | 0;
    const elapsed = Math.max(0, nowMs - this.#newestAt) * SAMPLES_PER_MS;
    const jump = TIMELINE_JUMP_MS * SAMPLES_PER_MS;
    // Behind the newest by more than reordering explains, or ahead of the time that passed (a stall
    // delays arrivals, so a small step after a long wait is no jump).
    if (d < -jump || d - elapsed > jump || (marker && d <= -2 * frameSamples)) {
      const to = this.#newestTs + Math.max(1, Math.round(elapsed / frameSamples)) * frameSamples;
      this.#offset = (this.#offset + (to - ts)) >>> 0;
      ts = to >>> 0;
      this.restarts++;
      this.#newestTs = ts;
      this.#newestAt = nowMs;
      return ts;
    }
    if (d > 0) {
      this.#newestTs = ts;
      this.#newestAt = nowMs;
    }
    return ts;
  }

  /** Forgets the sender: its next timestamp is taken as it comes. */
  reset(): void {
    this.restarts = 0;
    this.#offset = 0;
    this.#newestTs = Number.NaN;
    this.#newestAt = 0;
  }
}
