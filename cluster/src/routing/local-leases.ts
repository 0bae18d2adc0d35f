import type { LeaseHolder, LeaseStore } from './types.js';

/** Shared in-memory lease table: what a Redis server is to the Redis lease stores. */
export class LocalLeaseBackend {
  readonly leases = new Map<string, { holder: LeaseHolder; expiresAt: number }>();
  /** Last fencing token per resource; survives the lease, like Redis's INCR counter. */
  readonly fences = new Map<string, number>();
  constructor(readonly now: () => number = Date.now) {}
}

/** Leases inside one process (or between instances over one backend object, in tests). */
export class LocalLeaseStore implements LeaseStore {
  constructor(private readonly backend: LocalLeaseBackend = new LocalLeaseBackend()) {}

  #current(resource: string): LeaseHolder | null {
    const l = this.backend.leases.get(resource);
    if (!l) return null;
    if (l.expiresAt <= this.backend.now()) {
      this.backend.leases.delete(resource);
      return null;
    }
    return l.holder;
  }

  acquire(resource: string, nodeId: string, ttlMs: number): Promise<LeaseHolder | null> {
    checkTtl(ttlMs);
    if (this.#current(resource)) return Promise.resolve(null);
    const token = (this.backend.fences.get(resource) ?? 0) + 1;
    this.backend.fences.set(resource, token);
    const holder = { nodeId, token };
    this.backend.leases.set(resource, { holder, expiresAt: this.backend.now() + ttlMs });
    return Promise.resolve({ ...holder });
  }

  renew(resource: string, holder: LeaseHolder, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    const cur = this.#current(resource);
    if (!cur || cur.nodeId !== holder.nodeId || cur.token !== holder.token) return Promise.resolve(false);
    this.backend.leases.set(resource, { holder: cur, expiresAt: this.backend.now() + ttlMs });
    return Promise.resolve(true);
  }

  release(resource: string, holder: LeaseHolder): Promise<boolean> {
    const cur = this.#current(resource);
    if (!cur || cur.nodeId !== holder.nodeId || cur.token !== holder.token) return Promise.resolve(false);
    this.backend.leases.delete(resource);
    return Promise.resolve(true);
  }

  holder(resource: string): Promise<LeaseHolder | null> {
    const cur = this.#current(resource);
    return Promise.resolve(cur ? { ...cur } : null);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export function checkTtl(ttlMs: number): void {
  if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new TypeError('ttlMs must be a positive integer');
}
