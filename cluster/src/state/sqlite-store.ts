import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { asChannelId, asUserId } from '@voice/protocol';
import type { ChannelId, UserId } from '@voice/protocol';
import { ChannelLimitError, ChannelNameTakenError, StoreError } from '../errors.js';
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

/**
 * Schema migrations, applied in order; `PRAGMA user_version` holds how many have run. Append new
 * versions at the end, never edit a released one. Each runs in its own transaction.
 */
const MIGRATIONS: readonly string[] = [
  // 1: users, tokens, channels.
  `
  CREATE TABLE users (
    id           TEXT PRIMARY KEY,
    nickname     TEXT NOT NULL,
    nickname_key TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX users_by_created ON users (created_at, id);
  CREATE INDEX users_by_nickname ON users (nickname_key);

  CREATE TABLE tokens (
    hash       TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX tokens_by_user ON tokens (user_id);

  CREATE TABLE channels (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    name_key      TEXT NOT NULL UNIQUE,
    user_limit    INTEGER NOT NULL,
    owner_id      TEXT NOT NULL,
    password_hash TEXT,
    voice         TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
  ) STRICT;
  CREATE INDEX channels_by_created ON channels (created_at, id);
  CREATE INDEX channels_by_owner ON channels (owner_id, created_at, id);
  `,
  // 2: server mutes per (channel, user), kept across leave, re-join and restart; purge by age.
  `
  CREATE TABLE server_mutes (
    channel_id TEXT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, user_id)
  ) STRICT, WITHOUT ROWID;
  CREATE INDEX server_mutes_by_user ON server_mutes (user_id);
  CREATE INDEX users_by_last_seen ON users (last_seen_at, id);
  `,
];

/** `%q%` with LIKE's own wildcards escaped (with `\`), or null for "no filter". */
function likePattern(q: string | undefined): string | null {
  if (q === undefined || q === '') return null;
  return `%${foldKey(q).replace(/[\\%_]/g, '\\$&')}%`;
}

interface UserRow {
  id: string;
  nickname: string;
  status: string;
  created_at: number;
  last_seen_at: number;
}
interface ChannelRow {
  id: string;
  name: string;
  user_limit: number;
  owner_id: string;
  password_hash: string | null;
  voice: string;
  created_at: number;
  updated_at: number;
}
interface UserQuery {
  q: string | null;
  ids: string | null;
  excludeIds: string | null;
}
interface ChannelQuery {
  q: string | null;
  ownerId: string | null;
}
interface Paged {
  limit: number;
  offset: number;
}

const toUser = (r: UserRow): StoredUser => ({
  id: asUserId(r.id),
  nickname: r.nickname,
  status: r.status,
  createdAt: r.created_at,
  lastSeenAt: r.last_seen_at,
});

const toChannel = (r: ChannelRow): StoredChannel => ({
  id: asChannelId(r.id),
  name: r.name,
  userLimit: r.user_limit,
  ownerId: asUserId(r.owner_id),
  passwordHash: r.password_hash,
  voice: parseVoice(r.voice),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** True when `err` is SQLite refusing a second channel with the same folded name. */
function isChannelNameConflict(err: unknown): boolean {
  return (
    err instanceof Database.SqliteError &&
    err.code === 'SQLITE_CONSTRAINT_UNIQUE' &&
    err.message.includes('channels.name_key')
  );
}

function openDatabase(path: string): Database.Database {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    // WAL: readers never block the writer, and a commit is one append to the log.
    db.pragma('journal_mode = WAL');
    // FULL: in WAL mode, NORMAL fsyncs only at checkpoints, so a commit the caller was told about
    // survives kill -9 (the OS still holds the page) but can vanish on power loss or kernel panic.
    // FULL fsyncs the log on every commit: once a promise resolves, the write is on disk.
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    migrate(db);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new StoreError(
      `database schema version ${current} is newer than this server supports (${MIGRATIONS.length})`,
    );
  }
  for (let v = current; v < MIGRATIONS.length; v++) {
    const sql = MIGRATIONS[v]!;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
}

/** Embedded durable store for the single-node mode: one SQLite file, synchronous inside. */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly #db: Database.Database;
  #closed = false;

  readonly #insertUser;
  readonly #insertToken;
  readonly #getUser;
  readonly #getUserByToken;
  readonly #updateUser;
  readonly #deleteToken;
  readonly #listUsers;
  readonly #countUsers;
  readonly #insertChannel;
  readonly #getChannel;
  readonly #updateChannel;
  readonly #deleteChannel;
  readonly #listChannels;
  readonly #countChannels;
  readonly #muteInsert;
  readonly #muteDelete;
  readonly #muteGet;
  readonly #mutesTx;
  readonly #purgeCandidates;
  readonly #purgeTx;
  readonly #createUserTx;
  readonly #createChannelTx;
  readonly #listUsersTx;
  readonly #listChannelsTx;

  /** Opens (creating if needed) the database at `path` and brings its schema up to date. */
  static open(path: string): SqliteStore {
    if (typeof path !== 'string' || path === '') throw new TypeError('path must be a non-empty string');
    try {
      return new SqliteStore(openDatabase(path));
    } catch (err) {
      if (err instanceof StoreError) throw err;
      throw new StoreError(`cannot open the store at ${path}: ${String(err)}`, { cause: err });
    }
  }

  private constructor(db: Database.Database) {
    this.#db = db;

    this.#insertUser = db.prepare<[UserRow & { nickname_key: string }]>(
      `INSERT INTO users (id, nickname, nickname_key, status, created_at, last_seen_at)
       VALUES (@id, @nickname, @nickname_key, @status, @created_at, @last_seen_at)`,
    );
    this.#insertToken = db.prepare<[string, string, number]>(
      'INSERT INTO tokens (hash, user_id, created_at) VALUES (?, ?, ?)',
    );
    this.#getUser = db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?');
    this.#getUserByToken = db.prepare<[string], UserRow>(
      'SELECT u.* FROM tokens t JOIN users u ON u.id = t.user_id WHERE t.hash = ?',
    );
    this.#updateUser = db.prepare<
      [
        {
          id: string;
          nickname: string | null;
          nicknameKey: string | null;
          status: string | null;
          lastSeenAt: number | null;
        },
      ],
      UserRow
    >(
      `UPDATE users SET
         nickname = coalesce(@nickname, nickname),
         nickname_key = coalesce(@nicknameKey, nickname_key),
         status = coalesce(@status, status),
         last_seen_at = coalesce(@lastSeenAt, last_seen_at)
       WHERE id = @id
       RETURNING *`,
    );
    this.#deleteToken = db.prepare<[string]>('DELETE FROM tokens WHERE hash = ?');
    const userWhere = `(@q IS NULL OR nickname_key LIKE @q ESCAPE '\\')
      AND (@ids IS NULL OR id IN (SELECT value FROM json_each(@ids)))
      AND (@excludeIds IS NULL OR id NOT IN (SELECT value FROM json_each(@excludeIds)))`;
    this.#listUsers = db.prepare<[UserQuery & Paged], UserRow>(
      `SELECT * FROM users WHERE ${userWhere} ORDER BY created_at, id LIMIT @limit OFFSET @offset`,
    );
    this.#countUsers = db
      .prepare<[UserQuery], number>(`SELECT count(*) FROM users WHERE ${userWhere}`)
      .pluck();

    this.#insertChannel = db.prepare<[ChannelRow & { name_key: string }]>(
      `INSERT INTO channels
         (id, name, name_key, user_limit, owner_id, password_hash, voice, created_at, updated_at)
       VALUES
         (@id, @name, @name_key, @user_limit, @owner_id, @password_hash, @voice, @created_at, @updated_at)`,
    );
    this.#getChannel = db.prepare<[string], ChannelRow>('SELECT * FROM channels WHERE id = ?');
    this.#updateChannel = db.prepare<
      [
        {
          id: string;
          name: string | null;
          nameKey: string | null;
          userLimit: number | null;
          setPassword: 0 | 1;
          passwordHash: string | null;
          voice: string | null;
          updatedAt: number;
        },
      ],
      ChannelRow
    >(
      `UPDATE channels SET
         name = coalesce(@name, name),
         name_key = coalesce(@nameKey, name_key),
         user_limit = coalesce(@userLimit, user_limit),
         password_hash = CASE WHEN @setPassword THEN @passwordHash ELSE password_hash END,
         voice = coalesce(@voice, voice),
         updated_at = @updatedAt
       WHERE id = @id
       RETURNING *`,
    );
    this.#deleteChannel = db.prepare<[string]>('DELETE FROM channels WHERE id = ?');
    const channelWhere = `(@q IS NULL OR name_key LIKE @q ESCAPE '\\')
      AND (@ownerId IS NULL OR owner_id = @ownerId)`;
    this.#listChannels = db.prepare<[ChannelQuery & Paged], ChannelRow>(
      `SELECT * FROM channels WHERE ${channelWhere} ORDER BY created_at, id LIMIT @limit OFFSET @offset`,
    );
    this.#countChannels = db
      .prepare<[ChannelQuery], number>(`SELECT count(*) FROM channels WHERE ${channelWhere}`)
      .pluck();

    this.#muteInsert = db.prepare<[{ channelId: string; userId: string; at: number }]>(
      `INSERT INTO server_mutes (channel_id, user_id, created_at)
       SELECT id, @userId, @at FROM channels WHERE id = @channelId
       ON CONFLICT DO NOTHING`,
    );
    this.#muteDelete = db.prepare<[string, string]>(
      'DELETE FROM server_mutes WHERE channel_id = ? AND user_id = ?',
    );
    this.#muteGet = db
      .prepare<[string, string], number>('SELECT 1 FROM server_mutes WHERE channel_id = ? AND user_id = ?')
      .pluck();
    const listMutes = db.prepare<[{ channelId: string; limit: number; offset: number }], StoredServerMute>(
      `SELECT user_id AS userId, created_at AS mutedAt FROM server_mutes WHERE channel_id = @channelId
       ORDER BY user_id LIMIT @limit OFFSET @offset`,
    );
    const countMutes = db
      .prepare<[string], number>('SELECT count(*) FROM server_mutes WHERE channel_id = ?')
      .pluck();
    this.#mutesTx = db.transaction((channelId: ChannelId, p: Page): PageResult<StoredServerMute> => ({
      items: listMutes.all({ channelId, limit: p.limit, offset: p.offset }),
      total: countMutes.get(channelId) ?? 0,
      limit: p.limit,
      offset: p.offset,
    }));
    this.#purgeCandidates = db
      .prepare<[{ staleBefore: number; unconnectedBefore: number; keep: string; limit: number }], string>(
        `SELECT u.id FROM users u
         WHERE (u.last_seen_at < @staleBefore
                OR NOT EXISTS (SELECT 1 FROM tokens t WHERE t.user_id = u.id)
                OR (u.last_seen_at = u.created_at AND u.created_at < @unconnectedBefore))
           AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.owner_id = u.id)
           AND u.id NOT IN (SELECT value FROM json_each(@keep))
         ORDER BY u.last_seen_at, u.id
         LIMIT @limit`,
      )
      .pluck();
    const deleteUsers = db.prepare<[string]>(
      'DELETE FROM users WHERE id IN (SELECT value FROM json_each(?))',
    );
    const deleteMutes = db.prepare<[string]>(
      'DELETE FROM server_mutes WHERE user_id IN (SELECT value FROM json_each(?))',
    );
    this.#purgeTx = db.transaction((c: PurgeCriteria): UserId[] => {
      const ids = this.#purgeCandidates.all({
        staleBefore: c.staleBefore,
        unconnectedBefore: c.unconnectedBefore,
        keep: JSON.stringify(c.keep),
        limit: c.limit,
      });
      if (ids.length === 0) return [];
      const json = JSON.stringify(ids);
      deleteMutes.run(json);
      deleteUsers.run(json); // tokens go with them (ON DELETE CASCADE)
      return ids.map(asUserId);
    });
    this.#createUserTx = db.transaction((user: StoredUser, tokenHash: string) => {
      this.#insertUser.run({
        id: user.id,
        nickname: user.nickname,
        nickname_key: foldKey(user.nickname),
        status: user.status,
        created_at: user.createdAt,
        last_seen_at: user.lastSeenAt,
      });
      this.#insertToken.run(tokenHash, user.id, user.createdAt);
    });
    // The caps' counts and the insert in one transaction: concurrent creations cannot overshoot.
    this.#createChannelTx = db.transaction((channel: StoredChannel, caps: ChannelCaps | undefined) =>
      this.#createChannelSync(channel, caps),
    );
    // Items and total read in one transaction, so they agree with each other.
    this.#listUsersTx = db.transaction((query: UserQuery, page: Page): PageResult<StoredUser> => {
      const items = this.#listUsers.all({ ...query, limit: page.limit, offset: page.offset }).map(toUser);
      const total = this.#countUsers.get(query) ?? 0;
      return { items, total, limit: page.limit, offset: page.offset };
    });
    this.#listChannelsTx = db.transaction((query: ChannelQuery, page: Page): PageResult<StoredChannel> => {
      const items = this.#listChannels
        .all({ ...query, limit: page.limit, offset: page.offset })
        .map(toChannel);
      const total = this.#countChannels.get(query) ?? 0;
      return { items, total, limit: page.limit, offset: page.offset };
    });
  }

  /**
   * Runs one synchronous operation and settles a promise with it: the interface is async for
   * Redis. Name conflicts become ChannelNameTakenError, other SQLite failures StoreError.
   */
  #run<T>(what: string, fn: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreError(`${what}: the store is closed`));
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(this.#wrap(what, err));
    }
  }

  #wrap(what: string, err: unknown): Error {
    if (
      err instanceof TypeError ||
      err instanceof StoreError ||
      err instanceof ChannelNameTakenError ||
      err instanceof ChannelLimitError
    )
      return err;
    const message = err instanceof Error ? err.message : String(err);
    return new StoreError(`${what}: ${message}`, { cause: err });
  }

  createUser(user: StoredUser, tokenHash: string): Promise<void> {
    return this.#run('createUser', () => this.#createUserTx(user, tokenHash));
  }

  getUser(id: UserId): Promise<StoredUser | null> {
    return this.#run('getUser', () => {
      const row = this.#getUser.get(id);
      return row ? toUser(row) : null;
    });
  }

  getUserByTokenHash(tokenHash: string): Promise<StoredUser | null> {
    return this.#run('getUserByTokenHash', () => {
      const row = this.#getUserByToken.get(tokenHash);
      return row ? toUser(row) : null;
    });
  }

  updateUser(
    id: UserId,
    patch: { nickname?: string; status?: string; lastSeenAt?: number },
  ): Promise<StoredUser | null> {
    return this.#run('updateUser', () => {
      const row = this.#updateUser.get({
        id,
        nickname: patch.nickname ?? null,
        nicknameKey: patch.nickname === undefined ? null : foldKey(patch.nickname),
        status: patch.status ?? null,
        lastSeenAt: patch.lastSeenAt ?? null,
      });
      return row ? toUser(row) : null;
    });
  }

  deleteToken(tokenHash: string): Promise<void> {
    return this.#run('deleteToken', () => {
      this.#deleteToken.run(tokenHash);
    });
  }

  listUsers(filter: UserFilter, page: Page): Promise<PageResult<StoredUser>> {
    return this.#run('listUsers', () => {
      checkPage(page);
      const query: UserQuery = {
        q: likePattern(filter.q),
        ids: filter.ids === undefined ? null : JSON.stringify(filter.ids),
        excludeIds: filter.excludeIds === undefined ? null : JSON.stringify(filter.excludeIds),
      };
      return this.#listUsersTx(query, page);
    });
  }

  createChannel(channel: StoredChannel, caps?: ChannelCaps): Promise<void> {
    return this.#run('createChannel', () => this.#createChannelTx(channel, caps));
  }

  #createChannelSync(channel: StoredChannel, caps: ChannelCaps | undefined): void {
    if (caps) {
      if ((this.#countChannels.get({ q: null, ownerId: null }) ?? 0) >= caps.maxTotal)
        throw new ChannelLimitError(`this server allows at most ${caps.maxTotal} channels`);
      if ((this.#countChannels.get({ q: null, ownerId: channel.ownerId }) ?? 0) >= caps.maxPerOwner)
        throw new ChannelLimitError(`one user may own at most ${caps.maxPerOwner} channels`);
    }
    try {
      this.#insertChannel.run({
        id: channel.id,
        name: channel.name,
        name_key: foldKey(channel.name),
        user_limit: channel.userLimit,
        owner_id: channel.ownerId,
        password_hash: channel.passwordHash,
        voice: JSON.stringify(channel.voice),
        created_at: channel.createdAt,
        updated_at: channel.updatedAt,
      });
    } catch (err) {
      if (isChannelNameConflict(err)) throw new ChannelNameTakenError(channel.name);
      throw err;
    }
  }

  getChannel(id: ChannelId): Promise<StoredChannel | null> {
    return this.#run('getChannel', () => {
      const row = this.#getChannel.get(id);
      return row ? toChannel(row) : null;
    });
  }

  updateChannel(id: ChannelId, patch: ChannelPatch): Promise<StoredChannel | null> {
    return this.#run('updateChannel', () => {
      try {
        const row = this.#updateChannel.get({
          id,
          name: patch.name ?? null,
          nameKey: patch.name === undefined ? null : foldKey(patch.name),
          userLimit: patch.userLimit ?? null,
          setPassword: patch.passwordHash === undefined ? 0 : 1,
          passwordHash: patch.passwordHash ?? null,
          voice: patch.voice === undefined ? null : JSON.stringify(patch.voice),
          updatedAt: patch.updatedAt,
        });
        return row ? toChannel(row) : null;
      } catch (err) {
        if (isChannelNameConflict(err)) throw new ChannelNameTakenError(patch.name ?? '');
        throw err;
      }
    });
  }

  deleteChannel(id: ChannelId): Promise<boolean> {
    return this.#run('deleteChannel', () => this.#deleteChannel.run(id).changes > 0);
  }

  listChannels(filter: ChannelFilter, page: Page): Promise<PageResult<StoredChannel>> {
    return this.#run('listChannels', () => {
      checkPage(page);
      const query: ChannelQuery = { q: likePattern(filter.q), ownerId: filter.ownerId ?? null };
      return this.#listChannelsTx(query, page);
    });
  }

  setServerMute(channelId: ChannelId, userId: UserId, muted: boolean, at: number): Promise<void> {
    return this.#run('setServerMute', () => {
      if (muted) this.#muteInsert.run({ channelId, userId, at });
      else this.#muteDelete.run(channelId, userId);
    });
  }

  isServerMuted(channelId: ChannelId, userId: UserId): Promise<boolean> {
    return this.#run('isServerMuted', () => this.#muteGet.get(channelId, userId) !== undefined);
  }

  listServerMutes(channelId: ChannelId, page: Page): Promise<PageResult<StoredServerMute>> {
    return this.#run('listServerMutes', () => this.#mutesTx(channelId, page));
  }

  purgeUsers(opts: PurgeCriteria): Promise<UserId[]> {
    return this.#run('purgeUsers', () => {
      if (!Number.isSafeInteger(opts.limit) || opts.limit < 0)
        throw new TypeError('limit must be a non-negative integer');
      return this.#purgeTx(opts);
    });
  }

  /** Closes the database (checkpointing the log). Idempotent. */
  /**
   * The connection's durability settings, as SQLite reports them. A kill -9 test cannot tell FULL
   * from OFF (the page cache outlives the process), so the test of power-loss durability reads these.
   */
  durability(): { journalMode: string; synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA' } {
    const journalMode = String(this.#db.pragma('journal_mode', { simple: true }));
    const level = Number(this.#db.pragma('synchronous', { simple: true }));
    return { journalMode, synchronous: (['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const)[level] ?? 'OFF' };
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    try {
      this.#db.close();
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(this.#wrap('close', err));
    }
  }
}
