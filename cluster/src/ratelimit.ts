/**
 * Token bucket: `rate` tokens per second, at most `burst` banked. Allocation-free; time is passed
 * in so that callers on a hot path read the clock once.
 */
export class TokenBucket {
  #tokens: number;
  #last: number;
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number = performance.now(),
  ) {
    if (!(rate > 0) || !(burst >= 1)) throw new TypeError('TokenBucket needs rate > 0 and burst >= 1');
    this.#tokens = burst;
    this.#last = now;
  }
  take(now: number = performance.now(), cost = 1): boolean {
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#last) / 1000) * this.rate);
    this.#last = now;
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }
}

/**
 * One bucket per key (a client address), bounded: idle buckets are swept, and when the map is full
 * the oldest key is evicted, so a flood of spoofed addresses cannot grow memory without limit.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, { bucket: TokenBucket; seen: number }>();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
  ) {}
  take(key: string, now: number = performance.now()): boolean {
    let e = this.#buckets.get(key);
    if (!e) {
      if (this.#buckets.size >= this.maxKeys) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      e = { bucket: new TokenBucket(this.rate, this.burst, now), seen: now };
      this.#buckets.set(key, e);
    }
    e.seen = now;
    return e.bucket.take(now);
  }
  /** Drops buckets idle long enough to have refilled completely. */
  sweep(now: number = performance.now()): void {
    const full = (this.burst / this.rate) * 1000;
    for (const [k, e] of this.#buckets) if (now - e.seen > full) this.#buckets.delete(k);
  }
  get size(): number {
    return this.#buckets.size;
  }
}
