import type { Redis } from 'ioredis';
import { checkTtl } from './local-leases.js';
import { LuaScript } from './lua.js';
import type { LeaseHolder, LeaseStore } from './types.js';

// KEYS[1] lease, KEYS[2] fence counter; ARGV node id, ttl. The token comes from INCR, so it keeps
// increasing across holders and expiries (the counter has no TTL).
const ACQUIRE = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. token, 'PX', ARGV[2])
return token`);
// Compare-and-set: only the exact holder (node and token) extends or drops its lease.
const RENEW = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`);
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`);

const encode = (h: LeaseHolder): string => `${h.nodeId} ${h.token}`;
function decode(v: string | null): LeaseHolder | null {
  if (v === null) return null;
  const at = v.lastIndexOf(' ');
  const token = Number(v.slice(at + 1));
  return at > 0 && Number.isSafeInteger(token) ? { nodeId: v.slice(0, at), token } : null;
}

/** Leases as `SET NX PX` keys holding `<node> <token>`, renewed and released by compare-and-set. */
export class RedisLeaseStore implements LeaseStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  #keys(resource: string): [string, string] {
    return [`${this.prefix}lease:${resource}`, `${this.prefix}fence:${resource}`];
  }

  async acquire(resource: string, nodeId: string, ttlMs: number): Promise<LeaseHolder | null> {
    checkTtl(ttlMs);
    if (nodeId.includes(' ')) throw new TypeError('nodeId must not contain spaces');
    const token = await ACQUIRE.run(this.redis, this.#keys(resource), [nodeId, ttlMs]);
    return typeof token === 'number' ? { nodeId, token } : null;
  }

  async renew(resource: string, holder: LeaseHolder, ttlMs: number): Promise<boolean> {
    checkTtl(ttlMs);
    return (await RENEW.run(this.redis, [this.#keys(resource)[0]], [encode(holder), ttlMs])) === 1;
  }

  async release(resource: string, holder: LeaseHolder): Promise<boolean> {
    return (await RELEASE.run(this.redis, [this.#keys(resource)[0]], [encode(holder)])) === 1;
  }

  async holder(resource: string): Promise<LeaseHolder | null> {
    return decode(await this.redis.get(this.#keys(resource)[0]));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
