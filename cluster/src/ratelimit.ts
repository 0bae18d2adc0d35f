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
  /** Milliseconds until `cost` tokens are banked (0 when they are now). */
  msUntil(now: number = performance.now(), cost = 1): number {
    // More than the bucket holds never comes: the search below would not end.
    if (!(cost <= this.burst)) throw new TypeError(`cost ${cost} exceeds the burst of ${this.burst}`);
    const banked = this.#bankedAt(now, 0);
    if (banked >= cost) return 0;
    let ms = Math.ceil(((cost - banked) / this.rate) * 1000);
    // Floating point can put that a millisecond off either way: the answer is what take() finds
    // enough, and a millisecond less is not.
    while (this.#bankedAt(now, ms) < cost) ms++;
    while (ms > 1 && this.#bankedAt(now, ms - 1) >= cost) ms--;
    return ms;
  }
  /**
   * Tokens banked `ms` after `now`, computed exactly as take() will compute them then. A method, not
   * a closure over `now`: a refusal is the flood path and allocates nothing.
   */
  #bankedAt(now: number, ms: number): number {
    return Math.min(this.burst, this.#tokens + ((now + ms - this.#last) / 1000) * this.rate);
  }
}

/**
 * One bucket per key (a client address), bounded: the map is kept in least-recently-used order, so
 * when it is full the key idle longest is evicted (a flood of spoofed addresses cannot push out an
 * address in steady use), and `sweep` drops idle buckets from the old end without scanning the rest.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, { bucket: TokenBucket; seen: number }>();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxKeys = 100_000,
  ) {
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new TypeError('maxKeys must be a positive integer');
  }
  take(key: string, now: number = performance.now()): boolean {
    let e = this.#buckets.get(key);
    if (e) {
      // Re-inserting moves the key to the young end: iteration order is least recently used first.
      this.#buckets.delete(key);
    } else {
      if (this.#buckets.size >= this.maxKeys) {
        const lru = this.#buckets.keys().next().value;
        if (lru !== undefined) this.#buckets.delete(lru);
      }
      e = { bucket: new TokenBucket(this.rate, this.burst, now), seen: now };
    }
    this.#buckets.set(key, e);
    e.seen = now;
    return e.bucket.take(now);
  }
  /** Milliseconds until `key` may take again (0 for a key not tracked: its bucket would be full). */
  retryAfterMs(key: string, now: number = performance.now()): number {
    return this.#buckets.get(key)?.bucket.msUntil(now) ?? 0;
  }
  /**
   * Drops buckets idle long enough to have refilled completely (forgetting them changes nothing),
   * at most `limit` per call; returns how many. Walks from the least recently used end and stops
   * at the first bucket still in use, so a call costs what it removes.
   */
  sweep(now: number = performance.now(), limit = Infinity): number {
    const full = (this.burst / this.rate) * 1000;
    let removed = 0;
    for (const [k, e] of this.#buckets) {
      if (removed >= limit || now - e.seen <= full) break;
      this.#buckets.delete(k);
      removed++;
    }
    return removed;
  }
  get size(): number {
    return this.#buckets.size;
  }
}
