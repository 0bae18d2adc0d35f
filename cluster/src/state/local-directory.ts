import { nicknameKey, type ChannelId, type UserId } from '@voice/protocol';
import type { JoinResult, SessionDirectory } from './types.js';

/** One-process directory: plain maps. Async only to share the interface with the Redis one. */
export class LocalSessionDirectory implements SessionDirectory {
  readonly #nicknames = new Map<string, UserId>();
  readonly #online = new Set<UserId>();
  readonly #channels = new Map<ChannelId, Set<UserId>>();

  claimNickname(nickname: string, userId: UserId): Promise<boolean> {
    const key = nicknameKey(nickname);
    const holder = this.#nicknames.get(key);
    if (holder !== undefined && holder !== userId) return Promise.resolve(false);
    this.#nicknames.set(key, userId);
    return Promise.resolve(true);
  }
  releaseNickname(nickname: string, userId: UserId): Promise<void> {
    const key = nicknameKey(nickname);
    if (this.#nicknames.get(key) === userId) this.#nicknames.delete(key);
    return Promise.resolve();
  }
  setOnline(userId: UserId, online: boolean): Promise<void> {
    if (online) this.#online.add(userId);
    else this.#online.delete(userId);
    return Promise.resolve();
  }
  isOnline(userId: UserId): Promise<boolean> {
    return Promise.resolve(this.#online.has(userId));
  }
  onlineUsers(): Promise<UserId[]> {
    return Promise.resolve([...this.#online]);
  }
  joinChannel(channelId: ChannelId, userId: UserId, limit: number): Promise<JoinResult> {
    let set = this.#channels.get(channelId);
    if (set?.has(userId)) return Promise.resolve({ ok: true });
    if (limit > 0 && (set?.size ?? 0) >= limit) return Promise.resolve({ ok: false, reason: 'full' });
    if (!set) this.#channels.set(channelId, (set = new Set()));
    set.add(userId);
    return Promise.resolve({ ok: true });
  }
  leaveChannel(channelId: ChannelId, userId: UserId): Promise<boolean> {
    const set = this.#channels.get(channelId);
    const had = set?.delete(userId) ?? false;
    if (set && set.size === 0) this.#channels.delete(channelId);
    return Promise.resolve(had);
  }
  channelMembers(channelId: ChannelId): Promise<UserId[]> {
    return Promise.resolve([...(this.#channels.get(channelId) ?? [])]);
  }
  memberCounts(channelIds: readonly ChannelId[]): Promise<Map<ChannelId, number>> {
    return Promise.resolve(new Map(channelIds.map((id) => [id, this.#channels.get(id)?.size ?? 0])));
  }
  clearChannel(channelId: ChannelId): Promise<UserId[]> {
    const members = [...(this.#channels.get(channelId) ?? [])];
    this.#channels.delete(channelId);
    return Promise.resolve(members);
  }
  close(): Promise<void> {
    this.#nicknames.clear();
    this.#online.clear();
    this.#channels.clear();
    return Promise.resolve();
  }
}
