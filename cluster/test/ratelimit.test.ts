import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { KeyedRateLimiter, TokenBucket } from '../src/ratelimit.js';
import { newSpaceUsed } from '../../test-support/heap.js';

// Rate so low that a drained bucket stays drained for the test: take() is then true exactly when
// the key had no bucket (new, or evicted), which makes eviction observable from outside.
const FROZEN = 1e-9;

describe('KeyedRateLimiter', () => {
  it('evicts the least recently used key, not the first inserted', () => {
    const l = new KeyedRateLimiter(FROZEN, 1, 2);
    expect(l.take('a', 0)).toBe(true);
    expect(l.take('b', 1)).toBe(true);
    expect(l.take('a', 2)).toBe(false); // a is drained, and now the most recently used
    expect(l.take('c', 3)).toBe(true); // full: evicts b (least recently used)
    expect(l.take('a', 4)).toBe(false); // a kept its drained bucket
    expect(l.take('b', 5)).toBe(true); // b was forgotten: a fresh bucket
    expect(l.size).toBe(2);
  });

  it('matches a reference LRU model on any sequence of keys', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 200 }),
        (maxKeys, keys) => {
          const l = new KeyedRateLimiter(FROZEN, 1, maxKeys);
          const lru: number[] = []; // least recently used first
          keys.forEach((k, t) => {
            const i = lru.indexOf(k);
            const known = i >= 0;
            if (known) lru.splice(i, 1);
            else if (lru.length === maxKeys) lru.shift();
            lru.push(k);
            expect(l.take(String(k), t)).toBe(!known);
          });
          expect(l.size).toBe(lru.length);
        },
      ),
      { seed: 7, numRuns: 300 },
    );
  });

  it('sweeps idle buckets from the old end, stops at the first in use, and honours the limit', () => {
    // rate 10/s, burst 10: a bucket idle for over 1 s has refilled and can be forgotten.
    const l = new KeyedRateLimiter(10, 10, 100);
    for (let i = 0; i < 5; i++) l.take(`old${i}`, 0);
    l.take('recent', 900);
    l.take('old0', 950); // touched: no longer at the old end
    expect(l.sweep(1500, 2)).toBe(2); // old1, old2 (limit 2)
    expect(l.size).toBe(4);
    expect(l.sweep(1500)).toBe(2); // old3, old4; stops at 'recent' (idle 600 ms)
    expect(l.size).toBe(2);
    expect(l.sweep(2000)).toBe(2); // both idle over 1 s now
    expect(l.size).toBe(0);
  });

  it('says exactly when a refused key may take again: never early, never later than needed', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0.01, max: 100, noNaN: true }),
        fc.integer({ min: 1, max: 20 }),
        fc.double({ min: 0, max: 10_000, noNaN: true }),
        (rate, burst, idle) => {
          const drained = () => {
            const l = new KeyedRateLimiter(rate, burst, 4);
            for (let i = 0; i < burst; i++) expect(l.take('k', 0)).toBe(true);
            expect(l.take('k', 0)).toBe(false);
            return l;
          };
          const l = drained();
          expect(l.retryAfterMs('never seen', 0)).toBe(0);
          const t = idle;
          const wait = l.retryAfterMs('k', t);
          if (wait === 0) return void expect(l.take('k', t)).toBe(true);
          // One ms short of the answer is too early (the answer is rounded up to whole ms) ...
          expect(drained().take('k', t + wait - 1)).toBe(false);
          // ... and the answer itself is enough.
          expect(l.take('k', t + wait)).toBe(true);
        },
      ),
    );
  });

  it('refuses to say when a cost above the burst is banked (it never is)', () => {
    const b = new TokenBucket(10, 2, 0);
    expect(() => b.msUntil(0, 3)).toThrow(TypeError);
    expect(b.msUntil(0, 2)).toBe(0);
  });

  it('answers a refusal without allocating: 100,000 msUntil on a drained bucket', () => {
    // A refusal is the flood path: each one asks when to come back.
    const b = new TokenBucket(5, 2, 0);
    b.take(0, 2);
    const run = (): number => {
      let waits = 0;
      for (let i = 0; i < 100_000; i++) waits += b.msUntil(i / 1000);
      return waits;
    };
    // Drained throughout (about 200 ms each); the warm-up runs let V8 optimise, or the interpreter
    // boxes the doubles it computes.
    for (let k = 0; k < 5; k++) expect(run()).toBeGreaterThan(100_000 * 100);
    const before = newSpaceUsed();
    run();
    const bytes = newSpaceUsed() - before;
    // A scavenge during the loop would make this negative and prove nothing: refuse that.
    expect(bytes).toBeGreaterThanOrEqual(0);
    expect(bytes).toBeLessThan(16 * 1024);
  });

  it('rejects a bad size', () => {
    expect(() => new KeyedRateLimiter(1, 1, 0)).toThrow(TypeError);
  });
});
