import { MAX_STREAM_OPUS_BYTES, writeRedBlock } from '@voice/protocol';

/**
 * Downstream RED (protocol README 9.1): the last frame sent to one listener on one timeline (AUDIO:
 * the channel's media clock; STREAM: one speaker's timestamps), repeated in the next packet when
 * that packet is the frame right after it. The one rule for AUDIO and STREAM packets alike.
 */
export class RedDownFrame {
  readonly #bytes: Uint8Array;
  #length = 0;
  /** Where the kept frame plays, mod 2^32 (an int32 array: a uint32 in a field would be boxed). */
  readonly #at = new Int32Array(1);

  constructor(capacity: number) {
    this.#bytes = new Uint8Array(capacity);
  }

  /** Nothing kept: the next packet goes without RED (RED off, or a speaker's block went instead). */
  clear(): void {
    this.#length = 0;
  }

  /**
   * Writes to `out` at `outAt` the RED block of the kept frame and `payload[payloadAt, +length)`
   * when the kept frame is at `prevAt` (the frame just before `at`) and this packet starts no
   * talkspurt (`marker`), and the block fits the 1000-byte payload after `outAt`; then keeps this
   * frame. Returns the block's length, or 0: send the primary alone, without the flag.
   */
  next(
    out: Uint8Array,
    outAt: number,
    payload: Uint8Array,
    payloadAt: number,
    length: number,
    at: number,
    prevAt: number,
    marker: boolean,
  ): number {
    let n = 0;
    if (!marker && this.#length > 0 && this.#at[0] === (prevAt | 0))
      n = writeRedBlock(out, outAt, this.#bytes, 0, this.#length, payload, payloadAt, length);
    if (length <= this.#bytes.length) {
      for (let b = 0; b < length; b++) this.#bytes[b] = payload[payloadAt + b]!;
      this.#length = length;
      this.#at[0] = at | 0;
    } else this.#length = 0;
    return n > 0 ? n : 0;
  }
}

/**
 * One listener's kept STREAM frames, one per speaker it takes as streams (README 8.8), while RED is
 * on for it: `streams` slots, the least recently used one given to a new speaker. Made when RED
 * turns on for the listener and dropped when it turns off (ChannelCore's tick), never per packet.
 */
export class RedDownSources {
  readonly #frames: RedDownFrame[];
  readonly #owners: (string | null)[];
  readonly #used: Uint32Array;
  #clock = 0;

  constructor(slots: number) {
    this.#frames = Array.from({ length: slots }, () => new RedDownFrame(MAX_STREAM_OPUS_BYTES));
    this.#owners = Array.from({ length: slots }, () => null);
    this.#used = new Uint32Array(slots);
  }

  /** Forgets speaker `userId`'s kept frame, if there is one (its own RED block went instead). */
  clear(userId: string): void {
    for (let i = 0; i < this.#frames.length; i++) if (this.#owners[i] === userId) this.#frames[i]!.clear();
  }

  /** The kept frame of speaker `userId`, a recycled empty one if it has none. */
  frameFor(userId: string): RedDownFrame {
    // A counter that wraps after 2^30 packets: a recency order wrong once in years costs one RED block.
    this.#clock = (this.#clock + 1) & 0x3fff_ffff;
    let oldest = 0;
    for (let i = 0; i < this.#frames.length; i++) {
      if (this.#owners[i] === userId) {
        this.#used[i] = this.#clock;
        return this.#frames[i]!;
      }
      if (this.#used[i]! < this.#used[oldest]!) oldest = i;
    }
    this.#owners[oldest] = userId;
    this.#used[oldest] = this.#clock;
    const f = this.#frames[oldest]!;
    f.clear();
    return f;
  }
}
