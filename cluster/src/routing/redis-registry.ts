import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { NodeInfo, NodeRegistry } from './types.js';

const NodeInfoSchema = z.object({
  nodeId: z.string().min(1),
  wsUrl: z.string(),
  udpHost: z.string(),
  udpPort: z.number().int().min(0).max(65_535),
  load: z.object({ channels: z.number(), members: z.number(), tickLateMs: z.number(), cpu: z.number() }),
  draining: z.boolean(),
  updatedAt: z.number(),
}) satisfies z.ZodType<NodeInfo>;

/** Bound on the ids index scan; a cluster has a handful of nodes, not thousands. */
const MAX_NODES = 1024;

/**
 * One key per node (`<prefix>node:<id>`, JSON, PX ttl) plus a set of ids to find them. Liveness is
 * the key's expiry on the Redis server, so it needs no agreement between the nodes' clocks; ids
 * whose key expired are pruned from the set when listed.
 */
export class RedisNodeRegistry implements NodeRegistry {
  readonly #index: string;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {
    this.#index = `${prefix}nodes`;
  }

  #key(nodeId: string): string {
    return `${this.prefix}node:${nodeId}`;
  }

  async announce(info: NodeInfo, ttlMs: number): Promise<void> {
    if (!Number.isInteger(ttlMs) || ttlMs < 1) throw new TypeError('ttlMs must be a positive integer');
    await this.redis
      .multi()
      .set(this.#key(info.nodeId), JSON.stringify(info), 'PX', ttlMs)
      .sadd(this.#index, info.nodeId)
      .exec();
  }

  async withdraw(nodeId: string): Promise<void> {
    await this.redis.multi().del(this.#key(nodeId)).srem(this.#index, nodeId).exec();
  }

  async get(nodeId: string): Promise<NodeInfo | null> {
    return parse(await this.redis.get(this.#key(nodeId)));
  }

  async live(): Promise<NodeInfo[]> {
    const ids = await this.redis.srandmember(this.#index, MAX_NODES);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => this.#key(id)));
    const out: NodeInfo[] = [];
    const gone: string[] = [];
    values.forEach((v, i) => {
      const info = parse(v);
      if (info) out.push(info);
      else gone.push(ids[i]!);
    });
    if (gone.length > 0) await this.redis.srem(this.#index, ...gone);
    return out;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function parse(v: string | null): NodeInfo | null {
  if (v === null) return null;
  try {
    const r = NodeInfoSchema.safeParse(JSON.parse(v));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
