import type { LeaseHolder, LeaseStore } from './types.js';

export interface LeaseKeeperOptions {
  ttlMs: number;
  /** Renewal period; a third of the TTL leaves two tries before expiry. */
  renewMs?: number;
  /** The lease went to another node (or expired and was taken): stop using the resource now. */
  onLost: (holder: LeaseHolder) => void;
  /** A renewal could not reach the store. The lease is kept (see below); reported for metrics. */
  onRenewError?: (err: unknown) => void;
}

/**
 * Holds one lease: renews it every `renewMs` and calls `onLost` once when a renewal finds it gone.
 * A renewal that cannot reach the store keeps the lease: when the store is down for everyone, no
 * other node can take over either, so the owner keeps mixing. When the store is back, a lease that
 * expired meanwhile is taken again if free (with a new fencing token), or reported lost if another
 * node took it.
 */
export class LeaseKeeper {
  #holder: LeaseHolder;
  #timer: NodeJS.Timeout | null = null;
  #state: 'held' | 'lost' | 'released' = 'held';
  readonly #renewMs: number;

  private constructor(
    private readonly store: LeaseStore,
    readonly resource: string,
    holder: LeaseHolder,
    private readonly opts: LeaseKeeperOptions,
  ) {
    this.#holder = holder;
    this.#renewMs = opts.renewMs ?? Math.max(1, Math.floor(opts.ttlMs / 3));
    this.#schedule();
  }

  /** Takes the lease and starts renewing it; null when another node holds it. */
  static async acquire(
    store: LeaseStore,
    resource: string,
    nodeId: string,
    opts: LeaseKeeperOptions,
  ): Promise<LeaseKeeper | null> {
    const holder = await store.acquire(resource, nodeId, opts.ttlMs);
    return holder ? new LeaseKeeper(store, resource, holder, opts) : null;
  }

  get holder(): LeaseHolder {
    return this.#holder;
  }
  get held(): boolean {
    return this.#state === 'held';
  }

  #schedule(): void {
    this.#timer = setTimeout(() => void this.#renew(), this.#renewMs);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    this.#timer = null;
    if (this.#state !== 'held') return;
    let kept: boolean;
    try {
      kept = await this.store.renew(this.resource, this.#holder, this.opts.ttlMs);
      if (!kept && this.#state === 'held') {
        // Expired while the store was unreachable: free again means ours again, with a new token.
        const again = await this.store.acquire(this.resource, this.#holder.nodeId, this.opts.ttlMs);
        if (again) {
          this.#holder = again;
          kept = true;
        }
      }
    } catch (err) {
      this.opts.onRenewError?.(err);
      kept = true;
    }
    if (this.#state !== 'held') return;
    if (kept) return this.#schedule();
    this.#state = 'lost';
    this.opts.onLost(this.#holder);
  }

  /** Stops renewing and gives the lease back if still held. Idempotent. */
  async release(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#state !== 'held') return;
    this.#state = 'released';
    await this.store.release(this.resource, this.#holder).catch(() => false);
  }
}
