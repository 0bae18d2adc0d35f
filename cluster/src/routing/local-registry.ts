import type { NodeInfo, NodeRegistry } from './types.js';

/** Shared in-memory registry table (what the Redis server is to Redis registries). */
export class LocalRegistryBackend {
  readonly nodes = new Map<string, { info: NodeInfo; expiresAt: number }>();
  constructor(readonly now: () => number = Date.now) {}
}

/** Node registry of one process: the single node registers itself, so routing runs the same code. */
export class LocalNodeRegistry implements NodeRegistry {
  constructor(private readonly backend: LocalRegistryBackend = new LocalRegistryBackend()) {}

  #live(nodeId: string): NodeInfo | null {
    const e = this.backend.nodes.get(nodeId);
    if (!e) return null;
    if (e.expiresAt <= this.backend.now()) {
      this.backend.nodes.delete(nodeId);
      return null;
    }
    return structuredClone(e.info);
  }

  announce(info: NodeInfo, ttlMs: number): Promise<void> {
    if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new TypeError('ttlMs must be a positive integer');
    this.backend.nodes.set(info.nodeId, {
      info: structuredClone(info),
      expiresAt: this.backend.now() + ttlMs,
    });
    return Promise.resolve();
  }
  withdraw(nodeId: string): Promise<void> {
    this.backend.nodes.delete(nodeId);
    return Promise.resolve();
  }
  get(nodeId: string): Promise<NodeInfo | null> {
    return Promise.resolve(this.#live(nodeId));
  }
  live(): Promise<NodeInfo[]> {
    const out: NodeInfo[] = [];
    for (const id of [...this.backend.nodes.keys()]) {
      const info = this.#live(id);
      if (info) out.push(info);
    }
    return Promise.resolve(out);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}
