import { RateLimitedError } from '@voice/protocol';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { KeyedRateLimiter } from '../ratelimit.js';

/** What one address spends from its budget. */
export type AddressSpend = 'new_user' | 'channel_creation';

/**
 * Per-address budgets for what leaves permanent state behind: new users and channels. A per-user
 * cap alone does not stop one host that logs in many accounts. Each is a token bucket refilled per
 * hour, in an LRU-bounded map (`addressesTracked`): a forgotten address starts again with a full
 * burst, which is what the bucket would hold after the idle time that got it evicted anyway.
 */
export class AddressBudget {
  readonly #buckets: Record<AddressSpend, KeyedRateLimiter>;

  constructor(
    limits: Config['limits'],
    private readonly metrics: Metrics,
  ) {
    const perSecond = (perHour: number) => perHour / 3600;
    this.#buckets = {
      new_user: new KeyedRateLimiter(
        perSecond(limits.newUsersPerAddressPerHour),
        limits.newUserBurstPerAddress,
        limits.addressesTracked,
      ),
      channel_creation: new KeyedRateLimiter(
        perSecond(limits.channelCreatesPerAddressPerHour),
        limits.channelCreateBurstPerAddress,
        limits.addressesTracked,
      ),
    };
  }

  /** Takes one from `address`'s budget, or throws RATE_LIMITED with when one is back. */
  spend(what: AddressSpend, address: string, now: number = performance.now()): void {
    const b = this.#buckets[what];
    if (b.take(address, now)) return;
    this.metrics.rateLimited.inc({
      limit: what === 'new_user' ? 'address_new_users' : 'address_channel_creations',
    });
    throw new RateLimitedError(
      b.retryAfterMs(address, now),
      what === 'new_user'
        ? 'too many new users from this address'
        : 'too many channels created from this address',
    );
  }

  /** Forgets addresses whose budget is full again (a periodic sweep bounds the maps in time too). */
  sweep(now: number = performance.now()): void {
    for (const b of Object.values(this.#buckets)) b.sweep(now, 10_000);
  }
}
