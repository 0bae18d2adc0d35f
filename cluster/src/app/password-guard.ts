import pLimit, { type LimitFunction } from 'p-limit';
import { RateLimitedError, type ChannelId, type UserId } from '@voice/protocol';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { hashPassword, verifyPassword } from '../state/passwords.js';
import { FailureBackoff } from './failure-backoff.js';

/** How long a client told "the scrypt queue is full" should wait: about one queue's worth of work. */
const BUSY_RETRY_MS = 1_000;

/**
 * Every scrypt run of the server goes through here. Guessing is slowed per user and per channel
 * (exponential back-off, charged before the hash runs so parallel guesses cannot slip past), and
 * scrypt work is bounded (a few at a time, a short queue, one per user) so it never delays anyone
 * else's requests: past the bounds the request fails at once with RATE_LIMITED and a retry time.
 * Memory is bounded by `maxTracked` keys per back-off map and the queue; it holds no timer.
 */
export class PasswordGuard {
  readonly #limit: LimitFunction;
  readonly #queue: number;
  readonly #byUser: FailureBackoff;
  readonly #byChannel: FailureBackoff;
  readonly #busyUsers = new Set<UserId>();

  constructor(
    config: Config['passwords'],
    private readonly metrics: Metrics,
    /** A monotonic clock: a wall-clock step back must not lock everyone out for its size. */
    private readonly now: () => number = () => performance.now(),
  ) {
    this.#limit = pLimit(config.concurrency);
    this.#queue = config.queue;
    const common = { baseMs: config.backoffBaseMs, maxKeys: config.maxTracked };
    this.#byUser = new FailureBackoff({
      ...common,
      freeFailures: config.freeFailuresPerUser,
      maxMs: Math.max(config.backoffBaseMs, config.maxBackoffPerUserMs),
    });
    this.#byChannel = new FailureBackoff({
      ...common,
      freeFailures: config.freeFailuresPerChannel,
      maxMs: Math.max(config.backoffBaseMs, config.maxBackoffPerChannelMs),
    });
  }

  /** Hashes a new channel password (create, update) within the scrypt bounds. */
  hash(userId: UserId | null, password: string): Promise<string> {
    return this.#run(userId, () => hashPassword(password));
  }

  /**
   * Checks a join password. Resolves true or false; rejects with RateLimitedError while the user
   * or the channel is backing off, or when the scrypt bounds are full (no guess is spent then).
   */
  async verify(userId: UserId, channelId: ChannelId, password: string, stored: string): Promise<boolean> {
    const u = `u:${userId}`;
    const c = `c:${channelId}`;
    const t = this.now();
    const wait = Math.max(this.#byUser.retryAfter(u, t), this.#byChannel.retryAfter(c, t));
    if (wait > 0) {
      this.metrics.rateLimited.inc({ limit: 'password_backoff' });
      throw new RateLimitedError(wait, `too many wrong passwords; retry in ${Math.ceil(wait / 1000)} s`);
    }
    this.#byUser.fail(u, t);
    this.#byChannel.fail(c, t);
    let ok = false;
    try {
      ok = await this.#run(userId, () => verifyPassword(password, stored));
    } catch (err) {
      // Refused by the bounds: no guess was made, so none is counted.
      this.#byUser.refund(u);
      this.#byChannel.refund(c);
      throw err;
    }
    if (ok) {
      this.#byUser.forgive(u);
      this.#byChannel.refund(c);
    }
    return ok;
  }

  async #run<T>(userId: UserId | null, work: () => Promise<T>): Promise<T> {
    if (this.#limit.activeCount + this.#limit.pendingCount >= this.#limit.concurrency + this.#queue) {
      this.metrics.rateLimited.inc({ limit: 'password_queue' });
      throw new RateLimitedError(BUSY_RETRY_MS, 'the server is busy checking passwords; retry shortly');
    }
    if (userId !== null) {
      if (this.#busyUsers.has(userId)) {
        this.metrics.rateLimited.inc({ limit: 'password_per_user' });
        throw new RateLimitedError(BUSY_RETRY_MS, 'one password check at a time');
      }
      this.#busyUsers.add(userId);
    }
    try {
      return await this.#limit(work);
    } finally {
      if (userId !== null) this.#busyUsers.delete(userId);
    }
  }
}
