import { nicknameKey, type ChannelId, type UserId } from '@voice/protocol';
import type { JoinResult, SessionDirectory, SessionRecord } from './types.js';

/** An entry that lives until `expiresAt` (ms on the backend's clock). */
interface Expiring<T> {
  value: T;
  expiresAt: number;
}

/**
 * The directory's shared in-memory state: what a Redis server is to the Redis directories. One
 * process has one; tests put two directories over one to stand for two processes.
 */
export class LocalDirectoryBackend {
  readonly sessions = new Map<UserId, Expiring<SessionRecord>>();
  readonly nicknames = new Map<string, Expiring<UserId>>();
  readonly online = new Map<UserId, number>();
  readonly channels = new Map<ChannelId, Map<UserId, number>>();
  constructor(readonly now: () => number = Date.now) {}
}

export interface LocalDirectoryOptions {
  ttlMs: number;
  backend?: LocalDirectoryBackend;
}

/** One-process directory: maps with expiry times, pruned as they are read. */
export class LocalSessionDirectory implements SessionDirectory {
  readonly ttlMs: number;
  readonly #b: LocalDirectoryBackend;

  constructor(opts: LocalDirectoryOptions) {
    if (!Number.isInteger(opts.ttlMs) || opts.ttlMs < 1)
      throw new TypeError('ttlMs must be a positive integer');
    this.ttlMs = opts.ttlMs;
    this.#b = opts.backend ?? new LocalDirectoryBackend();
  }

  #expiry(): number {
    return this.#b.now() + this.ttlMs;
  }
  #alive(expiresAt: number | undefined): boolean {
    return expiresAt !== undefined && expiresAt > this.#b.now();
  }
  /** Live members of a channel (expired seats pruned). */
  #seats(channelId: ChannelId): Map<UserId, number> | undefined {
    const seats = this.#b.channels.get(channelId);
    if (!seats) return undefined;
    for (const [u, exp] of seats) if (!this.#alive(exp)) seats.delete(u);
    if (seats.size === 0) {
      this.#b.channels.delete(channelId);
      return undefined;
    }
    return seats;
  }

  putSession(record: SessionRecord): Promise<void> {
    this.#b.sessions.set(record.userId, { value: structuredClone(record), expiresAt: this.#expiry() });
    return Promise.resolve();
  }
  getSession(userId: UserId): Promise<SessionRecord | null> {
    const e = this.#b.sessions.get(userId);
    if (!e || !this.#alive(e.expiresAt)) {
      this.#b.sessions.delete(userId);
      return Promise.resolve(null);
    }
    return Promise.resolve(structuredClone(e.value));
  }
  deleteSession(userId: UserId): Promise<void> {
    this.#b.sessions.delete(userId);
    return Promise.resolve();
  }
  touch(userIds: readonly UserId[]): Promise<UserId[]> {
    const expired: UserId[] = [];
    const exp = this.#expiry();
    for (const userId of userIds) {
      const e = this.#b.sessions.get(userId);
      if (!e || !this.#alive(e.expiresAt)) {
        expired.push(userId);
        continue;
      }
      e.expiresAt = exp;
      const nick = this.#b.nicknames.get(nicknameKey(e.value.nickname));
      if (nick?.value === userId && this.#alive(nick.expiresAt)) nick.expiresAt = exp;
      if (this.#alive(this.#b.online.get(userId))) this.#b.online.set(userId, exp);
      const seats = e.value.channelId ? this.#seats(e.value.channelId) : undefined;
      if (seats?.has(userId)) seats.set(userId, exp);
    }
    return Promise.resolve(expired);
  }

  claimNickname(nickname: string, userId: UserId): Promise<boolean> {
    const key = nicknameKey(nickname);
    const holder = this.#b.nicknames.get(key);
    if (holder && holder.value !== userId && this.#alive(holder.expiresAt)) return Promise.resolve(false);
    this.#b.nicknames.set(key, { value: userId, expiresAt: this.#expiry() });
    return Promise.resolve(true);
  }
  releaseNickname(nickname: string, userId: UserId): Promise<void> {
    const key = nicknameKey(nickname);
    if (this.#b.nicknames.get(key)?.value === userId) this.#b.nicknames.delete(key);
    return Promise.resolve();
  }
  setOnline(userId: UserId, online: boolean): Promise<void> {
    if (online) this.#b.online.set(userId, this.#expiry());
    else this.#b.online.delete(userId);
    return Promise.resolve();
  }
  isOnline(userId: UserId): Promise<boolean> {
    return Promise.resolve(this.#alive(this.#b.online.get(userId)));
  }
  onlineUsers(): Promise<UserId[]> {
    const out: UserId[] = [];
    for (const [u, exp] of this.#b.online) {
      if (this.#alive(exp)) out.push(u);
      else this.#b.online.delete(u);
    }
    return Promise.resolve(out);
  }
  joinChannel(channelId: ChannelId, userId: UserId, limit: number): Promise<JoinResult> {
    let seats = this.#seats(channelId);
    if (!seats?.has(userId) && limit > 0 && (seats?.size ?? 0) >= limit)
      return Promise.resolve({ ok: false, reason: 'full' });
    if (!seats) this.#b.channels.set(channelId, (seats = new Map<UserId, number>()));
    seats.set(userId, this.#expiry());
    return Promise.resolve({ ok: true });
  }
  leaveChannel(channelId: ChannelId, userId: UserId): Promise<boolean> {
    const seats = this.#seats(channelId);
    const had = seats?.delete(userId) ?? false;
    if (seats && seats.size === 0) this.#b.channels.delete(channelId);
    return Promise.resolve(had);
  }
  channelMembers(channelId: ChannelId): Promise<UserId[]> {
    return Promise.resolve([...(this.#seats(channelId)?.keys() ?? [])]);
  }
  memberCounts(channelIds: readonly ChannelId[]): Promise<Map<ChannelId, number>> {
    return Promise.resolve(new Map(channelIds.map((id) => [id, this.#seats(id)?.size ?? 0])));
  }
  clearChannel(channelId: ChannelId): Promise<UserId[]> {
    const members = [...(this.#seats(channelId)?.keys() ?? [])];
    this.#b.channels.delete(channelId);
    return Promise.resolve(members);
  }
  /** The backend is shared state (another instance may use it): closing leaves it as it is. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
