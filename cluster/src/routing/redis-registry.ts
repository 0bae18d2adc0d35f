import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { LiveNode, NodeInfo, NodeRegistry } from './types.js';

const NodeInfoSchema = z.object({
  nodeId: z.string().min(1),
  wsUrl: z.string(),
  udpHost: z.string(),
  udpPort: z.number().int().min(0).max(65_535),
  load: z.object({ channels: z.number(), members: z.number(), tickLateMs: z.number(), cpu: z.number() }),
  draining: z.boolean(),
  updatedAt: z.number(),
  /** The TTL the entry was announced with, for its age. */
  ttlMs: z.number().int().positive().optional(),
}) satisfies z.ZodType<NodeInfo & { ttlMs?: number | undefined }>;

/** Bound on the ids index scan; a cluster has a handful of nodes, not thousands. */
const MAX_NODES = 1024;

/**
 * One key per node (`<prefix>node:<id>`, JSON, PX ttl) plus a set of ids to find them. Liveness is
 * the key's expiry on the Redis server, and an entry's age is its TTL as announced (kept in the
 * value) less what PTTL says is left, so neither needs agreement between the nodes' clocks; ids
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
      .set(this.#key(info.nodeId), JSON.stringify({ ...info, ttlMs }), 'PX', ttlMs)
      .sadd(this.#index, info.nodeId)
      .exec();
  }

  async withdraw(nodeId: string): Promise<void> {
    await this.redis.multi().del(this.#key(nodeId)).srem(this.#index, nodeId).exec();
  }

  async get(nodeId: string): Promise<NodeInfo | null> {
    const entry = parse(await this.redis.get(this.#key(nodeId)));
    if (!entry) return null;
    const { ttlMs: _, ...info } = entry;
    return info;
  }

  async live(): Promise<LiveNode[]> {
    const ids = await this.redis.srandmember(this.#index, MAX_NODES);
    if (ids.length === 0) return [];
    // One round trip (a pipeline): every value and what is left of its TTL.
    const tx = this.redis.pipeline().mget(ids.map((id) => this.#key(id)));
    for (const id of ids) tx.pttl(this.#key(id));
    const replies = (await tx.exec()) ?? [];
    const values = (replies[0]?.[1] ?? []) as (string | null)[];
    const out: LiveNode[] = [];
    const gone: string[] = [];
    ids.forEach((id, i) => {
      const entry = parse(values[i] ?? null);
      const left = Number(replies[i + 1]?.[1]);
      if (!entry) return void gone.push(id);
      const { ttlMs, ...info } = entry;
      // An entry from a node that did not store its TTL (an older version) counts as fresh.
      const ageMs = ttlMs === undefined || !(left >= 0) ? 0 : Math.max(0, ttlMs - left);
      out.push({ ...info, ageMs });
    });
    if (gone.length > 0) await this.redis.srem(this.#index, ...gone);
    return out;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

function parse(v: string | null): (NodeInfo & { ttlMs?: number | undefined }) | null {
  if (v === null) return null;
  try {
    const r = NodeInfoSchema.safeParse(JSON.parse(v));
    return r.success ? r.data : null;
  } catch {
    return null;
  }
}
