import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DEFAULT_VOICE_SETTINGS, ID_PATTERN, ProtocolError, TOKEN_PATTERN } from '@voice/protocol';
import type { ChannelId, UserId } from '@voice/protocol';
import { ChannelLimitError, ChannelNameTakenError, StoreError } from '../src/errors.js';
import { LocalBusHub, LocalEventBus } from '../src/state/local-bus.js';
import { LocalDirectoryBackend, LocalSessionDirectory } from '../src/state/local-directory.js';
import { RedisEventBus } from '../src/state/redis-bus.js';
import { RedisSessionDirectory } from '../src/state/redis-directory.js';
import { RedisStore } from '../src/state/redis-store.js';
import { useTestRedis } from '../../test-support/redis.js';
import {
  hashPassword,
  hashToken,
  newChannelId,
  newToken,
  newUserId,
  verifyPassword,
} from '../src/state/passwords.js';
import { SqliteStore } from '../src/state/sqlite-store.js';
import type {
  BusEvent,
  BusListener,
  EventBus,
  SessionDirectory,
  SessionRecord,
  Store,
  StoredChannel,
  StoredUser,
} from '../src/state/types.js';

/*
 * One contract suite per state interface, run against every implementation, each with TWO
 * instances over one backend (two SqliteStores over one file, two Redis clients over one server,
 * two local directories or buses over one shared in-memory backend): what one instance writes, the
 * other must see, so an implementation that shares nothing across instances fails. A new
 * implementation joins by adding one entry to the matching list below.
 */

const tempRoot = mkdtempSync(join(tmpdir(), 'voice-state-'));
afterAll(() => rmSync(tempRoot, { recursive: true, force: true }));
let tempSeq = 0;
const tempDbPath = (): string => join(tempRoot, `db-${++tempSeq}`, 'state.sqlite');

const { server: testRedis, newPrefix } = useTestRedis();

/** A backing storage (a file, a Redis key prefix) that any number of Store instances can open. */
interface StoreHarness {
  /** Opens a new Store on this harness's storage (another process's view of it). */
  open(): Promise<Store>;
  /** Removes the storage. Every opened store is closed before. */
  dispose(): Promise<void>;
}
interface StoreImpl {
  name: string;
  harness(): StoreHarness;
}

/** Two instances over one backend, as two processes of one cluster see it. */
interface Pair<T> {
  a: T;
  b: T;
}
interface DirectoryImpl {
  name: string;
  pair(ttlMs: number): Promise<Pair<SessionDirectory>>;
}

interface BusImpl {
  name: string;
  pair(onListenerError: (err: unknown, event: BusEvent) => void): Promise<Pair<EventBus>>;
}

const storeImpls: StoreImpl[] = [
  {
    name: 'SqliteStore',
    harness: () => {
      const path = tempDbPath();
      return {
        open: () => Promise.resolve(SqliteStore.open(path)),
        dispose: () => Promise.resolve(),
      };
    },
  },
  {
    name: 'RedisStore',
    harness: () => {
      const prefix = newPrefix();
      return {
        open: () => Promise.resolve(new RedisStore(testRedis().client(), prefix)),
        dispose: () => Promise.resolve(),
      };
    },
  },
];

const directoryImpls: DirectoryImpl[] = [
  {
    name: 'LocalSessionDirectory',
    pair: (ttlMs) => {
      const backend = new LocalDirectoryBackend();
      return Promise.resolve({
        a: new LocalSessionDirectory({ ttlMs, backend }),
        b: new LocalSessionDirectory({ ttlMs, backend }),
      });
    },
  },
  {
    name: 'RedisSessionDirectory',
    pair: (ttlMs) => {
      const prefix = newPrefix();
      return Promise.resolve({
        a: new RedisSessionDirectory(testRedis().client(), prefix, { ttlMs }),
        b: new RedisSessionDirectory(testRedis().client(), prefix, { ttlMs }),
      });
    },
  },
];

const busImpls: BusImpl[] = [
  {
    name: 'LocalEventBus',
    pair: (onError) => {
      const hub = new LocalBusHub();
      return Promise.resolve({ a: new LocalEventBus(onError, hub), b: new LocalEventBus(onError, hub) });
    },
  },
  {
    name: 'RedisEventBus',
    pair: async (onError) => {
      const prefix = newPrefix();
      const a = new RedisEventBus(testRedis().client(), testRedis().client(), prefix, onError);
      const b = new RedisEventBus(testRedis().client(), testRedis().client(), prefix, onError);
      await Promise.all([a.ready(), b.ready()]);
      return { a, b };
    },
  },
];

// ---------------------------------------------------------------------------------------------

let clock = 1_700_000_000_000;
const tick = (): number => (clock += 1000);

function makeUser(nickname: string, over: Partial<StoredUser> = {}): StoredUser {
  const t = tick();
  return { id: newUserId(), nickname, status: '', createdAt: t, lastSeenAt: t, ...over };
}

function makeChannel(name: string, ownerId: UserId, over: Partial<StoredChannel> = {}): StoredChannel {
  const t = tick();
  return {
    id: newChannelId(),
    name,
    userLimit: 0,
    ownerId,
    passwordHash: null,
    voice: { ...DEFAULT_VOICE_SETTINGS },
    createdAt: t,
    updatedAt: t,
    ...over,
  };
}

const ALL = { limit: 100, offset: 0 };

describe.each(storeImpls)('Store contract: $name', (impl) => {
  let harness: StoreHarness;
  /** Writes go through `store`; reads mostly through `peer`, another instance over the same backend. */
  let store: Store;
  let peer: Store;
  beforeEach(async () => {
    harness = impl.harness();
    store = await harness.open();
    peer = await harness.open();
  });
  afterEach(async () => {
    await store.close();
    await peer.close();
    await harness.dispose();
  });

  describe('users', () => {
    it('creates a user and reads it by id and by token hash', async () => {
      const user = makeUser('Alice', { status: 'hello' });
      const token = newToken();
      await store.createUser(user, hashToken(token));
      expect(await peer.getUser(user.id)).toEqual(user);
      expect(await peer.getUserByTokenHash(hashToken(token))).toEqual(user);
      expect(await peer.getUser(newUserId())).toBeNull();
      expect(await peer.getUserByTokenHash(hashToken(newToken()))).toBeNull();
    });

    it('updates only the given fields, and returns null for an unknown user', async () => {
      const user = makeUser('Bob', { status: 'away' });
      await store.createUser(user, hashToken(newToken()));
      const renamed = await store.updateUser(user.id, { nickname: 'Bobby' });
      expect(renamed).toEqual({ ...user, nickname: 'Bobby' });
      const touched = await store.updateUser(user.id, { status: '', lastSeenAt: user.lastSeenAt + 5 });
      expect(touched).toEqual({ ...user, nickname: 'Bobby', status: '', lastSeenAt: user.lastSeenAt + 5 });
      expect(await peer.getUser(user.id)).toEqual(touched);
      expect(await store.updateUser(newUserId(), { nickname: 'Ghost' })).toBeNull();
    });

    it('deleteToken revokes the token but keeps the user', async () => {
      const user = makeUser('Carol');
      const hash = hashToken(newToken());
      await store.createUser(user, hash);
      await store.deleteToken(hash);
      expect(await peer.getUserByTokenHash(hash)).toBeNull();
      expect(await peer.getUser(user.id)).toEqual(user);
      await expect(store.deleteToken(hash)).resolves.toBeUndefined();
    });

    it('lists users by creation time with a case-insensitive filter, ids, pages and total', async () => {
      const users = [
        makeUser('Alice'),
        makeUser('bob'),
        makeUser('alina'),
        makeUser('100%_pure'),
        makeUser('Zoë'),
        makeUser('ALBERT'),
      ];
      for (const u of users) await store.createUser(u, hashToken(newToken()));
      const nicks = (r: { items: StoredUser[] }): string[] => r.items.map((u) => u.nickname);

      const all = await peer.listUsers({}, ALL);
      expect(all).toEqual({ items: users, total: 6, limit: 100, offset: 0 });

      expect(nicks(await peer.listUsers({ q: 'AL' }, ALL))).toEqual(['Alice', 'alina', 'ALBERT']);
      expect(nicks(await peer.listUsers({ q: 'zOË' }, ALL))).toEqual(['Zoë']);
      // LIKE wildcards in the query are literal characters.
      expect(nicks(await peer.listUsers({ q: '%' }, ALL))).toEqual(['100%_pure']);
      expect(nicks(await peer.listUsers({ q: '_' }, ALL))).toEqual(['100%_pure']);
      expect(nicks(await peer.listUsers({ q: 'x' }, ALL))).toEqual([]);

      const ids = [users[1]!.id, users[4]!.id, newUserId()];
      expect(nicks(await peer.listUsers({ ids }, ALL))).toEqual(['bob', 'Zoë']);
      expect(await peer.listUsers({ ids: [] }, ALL)).toMatchObject({ items: [], total: 0 });
      expect(nicks(await peer.listUsers({ ids: users.map((u) => u.id), q: 'b' }, ALL))).toEqual([
        'bob',
        'ALBERT',
      ]);
      // Excluded before paging, so `total` counts only what is left (admin `online=false`).
      const rest = await peer.listUsers(
        { excludeIds: [users[1]!.id, users[4]!.id] },
        { limit: 2, offset: 0 },
      );
      expect(rest.total).toBe(4);
      expect(rest.items.map((u) => u.nickname)).not.toContain('bob');

      const p1 = await store.listUsers({}, { limit: 4, offset: 0 });
      const p2 = await store.listUsers({}, { limit: 4, offset: 4 });
      expect(p1).toMatchObject({ total: 6, limit: 4, offset: 0 });
      expect(p2).toMatchObject({ total: 6, limit: 4, offset: 4 });
      expect([...p1.items, ...p2.items]).toEqual(users);
      const filtered = await peer.listUsers({ q: 'al' }, { limit: 1, offset: 1 });
      expect(filtered).toEqual({ items: [users[2]], total: 3, limit: 1, offset: 1 });
      expect(await peer.listUsers({}, { limit: 10, offset: 50 })).toMatchObject({ items: [], total: 6 });
    });

    it('orders users created at the same instant by id', async () => {
      const t = tick();
      const users = Array.from({ length: 5 }, (_, i) => makeUser(`same${i}`, { createdAt: t }));
      for (const u of users) await store.createUser(u, hashToken(newToken()));
      const listed = await store.listUsers({}, ALL);
      expect(listed.items.map((u) => u.id)).toEqual(users.map((u) => u.id).sort());
    });
  });

  describe('channels', () => {
    const owner = newUserId();

    it('creates a channel and reads it back unchanged', async () => {
      const ch = makeChannel('General', owner, {
        userLimit: 5,
        passwordHash: 'scrypt$16384$8$1$abc$def',
        voice: { bitrate: 32_000, frameMs: 10, complexity: 5 },
      });
      await store.createChannel(ch);
      expect(await peer.getChannel(ch.id)).toEqual(ch);
      expect(await peer.getChannel(newChannelId())).toBeNull();
    });

    it('refuses a duplicate name regardless of case and Unicode composition', async () => {
      await store.createChannel(makeChannel('General', owner));
      await store.createChannel(makeChannel('Caf\u00e9', owner));
      const dup = store.createChannel(makeChannel('gENERAL', owner));
      await expect(dup).rejects.toBeInstanceOf(ChannelNameTakenError);
      await expect(store.createChannel(makeChannel('GENERAL', owner))).rejects.toMatchObject({
        code: 'CHANNEL_NAME_TAKEN',
      });
      await expect(store.createChannel(makeChannel('cafe\u0301', owner))).rejects.toBeInstanceOf(
        ChannelNameTakenError,
      );
      expect((await peer.listChannels({}, ALL)).total).toBe(2);
    });

    it('updates fields, refuses renaming onto another name, allows re-casing its own', async () => {
      const a = makeChannel('Alpha', owner, { passwordHash: 'scrypt$x' });
      const b = makeChannel('Beta', owner);
      await store.createChannel(a);
      await store.createChannel(b);

      const t = tick();
      const voice = { bitrate: 96_000, frameMs: 10 as const, complexity: 10 };
      const updated = await store.updateChannel(a.id, { userLimit: 3, voice, updatedAt: t });
      expect(updated).toEqual({ ...a, userLimit: 3, voice, updatedAt: t });
      // passwordHash: undefined keeps it, null clears it.
      expect((await store.updateChannel(a.id, { updatedAt: t }))?.passwordHash).toBe('scrypt$x');
      expect(
        (await store.updateChannel(a.id, { passwordHash: null, updatedAt: t }))?.passwordHash,
      ).toBeNull();
      expect(
        (await store.updateChannel(a.id, { passwordHash: 'scrypt$y', updatedAt: t }))?.passwordHash,
      ).toBe('scrypt$y');

      await expect(store.updateChannel(a.id, { name: 'BETA', updatedAt: t })).rejects.toBeInstanceOf(
        ChannelNameTakenError,
      );
      expect((await store.getChannel(a.id))?.name).toBe('Alpha');

      expect((await store.updateChannel(a.id, { name: 'ALPHA', updatedAt: t }))?.name).toBe('ALPHA');
      const renamed = await store.updateChannel(a.id, { name: 'Gamma', updatedAt: t });
      expect(renamed).toEqual({
        ...a,
        name: 'Gamma',
        userLimit: 3,
        voice,
        passwordHash: 'scrypt$y',
        updatedAt: t,
      });
      // The old name is free again.
      await store.createChannel(makeChannel('alpha', owner));
      expect(await store.updateChannel(newChannelId(), { name: 'Nope', updatedAt: t })).toBeNull();
    });

    it('deletes a channel once and frees its name', async () => {
      const ch = makeChannel('Lobby', owner);
      await store.createChannel(ch);
      expect(await store.deleteChannel(ch.id)).toBe(true);
      expect(await store.deleteChannel(ch.id)).toBe(false);
      expect(await peer.getChannel(ch.id)).toBeNull();
      await expect(store.createChannel(makeChannel('LOBBY', owner))).resolves.toBeUndefined();
    });

    it('lists channels with q, ownerId, pages and total', async () => {
      const other = newUserId();
      const chans = [
        makeChannel('Music', owner),
        makeChannel('music-2', other),
        makeChannel('Games', owner),
        makeChannel('50%_off', other),
        makeChannel('AMUSING', owner),
      ];
      for (const c of chans) await store.createChannel(c);
      const names = (r: { items: StoredChannel[] }): string[] => r.items.map((c) => c.name);

      expect(await peer.listChannels({}, ALL)).toEqual({ items: chans, total: 5, limit: 100, offset: 0 });
      expect(names(await peer.listChannels({ q: 'MUS' }, ALL))).toEqual(['Music', 'music-2', 'AMUSING']);
      expect(names(await peer.listChannels({ q: '%_' }, ALL))).toEqual(['50%_off']);
      expect(names(await peer.listChannels({ ownerId: other }, ALL))).toEqual(['music-2', '50%_off']);
      expect(names(await peer.listChannels({ ownerId: owner, q: 'mus' }, ALL))).toEqual(['Music', 'AMUSING']);
      expect(await peer.listChannels({ ownerId: newUserId() }, ALL)).toMatchObject({ items: [], total: 0 });

      const page = await store.listChannels({ q: 'mus' }, { limit: 2, offset: 1 });
      expect(page).toEqual({ items: [chans[1], chans[4]], total: 3, limit: 2, offset: 1 });
      const p0 = await store.listChannels({}, { limit: 2, offset: 0 });
      const p1 = await store.listChannels({}, { limit: 2, offset: 2 });
      const p2 = await store.listChannels({}, { limit: 2, offset: 4 });
      expect([...p0.items, ...p1.items, ...p2.items]).toEqual(chans);
      expect([p0.total, p1.total, p2.total]).toEqual([5, 5, 5]);
      expect(await peer.listChannels({}, { limit: 2, offset: 10 })).toEqual({
        items: [],
        total: 5,
        limit: 2,
        offset: 10,
      });
      expect(await peer.listChannels({ ownerId: owner }, { limit: 1, offset: 1 })).toEqual({
        items: [chans[2]],
        total: 3,
        limit: 1,
        offset: 1,
      });
      // A deleted channel leaves the listing and its owner's.
      await store.deleteChannel(chans[2]!.id);
      expect(names(await peer.listChannels({ ownerId: owner }, ALL))).toEqual(['Music', 'AMUSING']);
      expect((await peer.listChannels({}, { limit: 1, offset: 0 })).total).toBe(4);
    });

    it('rejects a malformed page with TypeError', async () => {
      await expect(store.listChannels({}, { limit: -1, offset: 0 })).rejects.toBeInstanceOf(TypeError);
      await expect(store.listUsers({}, { limit: 10, offset: 1.5 })).rejects.toBeInstanceOf(TypeError);
    });
  });

  describe('concurrency across instances', () => {
    it('gives a contested channel name to exactly one of concurrent creators on two instances', async () => {
      const owner = newUserId();
      const tries = Array.from({ length: 12 }, (_, i) => makeChannel(i % 2 ? 'Race' : 'rACE', owner));
      const results = await Promise.allSettled(tries.map((c, i) => (i % 2 ? peer : store).createChannel(c)));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      for (const r of results)
        if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(ChannelNameTakenError);
      expect((await peer.listChannels({ q: 'race' }, ALL)).total).toBe(1);
    });

    it('keeps both of two concurrent updates of different fields made on two instances', async () => {
      const ch = makeChannel('Both', newUserId());
      await store.createChannel(ch);
      const t = tick();
      const voice = { bitrate: 48_000, frameMs: 10 as const, complexity: 7 };
      await Promise.all([
        store.updateChannel(ch.id, { userLimit: 9, updatedAt: t }),
        peer.updateChannel(ch.id, { voice, updatedAt: t }),
      ]);
      expect(await store.getChannel(ch.id)).toEqual({ ...ch, userLimit: 9, voice, updatedAt: t });
    });
  });

  describe('channel caps', () => {
    it('refuses past the total and past one owner, exactly, under concurrent creations', async () => {
      const [a, b] = [newUserId(), newUserId()];
      const caps = { maxTotal: 5, maxPerOwner: 3 };
      const results = await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) =>
          (i % 2 ? peer : store).createChannel(makeChannel(`a${i}`, a), caps),
        ),
      );
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
      for (const r of results.filter((r) => r.status === 'rejected'))
        expect(r.reason).toBeInstanceOf(ChannelLimitError);
      await Promise.allSettled(
        Array.from({ length: 8 }, (_, i) => store.createChannel(makeChannel(`b${i}`, b), caps)),
      );
      expect((await store.listChannels({ ownerId: b }, ALL)).total).toBe(2); // the total (5) stops b
      await expect(store.createChannel(makeChannel('c', newUserId()), caps)).rejects.toMatchObject({
        code: 'FORBIDDEN',
      });
      expect((await store.listChannels({}, ALL)).total).toBe(5);
      await store.createChannel(makeChannel('uncapped', a)); // no caps: no check
    });
  });

  describe('server mutes', () => {
    it('belong to the (channel, user) pair until lifted, and go with the channel', async () => {
      const [u, v] = [newUserId(), newUserId()];
      const [c, d] = [makeChannel('Muted', u), makeChannel('Other', u)];
      await store.createChannel(c);
      await store.createChannel(d);
      expect(await store.isServerMuted(c.id, u)).toBe(false);
      await store.setServerMute(c.id, u, true, tick());
      await store.setServerMute(c.id, u, true, tick()); // idempotent
      expect(await peer.isServerMuted(c.id, u)).toBe(true);
      expect(await store.isServerMuted(d.id, u)).toBe(false);
      expect(await store.isServerMuted(c.id, v)).toBe(false);
      await store.setServerMute(d.id, v, true, tick());
      await store.setServerMute(c.id, u, false, tick());
      expect(await store.isServerMuted(c.id, u)).toBe(false);
      expect(await store.isServerMuted(d.id, v)).toBe(true);
      await store.deleteChannel(d.id);
      expect(await store.isServerMuted(d.id, v)).toBe(false);
      const gone = newChannelId();
      await store.setServerMute(gone, v, true, tick()); // no such channel: nothing is kept
      expect(await store.isServerMuted(gone, v)).toBe(false);
    });

    it("lists a channel's stored mutes in pages by user id, each with when it was first set", async () => {
      const owner = newUserId();
      const [c, d] = [makeChannel('Listed', owner), makeChannel('Elsewhere', owner)];
      await store.createChannel(c);
      await store.createChannel(d);
      const users = Array.from({ length: 7 }, () => newUserId());
      const at = new Map<UserId, number>();
      for (const u of users) {
        const t = tick();
        at.set(u, t);
        await store.setServerMute(c.id, u, true, t);
      }
      // Muting again keeps the first time; lifting removes the entry; other channels are apart.
      await store.setServerMute(c.id, users[0]!, true, tick());
      await store.setServerMute(c.id, users[1]!, false, tick());
      await store.setServerMute(d.id, users[2]!, true, tick());
      const expected = users
        .filter((u) => u !== users[1])
        .sort()
        .map((u) => ({ userId: u, mutedAt: at.get(u) }));
      const pages = [];
      for (let offset = 0; offset < 8; offset += 4)
        pages.push(await peer.listServerMutes(c.id, { offset, limit: 4 }));
      expect(pages.map((p) => p.total)).toEqual([6, 6]);
      expect(pages.flatMap((p) => p.items)).toEqual(expected);
      expect((await store.listServerMutes(d.id, { offset: 0, limit: 10 })).items).toEqual([
        { userId: users[2], mutedAt: expect.any(Number) as number },
      ]);
      expect(await store.listServerMutes(newChannelId(), { offset: 0, limit: 10 })).toMatchObject({
        items: [],
        total: 0,
      });
      await store.deleteChannel(c.id);
      expect((await store.listServerMutes(c.id, { offset: 0, limit: 10 })).total).toBe(0);
    });
  });

  describe('user purge', () => {
    it('deletes users who cannot log in or never connected, and own nothing, in bounded batches', async () => {
      const now = tick();
      const stale = (n: string) => makeUser(n, { lastSeenAt: now - 10_000_000 });
      const early = { createdAt: now - 500_000, lastSeenAt: now - 500_000 };
      const [old1, old2, owner, online, fresh, loggedOut, neverConnected, connected] = [
        stale('old1'),
        stale('old2'),
        stale('owner'),
        stale('online'),
        makeUser('fresh'), // created just now, not connected yet: kept
        makeUser('loggedOut'),
        makeUser('neverConnected', early),
        makeUser('connected', { ...early, lastSeenAt: now - 400_000 }),
      ];
      const tokens = new Map<UserId, string>();
      for (const u of [old1, old2, owner, online, fresh, loggedOut, neverConnected, connected]) {
        const t = hashToken(newToken());
        tokens.set(u.id, t);
        await store.createUser(u, t);
      }
      await store.deleteToken(tokens.get(loggedOut.id)!);
      const ch = makeChannel('Owned', owner.id);
      await store.createChannel(ch);
      await store.setServerMute(ch.id, old1.id, true, tick());
      const opts = {
        staleBefore: now - 1_000_000,
        unconnectedBefore: now - 100_000,
        keep: [online.id],
        limit: 3,
      };

      const first = await store.purgeUsers(opts);
      expect(first).toHaveLength(3);
      const second = await store.purgeUsers(opts);
      const gone = [old1, old2, loggedOut, neverConnected];
      expect(new Set([...first, ...second])).toEqual(new Set(gone.map((u) => u.id)));
      expect(await store.purgeUsers(opts)).toEqual([]);
      for (const u of gone) expect(await peer.getUser(u.id)).toBeNull();
      expect(await store.getUserByTokenHash(tokens.get(old1.id)!)).toBeNull();
      expect(await store.isServerMuted(ch.id, old1.id)).toBe(false);
      for (const u of [owner, online, fresh, connected]) expect(await store.getUser(u.id)).not.toBeNull();
      expect((await store.listUsers({}, ALL)).total).toBe(4);
    });
  });

  describe('persistence and lifecycle', () => {
    it('keeps everything written after close and reopen', async () => {
      const user = makeUser('Persist', { status: 'still here' });
      const hash = hashToken(newToken());
      const ch = makeChannel('Kept', user.id, { passwordHash: 'scrypt$k', userLimit: 7 });
      await store.createUser(user, hash);
      await store.createChannel(ch);
      await store.updateUser(user.id, { lastSeenAt: user.lastSeenAt + 1 });
      await store.setServerMute(ch.id, user.id, true, tick());
      await store.close();

      store = await harness.open();
      expect(await peer.getUserByTokenHash(hash)).toEqual({ ...user, lastSeenAt: user.lastSeenAt + 1 });
      expect(await peer.getChannel(ch.id)).toEqual(ch);
      expect(await peer.isServerMuted(ch.id, user.id)).toBe(true);
      await expect(store.createChannel(makeChannel('KEPT', user.id))).rejects.toBeInstanceOf(
        ChannelNameTakenError,
      );
    });

    it('close is idempotent', async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });
  });
});

describe.each(directoryImpls)('SessionDirectory contract: $name', (impl) => {
  /** `dir` and `peer`: two processes' views of one directory. */
  let dir: SessionDirectory;
  let peer: SessionDirectory;
  const [u1, u2, u3] = [newUserId(), newUserId(), newUserId()];
  const [c1, c2] = [newChannelId(), newChannelId()];
  beforeEach(async () => {
    ({ a: dir, b: peer } = await impl.pair(60_000));
  });
  afterEach(async () => {
    await dir.close();
    await peer.close();
  });

  const record = (userId: UserId, over: Partial<SessionRecord> = {}): SessionRecord => ({
    userId,
    nodeId: 'node-a',
    nickname: 'Nick',
    channelId: null,
    selfMute: false,
    selfDeaf: false,
    serverMute: false,
    volumes: {},
    member: {
      userId,
      nickname: over.nickname ?? 'Nick',
      status: '',
      selfMute: false,
      selfDeaf: false,
      serverMute: false,
      speaking: false,
      transport: 'udp',
      away: false,
    },
    ...over,
  });

  it('claims nicknames case-insensitively across instances; only the holder releases', async () => {
    expect(await dir.claimNickname('Alice', u1)).toBe(true);
    expect(await peer.claimNickname('alice', u2)).toBe(false);
    expect(await peer.claimNickname('ALICE', u1)).toBe(true);
    await peer.releaseNickname('Alice', u2);
    expect(await dir.claimNickname('aLiCe', u3)).toBe(false);
    await peer.releaseNickname('alice', u1);
    expect(await dir.claimNickname('Alice', u2)).toBe(true);
    expect(await peer.claimNickname('Bob', u1)).toBe(true);
  });

  it('keys nicknames by their confusable skeleton: look-alikes collide, release frees them all', async () => {
    expect(await dir.claimNickname('admin', u1)).toBe(true);
    for (const lookalike of ['аdmin', 'ａｄｍｉｎ', 'ADM\u0406N', 'adm\u0456n'])
      expect(await peer.claimNickname(lookalike, u2), lookalike).toBe(false);
    expect(await dir.claimNickname('admins', u2)).toBe(true);
    await dir.releaseNickname('ａｄｍｉｎ', u1); // the holder releases under any look-alike spelling
    expect(await dir.claimNickname('аdmin', u2)).toBe(true);
  });

  it('grants a contested nickname to exactly one of concurrent claimants on two instances', async () => {
    const users = Array.from({ length: 10 }, () => newUserId());
    const results = await Promise.all(
      users.map((u, i) => (i % 2 ? peer : dir).claimNickname(i % 3 ? 'race' : 'RACE', u)),
    );
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('tracks who is online across instances', async () => {
    await dir.setOnline(u1, true);
    await peer.setOnline(u2, true);
    await dir.setOnline(u2, true);
    expect(await peer.isOnline(u1)).toBe(true);
    expect(await peer.isOnline(u3)).toBe(false);
    expect((await peer.onlineUsers()).sort()).toEqual([u1, u2].sort());
    await peer.setOnline(u1, false);
    await dir.setOnline(u3, false);
    expect(await dir.isOnline(u1)).toBe(false);
    expect(await dir.onlineUsers()).toEqual([u2]);
  });

  it('stores, replaces and deletes session records visible to every instance', async () => {
    expect(await peer.getSession(u1)).toBeNull();
    const rec = record(u1, { channelId: c1, serverMute: true, volumes: { [u2]: 40 } });
    await dir.putSession(rec);
    expect(await peer.getSession(u1)).toEqual(rec);
    const moved = { ...rec, nodeId: 'node-b', selfDeaf: true, volumes: {} };
    await peer.putSession(moved);
    expect(await dir.getSession(u1)).toEqual(moved);
    await dir.deleteSession(u1);
    expect(await peer.getSession(u1)).toBeNull();
    expect(await peer.touch([u1, u2])).toEqual([u1, u2]);
  });

  it('enforces the user limit on join across instances; re-joining is ok; 0 means no limit', async () => {
    expect(await dir.joinChannel(c1, u1, 2)).toEqual({ ok: true });
    expect(await peer.joinChannel(c1, u2, 2)).toEqual({ ok: true });
    expect(await dir.joinChannel(c1, u3, 2)).toEqual({ ok: false, reason: 'full' });
    expect(await peer.joinChannel(c1, u1, 2)).toEqual({ ok: true });
    expect((await dir.channelMembers(c1)).sort()).toEqual([u1, u2].sort());
    for (let i = 0; i < 50; i++)
      expect(await (i % 2 ? peer : dir).joinChannel(c2, newUserId(), 0)).toEqual({ ok: true });
    expect((await peer.channelMembers(c2)).length).toBe(50);
  });

  it('admits exactly `limit` of many concurrent joins made on two instances', async () => {
    const users = Array.from({ length: 20 }, () => newUserId());
    const results = await Promise.all(users.map((u, i) => (i % 2 ? peer : dir).joinChannel(c1, u, 5)));
    expect(results.filter((r) => r.ok)).toHaveLength(5);
    expect(results.filter((r) => !r.ok)).toEqual(
      Array.from({ length: 15 }, () => ({ ok: false, reason: 'full' })),
    );
    const members = await peer.channelMembers(c1);
    expect(members).toHaveLength(5);
    const admitted = users.filter((_, i) => results[i]!.ok);
    expect([...members].sort()).toEqual([...admitted].sort());
  });

  it('leaves, counts and clears channels across instances', async () => {
    await dir.joinChannel(c1, u1, 0);
    await peer.joinChannel(c1, u2, 0);
    await dir.joinChannel(c2, u3, 0);
    const other: ChannelId = newChannelId();
    const counts = await peer.memberCounts([c1, c2, other]);
    expect([...counts.entries()].sort()).toEqual(
      [
        [c1, 2],
        [c2, 1],
        [other, 0],
      ].sort(),
    );

    expect(await peer.leaveChannel(c1, u1)).toBe(true);
    expect(await dir.leaveChannel(c1, u1)).toBe(false);
    expect(await dir.leaveChannel(other, u1)).toBe(false);
    expect(await dir.channelMembers(c1)).toEqual([u2]);

    // A slot freed by leaving can be taken again.
    expect(await dir.joinChannel(c1, u3, 2)).toEqual({ ok: true });
    expect((await peer.clearChannel(c1)).sort()).toEqual([u2, u3].sort());
    expect(await dir.channelMembers(c1)).toEqual([]);
    expect(await dir.clearChannel(c1)).toEqual([]);
    expect((await dir.memberCounts([c1, c2])).get(c2)).toBe(1);
  });

  it('close is idempotent', async () => {
    await dir.close();
    await expect(dir.close()).resolves.toBeUndefined();
  });

  describe('expiry', () => {
    const TTL = 800;
    let a: SessionDirectory;
    let b: SessionDirectory;
    beforeEach(async () => {
      ({ a, b } = await impl.pair(TTL));
    });
    afterEach(async () => {
      await a.close();
      await b.close();
    });
    const establish = async (d: SessionDirectory, userId: UserId, nickname: string): Promise<void> => {
      expect(await d.claimNickname(nickname, userId)).toBe(true);
      await d.setOnline(userId, true);
      expect(await d.joinChannel(c1, userId, 2)).toEqual({ ok: true });
      await d.putSession(record(userId, { nickname, channelId: c1 }));
    };

    it("drops a dead process's session, nickname claim, online mark and seat after the TTL", async () => {
      await establish(a, u1, 'Ghost');
      expect(await b.claimNickname('ghost', u2)).toBe(false);
      await new Promise((r) => setTimeout(r, TTL + 250));
      // Nobody touched u1: every claim of it has gone, and the seat is free for others.
      expect(await b.getSession(u1)).toBeNull();
      expect(await b.isOnline(u1)).toBe(false);
      expect(await b.onlineUsers()).toEqual([]);
      expect(await b.channelMembers(c1)).toEqual([]);
      expect((await b.memberCounts([c1])).get(c1)).toBe(0);
      expect(await b.claimNickname('GHOST', u2)).toBe(true);
      expect(await b.joinChannel(c1, u3, 1)).toEqual({ ok: true });
      expect(await b.touch([u1])).toEqual([u1]);
    });

    it('keeps what another instance touches in time', async () => {
      await establish(a, u1, 'Kept');
      // Touch from the other instance every third of the TTL, for twice the TTL.
      for (let i = 0; i < 6; i++) {
        await new Promise((r) => setTimeout(r, TTL / 3));
        expect(await b.touch([u1])).toEqual([]);
      }
      expect(await a.getSession(u1)).toMatchObject({ userId: u1, channelId: c1 });
      expect(await a.isOnline(u1)).toBe(true);
      expect(await a.channelMembers(c1)).toEqual([u1]);
      expect(await a.claimNickname('kept', u2)).toBe(false);
      expect(await a.joinChannel(c1, u2, 1)).toEqual({ ok: false, reason: 'full' });
    });
  });
});

describe.each(busImpls)('EventBus contract: $name', (impl) => {
  /** `bus` and `peer`: two processes on one bus. */
  let bus: EventBus;
  let peer: EventBus;
  const errors: unknown[] = [];
  beforeEach(async () => {
    errors.length = 0;
    ({ a: bus, b: peer } = await impl.pair((err) => errors.push(err)));
  });
  afterEach(async () => {
    await bus.close();
    await peer.close();
  });

  const deleted = (): BusEvent => ({ type: 'channel.deleted', channelId: newChannelId() });
  const speaking = (speaking: boolean): BusEvent => ({
    type: 'speaking',
    channelId: newChannelId(),
    userId: newUserId(),
    speaking,
  });
  const recorder = (): { events: BusEvent[]; listener: BusListener } => {
    const events: BusEvent[] = [];
    return { events, listener: (e) => events.push(e) };
  };

  it('delivers every event to every subscriber of both instances, in publish order', async () => {
    const a = recorder();
    const b = recorder();
    const remote = recorder();
    bus.subscribe(a.listener);
    bus.subscribe(b.listener);
    peer.subscribe(remote.listener);
    const sent = [deleted(), speaking(true), speaking(false), deleted()];
    for (const e of sent) await bus.publish(e);
    await vi.waitFor(() => {
      expect(a.events).toEqual(sent);
      expect(b.events).toEqual(sent);
      expect(remote.events).toEqual(sent);
    });
    // And the other way round.
    const back = speaking(true);
    await peer.publish(back);
    await vi.waitFor(() => {
      expect(a.events).toEqual([...sent, back]);
      expect(remote.events).toEqual([...sent, back]);
    });
  });

  it('stops delivering after unsubscribe', async () => {
    const gone = recorder();
    const stays = recorder();
    const unsubscribe = bus.subscribe(gone.listener);
    bus.subscribe(stays.listener);
    const first = deleted();
    await bus.publish(first);
    await vi.waitFor(() => expect(gone.events).toEqual([first]));
    unsubscribe();
    unsubscribe();
    const marker = deleted();
    await bus.publish(marker);
    await vi.waitFor(() => expect(stays.events).toEqual([first, marker]));
    expect(gone.events).toEqual([first]);
  });

  it('keeps delivering to the others when a listener throws', async () => {
    const before = recorder();
    const after = recorder();
    bus.subscribe(before.listener);
    bus.subscribe(() => {
      throw new Error('listener bug');
    });
    bus.subscribe(after.listener);
    const remote = recorder();
    peer.subscribe(remote.listener);
    const sent = [deleted(), deleted()];
    for (const e of sent) await expect(bus.publish(e)).resolves.toBeUndefined();
    await vi.waitFor(() => {
      expect(before.events).toEqual(sent);
      expect(after.events).toEqual(sent);
      expect(remote.events).toEqual(sent);
    });
    expect(errors).toHaveLength(2);
  });

  it('close is idempotent and publishing afterwards does not throw', async () => {
    const r = recorder();
    bus.subscribe(r.listener);
    await bus.close();
    await expect(bus.close()).resolves.toBeUndefined();
    await expect(bus.publish(deleted())).resolves.toBeUndefined();
    // The peer still works, and the closed one hears nothing of it.
    const alive = recorder();
    peer.subscribe(alive.listener);
    const marker = deleted();
    await peer.publish(marker);
    await vi.waitFor(() => expect(alive.events).toEqual([marker]));
    expect(r.events).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('SqliteStore specifics', () => {
  it('opens in WAL mode at the latest schema version', async () => {
    // synchronous and foreign_keys are per connection settings, not visible from another one.
    const path = tempDbPath();
    await SqliteStore.open(path).close();
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('user_version', { simple: true })).toBe(2);
      const tables = db
        .prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .pluck()
        .all();
      expect(tables).toEqual(['channels', 'server_mutes', 'tokens', 'users']);
    } finally {
      db.close();
    }
  });

  it('refuses a database from a newer schema version', async () => {
    const path = tempDbPath();
    await SqliteStore.open(path).close();
    const db = new Database(path);
    db.pragma('user_version = 99');
    db.close();
    expect(() => SqliteStore.open(path)).toThrow(StoreError);
  });

  it('the schema cascades tokens with their user', async () => {
    const path = tempDbPath();
    const store = SqliteStore.open(path);
    const user = makeUser('Cascade');
    const hash = hashToken(newToken());
    await store.createUser(user, hash);
    await store.close();
    const db = new Database(path);
    db.pragma('foreign_keys = ON');
    db.prepare('DELETE FROM users WHERE id = ?').run(user.id);
    expect(db.prepare('SELECT count(*) FROM tokens').pluck().get()).toBe(0);
    db.close();
  });

  it('falls back to the default voice settings when the stored JSON is corrupt', async () => {
    const path = tempDbPath();
    const store = SqliteStore.open(path);
    const owner = newUserId();
    const bad = makeChannel('Bad JSON', owner);
    const invalid = makeChannel('Invalid', owner);
    await store.createChannel(bad);
    await store.createChannel(invalid);
    await store.close();
    const db = new Database(path);
    db.prepare('UPDATE channels SET voice = ? WHERE id = ?').run('{not json', bad.id);
    db.prepare('UPDATE channels SET voice = ? WHERE id = ?').run('{"bitrate":1,"frameMs":7}', invalid.id);
    db.close();
    const reopened = SqliteStore.open(path);
    expect((await reopened.getChannel(bad.id))?.voice).toEqual(DEFAULT_VOICE_SETTINGS);
    expect((await reopened.getChannel(invalid.id))?.voice).toEqual(DEFAULT_VOICE_SETTINGS);
    await reopened.close();
  });

  it('turns other SQLite failures into StoreError with the cause', async () => {
    const store = SqliteStore.open(':memory:');
    const user = makeUser('Twice');
    await store.createUser(user, hashToken(newToken()));
    const err: unknown = await store.createUser(user, hashToken(newToken())).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StoreError);
    expect((err as StoreError).cause).toBeInstanceOf(Database.SqliteError);
    // The failed transaction left nothing behind.
    expect((await store.listUsers({}, ALL)).total).toBe(1);
    await store.close();
    await expect(store.getUser(user.id)).rejects.toBeInstanceOf(StoreError);
    expect(new ChannelNameTakenError('x')).toBeInstanceOf(ProtocolError);
  });

  it('creates missing parent directories', async () => {
    const path = join(tempRoot, 'deep', 'er', 'still', 'state.sqlite');
    const store = SqliteStore.open(path);
    await store.createChannel(makeChannel('x', newUserId()));
    await store.close();
  });
});

describe('passwords', () => {
  it('verifies the right password and rejects a wrong one', async () => {
    const stored = await hashPassword('correct horse');
    expect(stored).toMatch(/^scrypt\$16384\$8\$1\$[A-Za-z0-9_-]{22}\$[A-Za-z0-9_-]{43}$/);
    expect(await verifyPassword('correct horse', stored)).toBe(true);
    expect(await verifyPassword('correct horsE', stored)).toBe(false);
    expect(await verifyPassword('', stored)).toBe(false);
  });

  it('normalises Unicode so composed and decomposed forms match', async () => {
    const stored = await hashPassword('caf\u00e9');
    expect(await verifyPassword('cafe\u0301', stored)).toBe(true);
  });

  it('salts every hash', async () => {
    const [a, b] = await Promise.all([hashPassword('same'), hashPassword('same')]);
    expect(a).not.toBe(b);
    expect(await verifyPassword('same', a)).toBe(true);
    expect(await verifyPassword('same', b)).toBe(true);
  });

  it('returns false, never throws, on malformed stored hashes', async () => {
    const good = await hashPassword('pw');
    const [, n, r, p, salt, hash] = good.split('$') as [string, string, string, string, string, string];
    const malformed = [
      '',
      'plain',
      'scrypt',
      `bcrypt$${n}$${r}$${p}$${salt}$${hash}`,
      `scrypt$${n}$${r}$${p}$${salt}`,
      `scrypt$${n}$${r}$${p}$${salt}$${hash}$extra`,
      `scrypt$1000$${r}$${p}$${salt}$${hash}`,
      `scrypt$${2 ** 30}$${r}$${p}$${salt}$${hash}`,
      `scrypt$abc$${r}$${p}$${salt}$${hash}`,
      `scrypt$${n}$0$${p}$${salt}$${hash}`,
      `scrypt$${n}$${r}$-1$${salt}$${hash}`,
      `scrypt$${n}$${r}$${p}$$${hash}`,
      `scrypt$${n}$${r}$${p}$${salt}$`,
      `scrypt$${n}$${r}$${p}$${salt}$not+base64/url==`,
      `scrypt$${n}$${r}$${p}$${salt}$${hash.slice(0, 10)}`,
      `scrypt$${n}$99999$99999$${salt}$${hash}`,
    ];
    for (const stored of malformed) expect(await verifyPassword('pw', stored)).toBe(false);
    expect(await verifyPassword('pw', undefined as unknown as string)).toBe(false);
  });

  it('makes tokens, token hashes and ids of the protocol formats', () => {
    const token = newToken();
    expect(token).toMatch(TOKEN_PATTERN);
    expect(newToken()).not.toBe(token);
    expect(hashToken(token)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashToken(token)).toBe(hashToken(token));
    expect(hashToken('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    for (let i = 0; i < 50; i++) {
      const u = newUserId();
      const c = newChannelId();
      expect(u).toMatch(ID_PATTERN);
      expect(u.startsWith('u_')).toBe(true);
      expect(c).toMatch(ID_PATTERN);
      expect(c.startsWith('c_')).toBe(true);
    }
  });
});
