import type { Redis } from 'ioredis';
import { asUserId, nicknameKey, type ChannelId, type UserId } from '@voice/protocol';
import { LuaScript } from '../routing/lua.js';
import { redisCall } from './redis-errors.js';
import type { JoinResult, SessionDirectory, SessionRecord } from './types.js';

/*
 * Keys (all under the prefix): `sess:<user>` hash {rec: JSON, nick: claim key, ch: channel id or ''}
 * with PX ttl; `nick:<key>` the claiming user id with PX ttl; `online` and `seats:<channel>` sorted
 * sets scored by expiry time on the Redis server's clock (TIME), pruned as they are read. Scripts
 * build keys from the prefix they are given: this targets one Redis primary (with Sentinel), not
 * Redis Cluster.
 */

const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

// KEYS[1] seats; ARGV user, limit, ttl. Prunes expired seats, then checks the limit and seats.
const JOIN = new LuaScript(`${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false then
  local limit = tonumber(ARGV[2])
  if limit > 0 and redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`);
// KEYS[1] seats; ARGV user. Only a live seat counts as left.
const LEAVE = new LuaScript(`${NOW}
local exp = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return (exp ~= false and tonumber(exp) > now) and 1 or 0`);
// KEYS[1] seats or online set; returns live members.
const LIVE = new LuaScript(`${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZRANGE', KEYS[1], 0, -1)`);
const CLEAR = new LuaScript(`${NOW}
local m = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
redis.call('DEL', KEYS[1])
return m`);
// KEYS[1] online; ARGV user, ttl.
const ONLINE = new LuaScript(`${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 1`);
const IS_ONLINE = new LuaScript(`${NOW}
local exp = redis.call('ZSCORE', KEYS[1], ARGV[1])
return (exp ~= false and tonumber(exp) > now) and 1 or 0`);
// KEYS[1] nick; ARGV user, ttl.
const CLAIM = new LuaScript(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`);
const RELEASE = new LuaScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`);
// KEYS[1] online; ARGV prefix, ttl, users... Returns the users whose session had expired.
const TOUCH = new LuaScript(`${NOW}
local prefix, ttl = ARGV[1], tonumber(ARGV[2])
local expired = {}
for i = 3, #ARGV do
  local user = ARGV[i]
  local sess = prefix .. 'sess:' .. user
  if redis.call('PEXPIRE', sess, ttl) == 0 then
    expired[#expired + 1] = user
  else
    local f = redis.call('HMGET', sess, 'nick', 'ch')
    local nick = prefix .. 'nick:' .. f[1]
    if redis.call('GET', nick) == user then redis.call('PEXPIRE', nick, ttl) end
    redis.call('ZADD', KEYS[1], 'XX', now + ttl, user)
    if f[2] and f[2] ~= '' then
      local seats = prefix .. 'seats:' .. f[2]
      if redis.call('ZSCORE', seats, user) then
        redis.call('ZADD', seats, now + ttl, user)
        redis.call('PEXPIRE', seats, ttl)
      end
    end
  end
end
return expired`);

/** Session directory over Redis; two processes over one server see one directory. */
export class RedisSessionDirectory implements SessionDirectory {
  readonly ttlMs: number;
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    opts: { ttlMs: number },
  ) {
    if (!Number.isInteger(opts.ttlMs) || opts.ttlMs < 1)
      throw new TypeError('ttlMs must be a positive integer');
    this.ttlMs = opts.ttlMs;
  }

  #k(kind: string, id: string): string {
    return `${this.prefix}${kind}:${id}`;
  }
  get #online(): string {
    return `${this.prefix}online`;
  }

  async putSession(r: SessionRecord): Promise<void> {
    return redisCall('putSession', async () => {
      const key = this.#k('sess', r.userId);
      await this.redis
        .multi()
        .del(key)
        .hset(key, { rec: JSON.stringify(r), nick: nicknameKey(r.nickname), ch: r.channelId ?? '' })
        .pexpire(key, this.ttlMs)
        .exec();
    });
  }
  async getSession(userId: UserId): Promise<SessionRecord | null> {
    return redisCall('getSession', async () => {
      const raw = await this.redis.hget(this.#k('sess', userId), 'rec');
      if (raw === null) return null;
      try {
        return JSON.parse(raw) as SessionRecord;
      } catch {
        return null;
      }
    });
  }
  async deleteSession(userId: UserId): Promise<void> {
    return redisCall('deleteSession', async () => {
      await this.redis.del(this.#k('sess', userId));
    });
  }
  async touch(userIds: readonly UserId[]): Promise<UserId[]> {
    return redisCall('touch', async () => {
      if (userIds.length === 0) return [];
      const expired = (await TOUCH.run(
        this.redis,
        [this.#online],
        [this.prefix, this.ttlMs, ...userIds],
      )) as string[];
      return expired.map(asUserId);
    });
  }

  async claimNickname(nickname: string, userId: UserId): Promise<boolean> {
    return redisCall('claimNickname', async () => {
      return (
        (await CLAIM.run(this.redis, [this.#k('nick', nicknameKey(nickname))], [userId, this.ttlMs])) === 1
      );
    });
  }
  async releaseNickname(nickname: string, userId: UserId): Promise<void> {
    return redisCall('releaseNickname', async () => {
      await RELEASE.run(this.redis, [this.#k('nick', nicknameKey(nickname))], [userId]);
    });
  }
  async setOnline(userId: UserId, online: boolean): Promise<void> {
    return redisCall('setOnline', async () => {
      if (online) await ONLINE.run(this.redis, [this.#online], [userId, this.ttlMs]);
      else await this.redis.zrem(this.#online, userId);
    });
  }
  async isOnline(userId: UserId): Promise<boolean> {
    return redisCall('isOnline', async () => {
      return (await IS_ONLINE.run(this.redis, [this.#online], [userId])) === 1;
    });
  }
  async onlineUsers(): Promise<UserId[]> {
    return redisCall('onlineUsers', async () => {
      return ((await LIVE.run(this.redis, [this.#online], [])) as string[]).map(asUserId);
    });
  }
  async joinChannel(channelId: ChannelId, userId: UserId, limit: number): Promise<JoinResult> {
    return redisCall('joinChannel', async () => {
      const ok = await JOIN.run(this.redis, [this.#k('seats', channelId)], [userId, limit, this.ttlMs]);
      return ok === 1 ? { ok: true } : { ok: false, reason: 'full' };
    });
  }
  async leaveChannel(channelId: ChannelId, userId: UserId): Promise<boolean> {
    return redisCall('leaveChannel', async () => {
      return (await LEAVE.run(this.redis, [this.#k('seats', channelId)], [userId])) === 1;
    });
  }
  async channelMembers(channelId: ChannelId): Promise<UserId[]> {
    return redisCall('channelMembers', async () => {
      return ((await LIVE.run(this.redis, [this.#k('seats', channelId)], [])) as string[]).map(asUserId);
    });
  }
  async memberCounts(channelIds: readonly ChannelId[]): Promise<Map<ChannelId, number>> {
    return redisCall('memberCounts', async () => {
      const out = new Map<ChannelId, number>();
      if (channelIds.length === 0) return out;
      const [sec, micro] = await this.redis.time();
      const now = Number(sec) * 1000 + Math.floor(Number(micro) / 1000);
      const p = this.redis.pipeline();
      for (const id of channelIds) p.zcount(this.#k('seats', id), `(${now}`, '+inf');
      const res = (await p.exec()) ?? [];
      channelIds.forEach((id, i) => out.set(id, Number(res[i]?.[1] ?? 0)));
      return out;
    });
  }
  async clearChannel(channelId: ChannelId): Promise<UserId[]> {
    return redisCall('clearChannel', async () => {
      return ((await CLEAR.run(this.redis, [this.#k('seats', channelId)], [])) as string[]).map(asUserId);
    });
  }
  /** The connection belongs to start-up code, which closes it after every user of it. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
