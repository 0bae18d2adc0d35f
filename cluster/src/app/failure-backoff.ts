export interface BackoffPolicy {
  /** Failures before the first wait: the `freeFailures`-th failure imposes `baseMs`. */
  freeFailures: number;
  /** Wait after the first failure past the free ones; doubles with each further failure. */
  baseMs: number;
  maxMs: number;
  /** Keys remembered; when full, the least recently failed key is forgotten. */
  maxKeys: number;
}

interface Entry {
  failures: number;
  /** No attempt before this time (ms, the caller's clock). */
  until: number;
  last: number;
}

/**
 * Exponential back-off after failures, per key (a user, a channel). Bounded: an entry quiet for
 * twice the longest wait is forgotten, and past `maxKeys` the least recently failed goes first.
 * Time is passed in, so tests and callers share one clock.
 */
export class FailureBackoff {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly policy: BackoffPolicy) {
    const { freeFailures, baseMs, maxMs, maxKeys } = policy;
    if (!Number.isInteger(freeFailures) || freeFailures < 1) throw new TypeError('freeFailures must be >= 1');
    if (!(baseMs > 0) || !(maxMs >= baseMs)) throw new TypeError('need 0 < baseMs <= maxMs');
    if (!Number.isInteger(maxKeys) || maxKeys < 1) throw new TypeError('maxKeys must be >= 1');
  }

  /** Milliseconds before `key` may try again; 0 when it may now. */
  retryAfter(key: string, now: number): number {
    const e = this.#live(key, now);
    return e ? Math.max(0, e.until - now) : 0;
  }

  /** Counts a failure and returns the wait it imposes (0 while within the free failures). */
  fail(key: string, now: number): number {
    let e = this.#live(key, now);
    if (e)
      this.#entries.delete(key); // re-inserted last: the map's order is least recently failed first
    else {
      if (this.#entries.size >= this.policy.maxKeys) {
        const oldest = this.#entries.keys().next().value;
        if (oldest !== undefined) this.#entries.delete(oldest);
      }
      e = { failures: 0, until: now, last: now };
    }
    e.failures++;
    e.last = now;
    const wait = this.#waitAfter(e.failures);
    e.until = now + wait;
    this.#entries.set(key, e);
    return wait;
  }

  /** 0 for the first `freeFailures - 1` failures; then baseMs, doubling, capped at maxMs. */
  #waitAfter(failures: number): number {
    const over = failures - this.policy.freeFailures;
    if (over < 0) return 0;
    return Math.min(this.policy.maxMs, this.policy.baseMs * 2 ** Math.min(over, 40));
  }

  /** Takes back one failure (an attempt charged in advance that turned out right or never ran). */
  refund(key: string): void {
    const e = this.#entries.get(key);
    if (!e) return;
    e.failures--;
    if (e.failures <= 0) this.#entries.delete(key);
    else e.until = e.last + this.#waitAfter(e.failures);
  }

  /** Forgets the key's failures (it proved it knows the secret). */
  forgive(key: string): void {
    this.#entries.delete(key);
  }

  get size(): number {
    return this.#entries.size;
  }

  #live(key: string, now: number): Entry | undefined {
    const e = this.#entries.get(key);
    if (e && now - e.last > 2 * this.policy.maxMs && now >= e.until) {
      this.#entries.delete(key);
      return undefined;
    }
    return e;
  }
}
