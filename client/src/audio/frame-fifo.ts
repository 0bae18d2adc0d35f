import type { PullSource } from './types.js';

/**
 * Bridges a push-driven playout (today's `Playout` hands each frame to `onPlayout` on its own timer)
 * to a device that pulls: a bounded ring of 48 kHz samples. `levelSamples()` lets the engine's drift
 * controller hold it at `target`. Overflow drops the oldest samples, underflow plays silence; both
 * are counted.
 */
export class FrameFifo implements PullSource {
  readonly capacity: number;
  readonly target: number;
  /** Samples the device asked for that were not there (played as silence). */
  underrunSamples = 0;
  underruns = 0;
  overflowSamples = 0;
  /** Samples dropped by discard() (the device caught up after a stall). */
  discarded = 0;
  private readonly ring: Int16Array;
  private head = 0;
  private count = 0;

  constructor(options: { capacity: number; target: number }) {
    const { capacity, target } = options;
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new TypeError('capacity must be a positive integer');
    if (!(target > 0 && target < capacity)) throw new TypeError('target must be in (0, capacity)');
    this.capacity = capacity;
    this.target = target;
    this.ring = new Int16Array(capacity);
  }

  get buffered(): number {
    return this.count;
  }

  push(pcm: Int16Array, n: number = pcm.length): void {
    let src = pcm.subarray(0, n);
    if (src.length > this.capacity) {
      this.overflowSamples += src.length - this.capacity;
      src = src.subarray(src.length - this.capacity);
    }
    const over = this.count + src.length - this.capacity;
    if (over > 0) {
      this.overflowSamples += over;
      this.head = (this.head + over) % this.capacity;
      this.count -= over;
    }
    let w = (this.head + this.count) % this.capacity;
    let i = 0;
    while (i < src.length) {
      const k = Math.min(src.length - i, this.capacity - w);
      this.ring.set(src.subarray(i, i + k), w);
      i += k;
      w = (w + k) % this.capacity;
    }
    this.count += src.length;
  }

  pull(out: Int16Array): void {
    const n = Math.min(out.length, this.count);
    let i = 0;
    while (i < n) {
      const k = Math.min(n - i, this.capacity - this.head);
      out.set(this.ring.subarray(this.head, this.head + k), i);
      i += k;
      this.head = (this.head + k) % this.capacity;
    }
    this.count -= n;
    if (n < out.length) {
      out.fill(0, n);
      this.underruns++;
      this.underrunSamples += out.length - n;
    }
  }

  levelSamples(): number {
    return this.count;
  }

  get targetSamples(): number {
    return this.target;
  }

  discard(samples: number): number {
    const n = Math.max(0, Math.min(Math.floor(samples), this.count));
    this.head = (this.head + n) % this.capacity;
    this.count -= n;
    this.discarded += n;
    return n;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
  }
}
