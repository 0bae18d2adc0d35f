const UINT32 = 0x1_0000_0000;

/**
 * RTP-style timestamp unwrapping, the one implementation the server and the client share. The header
 * timestamp is a uint32 sample position that wraps; 2^32 is not a multiple of a frame, so dividing the
 * raw field breaks at the wrap. Serial arithmetic (RFC 1982) extends it to a monotone-in-time integer:
 * each timestamp is taken as the nearest one (within ±2^31 samples, about 12 hours at 48 kHz) to the
 * newest seen, so reordered packets unwrap correctly on either side of a wrap.
 */
export class TimestampUnwrapper {
  #raw = 0;
  #ext = Number.NaN;

  /** The extended (unwrapped) sample position of `timestamp` (any uint32). */
  unwrap(timestamp: number): number {
    const ts = timestamp >>> 0;
    if (Number.isNaN(this.#ext)) {
      this.#ext = ts;
      this.#raw = ts;
      return ts;
    }
    const ext = this.#ext + ((ts - this.#raw) | 0);
    // Only a newer timestamp moves the reference: a late packet must not drag it backwards.
    if (ext > this.#ext) {
      this.#ext = ext;
      this.#raw = ts;
    }
    return ext;
  }

  /**
   * The frame index of `timestamp` as a uint32 sequence number for a JitterBuffer: the unwrapped
   * position divided by the frame size, rounded to the nearest frame (a sender whose frames do not
   * start on a frame boundary keeps consecutive indices either way).
   */
  frameIndex(timestamp: number, frameSamples: number): number {
    return frameIndexOf(this.unwrap(timestamp), frameSamples);
  }

  /** Forgets the stream: the next timestamp starts a new reference. */
  reset(): void {
    this.#ext = Number.NaN;
  }
}

/** Frame index (uint32, wraps) of an unwrapped sample position. */
export function frameIndexOf(extended: number, frameSamples: number): number {
  const i = Math.round(extended / frameSamples) % UINT32;
  return i < 0 ? i + UINT32 : i;
}
