import pLimit, { type LimitFunction } from 'p-limit';

/**
 * The voice binding changes of one session (hello and resume, join and re-join, leave, a move to a
 * new owner, the session's end) run one at a time, in the order they were asked for. Two of them at
 * once would each attach the member with a fresh key: the owner keeps the later attach, while the
 * session (and so the client) can keep the reply that came back last, a key nobody accepts.
 *
 * A change's result reaches its caller before the next change starts (the turn is held for one
 * more macrotask, and callers send their reply from microtasks), so a reply carrying a binding
 * leaves before a later change can push another: what the client applies last is what the server
 * holds. Nothing is held while idle.
 */
export class BindingChain {
  readonly #limit: LimitFunction = pLimit(1);

  /** `max`: changes waiting or running past which `tryRun` refuses. */
  constructor(readonly max: number) {
    if (!Number.isInteger(max) || max < 1) throw new TypeError(`max must be a positive integer, not ${max}`);
  }

  /** Changes waiting or running. */
  get size(): number {
    return this.#limit.activeCount + this.#limit.pendingCount;
  }

  /** Runs `work` in turn; null (and nothing runs) when `max` changes are already waiting or running. */
  tryRun<T>(work: () => Promise<T>): Promise<T> | null {
    return this.size >= this.max ? null : this.run(work);
  }

  /**
   * Runs `work` in turn, past the bound: only for what the server itself must do (a session
   * ending, its channel deleted).
   */
  run<T>(work: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      void this.#limit(async () => {
        await Promise.resolve().then(work).then(resolve, reject);
        await new Promise<void>((r) => setImmediate(r));
      });
    });
  }
}
