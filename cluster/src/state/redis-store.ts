import type { Redis } from 'ioredis';
import { asChannelId, asUserId, ProtocolError, type ChannelId, type UserId } from '@voice/protocol';
import { ChannelLimitError, ChannelNameTakenError, ClusterUnavailableError, StoreError } from '../errors.js';
import { LuaScript } from '../routing/lua.js';
import type {
  ChannelCaps,
  ChannelFilter,
  ChannelPatch,
  Page,
  PageResult,
  PurgeCriteria,
  Store,
  StoredChannel,
  StoredServerMute,
  StoredUser,
  UserFilter,
} from './types.js';
import { checkPage, foldKey, parseVoice } from './values.js';

/*
 * The cluster's durable store (Redis with AOF, see deploy/redis). Keys under the prefix:
 *   user:<id>   hash of the user's fields        users      zset id by createdAt (ties by id)
 *   userkeys    hash id -> folded nickname        token:<h>  user id
 *   chan:<id>   hash {json, name: folded name}    channels   zset id by createdAt
 *   chan-names  hash folded name -> id (uniqueness)   owned:<user>  set of channel ids it owns
 *   mutes:<ch>  hash user -> muted at                  user-mutes:<user>, user-tokens:<user>  sets
 * Lists read the ordered ids, filter on the small indexes and fetch only the page: fine for the
 * thousands of users and channels a self-hosted server has (channels are capped by maxChannels).
 */

// KEYS user, users, userkeys, token, user-tokens; ARGV id, nickname, status, createdAt, lastSeenAt,
// folded nick, token hash.
const CREATE_USER = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'nickname', ARGV[2], 'status', ARGV[3], 'createdAt', ARGV[4], 'lastSeenAt', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
redis.call('SET', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[7])
return 1`);
// KEYS token; ARGV prefix, token hash.
const DELETE_TOKEN = new LuaScript(`
local user = redis.call('GET', KEYS[1])
if user == false then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', ARGV[1] .. 'user-tokens:' .. user, ARGV[2])
return 1`);
// KEYS chan, mutes:<ch>, user-mutes:<user>; ARGV user, 1|0, at, channel id. Nothing is kept for a
// channel that does not exist; muting again keeps the first time (as SQLite's ON CONFLICT DO NOTHING).
const SET_MUTE = new LuaScript(`
if ARGV[2] == '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
  redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[3], ARGV[4])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[4])
end
return 1`);
// ARGV prefix, user, staleBefore, unconnectedBefore. Re-checks the purge conditions, then deletes
// the user and all that hangs on it. 1 when deleted.
const PURGE_USER = new LuaScript(`
local p, u = ARGV[1], ARGV[2]
local key = p .. 'user:' .. u
local f = redis.call('HMGET', key, 'lastSeenAt', 'createdAt')
if f[1] == false then return 0 end
if redis.call('SCARD', p .. 'owned:' .. u) > 0 then return 0 end
local tokens = redis.call('SMEMBERS', p .. 'user-tokens:' .. u)
local seen, created = tonumber(f[1]), tonumber(f[2])
local unconnected = seen == created and created < tonumber(ARGV[4])
if seen >= tonumber(ARGV[3]) and #tokens > 0 and not unconnected then return 0 end
for _, t in ipairs(tokens) do redis.call('DEL', p .. 'token:' .. t) end
for _, ch in ipairs(redis.call('SMEMBERS', p .. 'user-mutes:' .. u)) do redis.call('HDEL', p .. 'mutes:' .. ch, u) end
redis.call('DEL', key, p .. 'user-tokens:' .. u, p .. 'user-mutes:' .. u)
redis.call('ZREM', p .. 'users', u)
redis.call('HDEL', p .. 'userkeys', u)
return 1`);
// KEYS user, userkeys; ARGV id, then field/value pairs ('' = unchanged) nickname, folded, status, lastSeenAt.
const UPDATE_USER = new LuaScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'nickname', ARGV[2])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'status', string.sub(ARGV[4], 2)) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'lastSeenAt', ARGV[5]) end
return redis.call('HGETALL', KEYS[1])`);
// KEYS chan, channels, chan-names, owned:<owner>; ARGV id, json, folded name, createdAt, maxTotal,
// maxPerOwner (-1: no cap). 1 created, 0 name taken, -1 total cap, -2 owner cap.
const CREATE_CHANNEL = new LuaScript(`
local maxTotal, maxOwner = tonumber(ARGV[5]), tonumber(ARGV[6])
if maxTotal >= 0 and redis.call('ZCARD', KEYS[2]) >= maxTotal then return -1 end
if maxOwner >= 0 and redis.call('SCARD', KEYS[4]) >= maxOwner then return -2 end
if redis.call('HSETNX', KEYS[3], ARGV[3], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'json', ARGV[2], 'name', ARGV[3], 'owner', KEYS[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return 1`);
// KEYS chan, chan-names; ARGV id, expected json, new json, new folded name.
// -1: changed meanwhile (retry), 0: name taken, 1: done, -2: gone.
const UPDATE_CHANNEL = new LuaScript(`
local cur = redis.call('HMGET', KEYS[1], 'json', 'name')
if cur[1] == false then return -2 end
if cur[1] ~= ARGV[2] then return -1 end
if cur[2] ~= ARGV[4] then
  local other = redis.call('HGET', KEYS[2], ARGV[4])
  if other and other ~= ARGV[1] then return 0 end
  redis.call('HDEL', KEYS[2], cur[2])
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], 'json', ARGV[3], 'name', ARGV[4])
return 1`);
// KEYS chan, channels, chan-names, mutes:<ch>; ARGV id, prefix. Its server mutes go with it.
const DELETE_CHANNEL = new LuaScript(`
local f = redis.call('HMGET', KEYS[1], 'name', 'owner')
if f[1] == false then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[3], f[1]) == ARGV[1] then redis.call('HDEL', KEYS[3], f[1]) end
if f[2] then redis.call('SREM', f[2], ARGV[1]) end
for _, u in ipairs(redis.call('HKEYS', KEYS[4])) do redis.call('SREM', ARGV[2] .. 'user-mutes:' .. u, ARGV[1]) end
redis.call('DEL', KEYS[4])
return 1`);

/** Attempts of an updateChannel compare-and-set against concurrent writers. */
const UPDATE_TRIES = 8;

function toUser(h: Record<string, string>): StoredUser | null {
  if (h.id === undefined) return null;
  return {
    id: asUserId(h.id),
    nickname: h.nickname ?? '',
    status: h.status ?? '',
    createdAt: Number(h.createdAt),
    lastSeenAt: Number(h.lastSeenAt),
  };
}
/** HGETALL as an array of alternating fields and values (what a script returns) into a record. */
function pairs(a: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(a)) for (let i = 0; i + 1 < a.length; i += 2) out[String(a[i])] = String(a[i + 1]);
  return out;
}

function toChannel(json: string | null): StoredChannel | null {
  if (json === null) return null;
  try {
    const o = JSON.parse(json) as StoredChannel;
    return {
      id: asChannelId(o.id),
      name: o.name,
      userLimit: o.userLimit,
      ownerId: asUserId(o.ownerId),
      passwordHash: o.passwordHash ?? null,
      voice: parseVoice(JSON.stringify(o.voice)),
      createdAt: o.createdAt,
      updatedAt: o.updatedAt,
    };
  } catch {
    return null;
  }
}
const channelJson = (c: StoredChannel): string =>
  JSON.stringify({
    id: c.id,
    name: c.name,
    userLimit: c.userLimit,
    ownerId: c.ownerId,
    passwordHash: c.passwordHash,
    voice: c.voice,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  });

const page = <T>(all: T[], p: Page): PageResult<T> => ({
  items: all.slice(p.offset, p.offset + p.limit),
  total: all.length,
  limit: p.limit,
  offset: p.offset,
});

/** Durable store on a Redis primary; every process of a cluster opens one over the same server. */
export class RedisStore implements Store {
  readonly kind = 'redis' as const;
  #closed = false;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  #k(kind: string, id?: string): string {
    return id === undefined ? `${this.prefix}${kind}` : `${this.prefix}${kind}:${id}`;
  }

  /** Runs one operation; Redis failures become StoreError (the caller answers UNAVAILABLE/INTERNAL). */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError(`${what}: the store is closed`);
    try {
      return await fn();
    } catch (err) {
      if (err instanceof TypeError || err instanceof StoreError || err instanceof ProtocolError) throw err;
      // Redis unreachable: UNAVAILABLE (retry later), not INTERNAL.
      if (!(err instanceof Error && err.name === 'ReplyError'))
        throw new ClusterUnavailableError(what, { cause: err });
      throw new StoreError(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  createUser(user: StoredUser, tokenHash: string): Promise<void> {
    return this.#run('createUser', async () => {
      const ok = await CREATE_USER.run(
        this.redis,
        [
          this.#k('user', user.id),
          this.#k('users'),
          this.#k('userkeys'),
          this.#k('token', tokenHash),
          this.#k('user-tokens', user.id),
        ],
        [
          user.id,
          user.nickname,
          user.status,
          user.createdAt,
          user.lastSeenAt,
          foldKey(user.nickname),
          tokenHash,
        ],
      );
      if (ok !== 1) throw new StoreError(`createUser: user ${user.id} exists`);
    });
  }

  getUser(id: UserId): Promise<StoredUser | null> {
    return this.#run('getUser', async () => toUser(await this.redis.hgetall(this.#k('user', id))));
  }

  getUserByTokenHash(tokenHash: string): Promise<StoredUser | null> {
    return this.#run('getUserByTokenHash', async () => {
      const id = await this.redis.get(this.#k('token', tokenHash));
      return id === null ? null : toUser(await this.redis.hgetall(this.#k('user', id)));
    });
  }

  updateUser(
    id: UserId,
    patch: { nickname?: string; status?: string; lastSeenAt?: number },
  ): Promise<StoredUser | null> {
    return this.#run('updateUser', async () => {
      const res = await UPDATE_USER.run(
        this.redis,
        [this.#k('user', id), this.#k('userkeys')],
        [
          id,
          patch.nickname ?? '',
          patch.nickname === undefined ? '' : foldKey(patch.nickname),
          // '' means unchanged, so a status (which may be '') travels with a leading marker.
          patch.status === undefined ? '' : `=${patch.status}`,
          patch.lastSeenAt ?? '',
        ],
      );
      return res === null ? null : toUser(pairs(res));
    });
  }

  deleteToken(tokenHash: string): Promise<void> {
    return this.#run('deleteToken', async () => {
      await DELETE_TOKEN.run(this.redis, [this.#k('token', tokenHash)], [this.prefix, tokenHash]);
    });
  }

  listUsers(filter: UserFilter, p: Page): Promise<PageResult<StoredUser>> {
    return this.#run('listUsers', async () => {
      checkPage(p);
      let ids = await this.redis.zrange(this.#k('users'), '0', '-1');
      if (filter.ids !== undefined) {
        const wanted = new Set<string>(filter.ids);
        ids = ids.filter((id) => wanted.has(id));
      }
      if (filter.excludeIds !== undefined && filter.excludeIds.length > 0) {
        const unwanted = new Set<string>(filter.excludeIds);
        ids = ids.filter((id) => !unwanted.has(id));
      }
      if (filter.q !== undefined && filter.q !== '' && ids.length > 0) {
        const q = foldKey(filter.q);
        const keys = await this.redis.hmget(this.#k('userkeys'), ...ids);
        ids = ids.filter((_, i) => keys[i]?.includes(q) === true);
      }
      const res = page(ids, p);
      const items = await this.#users(res.items);
      return { ...res, items };
    });
  }

  async #users(ids: readonly string[]): Promise<StoredUser[]> {
    if (ids.length === 0) return [];
    const pl = this.redis.pipeline();
    for (const id of ids) pl.hgetall(this.#k('user', id));
    const rows = (await pl.exec()) ?? [];
    return rows.map(([, h]) => toUser((h ?? {}) as Record<string, string>)).filter((u) => u !== null);
  }

  createChannel(channel: StoredChannel, caps?: ChannelCaps): Promise<void> {
    return this.#run('createChannel', async () => {
      const r = await CREATE_CHANNEL.run(
        this.redis,
        [
          this.#k('chan', channel.id),
          this.#k('channels'),
          this.#k('chan-names'),
          this.#k('owned', channel.ownerId),
        ],
        [
          channel.id,
          channelJson(channel),
          foldKey(channel.name),
          channel.createdAt,
          caps?.maxTotal ?? -1,
          caps?.maxPerOwner ?? -1,
        ],
      );
      if (r === -1) throw new ChannelLimitError(`this server allows at most ${caps!.maxTotal} channels`);
      if (r === -2) throw new ChannelLimitError(`one user may own at most ${caps!.maxPerOwner} channels`);
      if (r !== 1) throw new ChannelNameTakenError(channel.name);
    });
  }

  getChannel(id: ChannelId): Promise<StoredChannel | null> {
    return this.#run('getChannel', async () => toChannel(await this.redis.hget(this.#k('chan', id), 'json')));
  }

  updateChannel(id: ChannelId, patch: ChannelPatch): Promise<StoredChannel | null> {
    return this.#run('updateChannel', async () => {
      for (let i = 0; i < UPDATE_TRIES; i++) {
        const json = await this.redis.hget(this.#k('chan', id), 'json');
        const cur = toChannel(json);
        if (json === null || cur === null) return null;
        const next: StoredChannel = {
          ...cur,
          ...(patch.name !== undefined && { name: patch.name }),
          ...(patch.userLimit !== undefined && { userLimit: patch.userLimit }),
          ...(patch.passwordHash !== undefined && { passwordHash: patch.passwordHash }),
          ...(patch.voice !== undefined && { voice: patch.voice }),
          updatedAt: patch.updatedAt,
        };
        const r = await UPDATE_CHANNEL.run(
          this.redis,
          [this.#k('chan', id), this.#k('chan-names')],
          [id, json, channelJson(next), foldKey(next.name)],
        );
        if (r === 1) return next;
        if (r === 0) throw new ChannelNameTakenError(patch.name ?? '');
        if (r === -2) return null;
      }
      throw new StoreError(`updateChannel: ${id} kept changing under ${UPDATE_TRIES} attempts`);
    });
  }

  deleteChannel(id: ChannelId): Promise<boolean> {
    return this.#run(
      'deleteChannel',
      async () =>
        (await DELETE_CHANNEL.run(
          this.redis,
          [this.#k('chan', id), this.#k('channels'), this.#k('chan-names'), this.#k('mutes', id)],
          [id, this.prefix],
        )) === 1,
    );
  }

  listChannels(filter: ChannelFilter, p: Page): Promise<PageResult<StoredChannel>> {
    return this.#run('listChannels', async () => {
      checkPage(p);
      const q = filter.q === undefined || filter.q === '' ? null : foldKey(filter.q);
      if (q === null && filter.ownerId === undefined) {
        // The listing every client pages through: read only the page (the index gives the total).
        const [card, range] =
          (await this.redis
            .multi()
            .zcard(this.#k('channels'))
            .zrange(this.#k('channels'), String(p.offset), String(p.offset + p.limit - 1))
            .exec()) ?? [];
        // A failed command inside the transaction comes back as its entry's error, not as a throw.
        const failed = card?.[0] ?? range?.[0];
        if (failed || !card || !range) throw failed ?? new Error('listChannels: transaction aborted');
        const ids = range[1] as string[];
        return {
          items: await this.#channels(ids),
          total: card[1] as number,
          limit: p.limit,
          offset: p.offset,
        };
      }
      let ids: string[];
      if (filter.ownerId !== undefined) {
        // A user's own channels: its index, in the listing's order (creation time, then id).
        ids = await this.redis.smembers(this.#k('owned', filter.ownerId));
        if (ids.length > 0) {
          const scores = await this.redis.zmscore(this.#k('channels'), ...ids);
          const rank = new Map(ids.map((id, i) => [id, Number(scores[i] ?? Number.NaN)]));
          ids = ids
            .filter((id) => Number.isFinite(rank.get(id)))
            .sort((x, y) => rank.get(x)! - rank.get(y)! || (x < y ? -1 : x > y ? 1 : 0));
        }
      } else ids = await this.redis.zrange(this.#k('channels'), '0', '-1');
      let all = await this.#channels(ids);
      if (q !== null) all = all.filter((c) => foldKey(c.name).includes(q));
      return page(all, p);
    });
  }

  async #channels(ids: readonly string[]): Promise<StoredChannel[]> {
    if (ids.length === 0) return [];
    const pl = this.redis.pipeline();
    for (const id of ids) pl.hget(this.#k('chan', id), 'json');
    const rows = (await pl.exec()) ?? [];
    return rows.map(([, j]) => toChannel((j as string | null) ?? null)).filter((c) => c !== null);
  }

  setServerMute(channelId: ChannelId, userId: UserId, muted: boolean, at: number): Promise<void> {
    return this.#run('setServerMute', async () => {
      await SET_MUTE.run(
        this.redis,
        [this.#k('chan', channelId), this.#k('mutes', channelId), this.#k('user-mutes', userId)],
        [userId, muted ? '1' : '0', at, channelId],
      );
    });
  }

  isServerMuted(channelId: ChannelId, userId: UserId): Promise<boolean> {
    return this.#run(
      'isServerMuted',
      async () => (await this.redis.hexists(this.#k('mutes', channelId), userId)) === 1,
    );
  }

  listServerMutes(channelId: ChannelId, p: Page): Promise<PageResult<StoredServerMute>> {
    return this.#run('listServerMutes', async () => {
      // One hash per channel, as large as its mutes (bounded by who was ever muted there).
      const all = Object.entries(await this.redis.hgetall(this.#k('mutes', channelId)))
        .map(([userId, at]) => ({ userId: userId as UserId, mutedAt: Number(at) }))
        .sort((a, b) => (a.userId < b.userId ? -1 : a.userId > b.userId ? 1 : 0));
      return page(all, p);
    });
  }

  purgeUsers(opts: PurgeCriteria): Promise<UserId[]> {
    return this.#run('purgeUsers', async () => {
      if (!Number.isSafeInteger(opts.limit) || opts.limit < 0)
        throw new TypeError('limit must be a non-negative integer');
      if (opts.limit === 0) return [];
      // Candidates from the indexes (every user: a purge is a rare background sweep), least recently
      // seen first; each is re-checked and deleted atomically by the script.
      const ids = await this.redis.zrange(this.#k('users'), '0', '-1');
      const keep = new Set<string>(opts.keep);
      const pl = this.redis.pipeline();
      for (const id of ids) {
        pl.hmget(this.#k('user', id), 'lastSeenAt', 'createdAt');
        pl.scard(this.#k('user-tokens', id));
        pl.scard(this.#k('owned', id));
      }
      const res = (await pl.exec()) ?? [];
      const candidates: { id: string; seen: number }[] = [];
      ids.forEach((id, i) => {
        const [seenText, createdText] = (res[3 * i]?.[1] ?? []) as (string | null)[];
        const seen = Number(seenText);
        const created = Number(createdText);
        const tokens = Number(res[3 * i + 1]?.[1]);
        const owned = Number(res[3 * i + 2]?.[1]);
        if (keep.has(id) || owned > 0 || seenText == null || !Number.isFinite(seen)) return;
        const unconnected = seen === created && created < opts.unconnectedBefore;
        if (seen < opts.staleBefore || tokens === 0 || unconnected) candidates.push({ id, seen });
      });
      candidates.sort((a, b) => a.seen - b.seen || (a.id < b.id ? -1 : 1));
      const out: UserId[] = [];
      for (const c of candidates) {
        if (out.length >= opts.limit) break;
        const args = [this.prefix, c.id, opts.staleBefore, opts.unconnectedBefore];
        if ((await PURGE_USER.run(this.redis, [], args)) === 1) out.push(asUserId(c.id));
      }
      return out;
    });
  }

  /** The connection belongs to start-up code; closing only refuses further calls. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
