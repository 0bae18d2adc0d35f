import type { AppContext } from './context.js';

const DAY_MS = 86_400_000;

/**
 * Deletes, on a timer, users who own no channel and can no longer log in (no token used within
 * `tokenTtlDays`, or no token at all) or never connected a WebSocket within `unconnectedAfterMs`
 * of their log-in, so that log-ins do not fill the store. Connected users
 * are kept whatever their age. One bounded batch per run; runs never overlap; a failed run is
 * logged and counted and the next one tries again.
 */
export class UserPurge {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<number> | null = null;
  #closed = false;

  constructor(private readonly ctx: AppContext) {}

  start(): void {
    const { intervalMs } = this.ctx.config.userPurge;
    if (this.#closed || this.#timer || intervalMs === 0) return;
    this.#timer = setInterval(() => {
      this.runOnce().catch((err: unknown) => {
        this.ctx.metrics.backgroundErrors.inc({ task: 'user purge' });
        this.ctx.log.error({ err }, 'user purge failed');
      });
    }, intervalMs);
    this.#timer.unref();
  }

  /** One batch now (or joins the one under way); resolves with how many users were deleted. */
  runOnce(): Promise<number> {
    this.#running ??= this.#batch().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #batch(): Promise<number> {
    if (this.#closed) return 0;
    const { config, store, directory } = this.ctx;
    const { unconnectedAfterMs } = config.userPurge;
    const now = this.ctx.now();
    const purged = await store.purgeUsers({
      staleBefore: now - config.tokenTtlDays * DAY_MS,
      unconnectedBefore: unconnectedAfterMs === 0 ? 0 : now - unconnectedAfterMs,
      keep: await directory.onlineUsers(),
      limit: config.userPurge.batch,
    });
    if (purged.length > 0) {
      this.ctx.metrics.usersPurged.inc(purged.length);
      this.ctx.log.info({ count: purged.length }, 'purged users who can no longer log in and own nothing');
    }
    return purged.length;
  }

  /** Stops the timer and waits for a batch under way. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#running?.catch(() => {});
  }
}
