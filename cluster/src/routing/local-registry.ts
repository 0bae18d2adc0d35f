import type { LiveNode, NodeInfo, NodeRegistry } from './types.js';

interface Entry {
  info: NodeInfo;
  announcedAt: number;
  expiresAt: number;
}

/** Shared in-memory registry table (what the Redis server is to Redis registries). */
export class LocalRegistryBackend {
  readonly nodes = new Map<string, Entry>();
  constructor(readonly now: () => number = Date.now) {}
}

/** Node registry of one process: the single node registers itself, so routing runs the same code. */
export class LocalNodeRegistry implements NodeRegistry {
  constructor(private readonly backend: LocalRegistryBackend = new LocalRegistryBackend()) {}

  #entry(nodeId: string, now: number): Entry | null {
    const e = this.backend.nodes.get(nodeId);
    if (!e) return null;
    if (e.expiresAt <= now) {
      this.backend.nodes.delete(nodeId);
      return null;
    }
    return e;
  }

  announce(info: NodeInfo, ttlMs: number): Promise<void> {
    if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new TypeError('ttlMs must be a positive integer');
    const now = this.backend.now();
    this.backend.nodes.set(info.nodeId, {
      info: structuredClone(info),
      announcedAt: now,
      expiresAt: now + ttlMs,
    });
    return Promise.resolve();
  }
  withdraw(nodeId: string): Promise<void> {
    this.backend.nodes.delete(nodeId);
    return Promise.resolve();
  }
  get(nodeId: string): Promise<NodeInfo | null> {
    const e = this.#entry(nodeId, this.backend.now());
    return Promise.resolve(e ? structuredClone(e.info) : null);
  }
  live(): Promise<LiveNode[]> {
    const now = this.backend.now();
    const out: LiveNode[] = [];
    for (const id of [...this.backend.nodes.keys()]) {
      const e = this.#entry(id, now);
      if (e) out.push({ ...structuredClone(e.info), ageMs: now - e.announcedAt });
    }
    return Promise.resolve(out);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
