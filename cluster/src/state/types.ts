import type { Channel, ChannelId, LeaveReason, Member, User, UserId, VoiceSettings } from '@voice/protocol';

/**
 * State interfaces. Each has a local implementation (embedded, one process) and, later, a Redis one
 * for clusters; one contract test suite runs against every implementation. Nothing above this
 * layer knows which mode it runs in.
 */

export interface Page {
  limit: number;
  offset: number;
}
export interface StoredServerMute {
  userId: UserId;
  /** When the mute was set (ms since the epoch). */
  mutedAt: number;
}
export interface PageResult<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

/** A user as stored: no presence (that lives in the SessionDirectory). */
export type StoredUser = Omit<User, 'online'>;

/** A channel as stored: the password hash never leaves the server; no live member count. */
export interface StoredChannel extends Omit<Channel, 'hasPassword' | 'memberCount'> {
  /** scrypt hash `scrypt$N$r$p$salt$hash` (base64url parts), or null for an open channel. */
  passwordHash: string | null;
}

export interface UserFilter {
  /** Case-insensitive substring of the nickname. */
  q?: string;
  /** Restrict to these ids (used to filter on presence). */
  ids?: readonly UserId[];
  /** Leave out these ids (offline is "not online", filtered before paging so `total` is right). */
  excludeIds?: readonly UserId[];
}
export interface ChannelFilter {
  q?: string;
  ownerId?: UserId;
}

export interface ChannelPatch {
  name?: string;
  userLimit?: number;
  passwordHash?: string | null;
  voice?: VoiceSettings;
  updatedAt: number;
}

export interface PurgeCriteria {
  staleBefore: number;
  unconnectedBefore: number;
  keep: readonly UserId[];
  limit: number;
}

export interface ChannelCaps {
  maxTotal: number;
  maxPerOwner: number;
}

/** Durable state: profiles, tokens and channels. Survives restarts and `kill -9`. */
export interface Store {
  readonly kind: 'sqlite' | 'redis';
  /** Creates a user with its first token (stored as a SHA-256 hash, never in clear). */
  createUser(user: StoredUser, tokenHash: string): Promise<void>;
  getUser(id: UserId): Promise<StoredUser | null>;
  getUserByTokenHash(tokenHash: string): Promise<StoredUser | null>;
  updateUser(
    id: UserId,
    patch: { nickname?: string; status?: string; lastSeenAt?: number },
  ): Promise<StoredUser | null>;
  deleteToken(tokenHash: string): Promise<void>;
  listUsers(filter: UserFilter, page: Page): Promise<PageResult<StoredUser>>;

  /**
   * Throws ChannelNameTakenError when the (case-insensitive) name exists. With `caps`, atomically
   * refuses (ChannelLimitError) when the store already holds `maxTotal` channels or the owner
   * `maxPerOwner`: concurrent creations never overshoot either cap.
   */
  createChannel(channel: StoredChannel, caps?: ChannelCaps): Promise<void>;
  getChannel(id: ChannelId): Promise<StoredChannel | null>;
  /** Throws ChannelNameTakenError when renaming onto an existing name. Null when not found. */
  updateChannel(id: ChannelId, patch: ChannelPatch): Promise<StoredChannel | null>;
  /** Deletes the channel and its server mutes. */
  deleteChannel(id: ChannelId): Promise<boolean>;
  listChannels(filter: ChannelFilter, page: Page): Promise<PageResult<StoredChannel>>;

  /**
   * Server mutes belong to a (channel, user) pair and last until lifted, whether or not the user
   * is in the channel. Setting one on a channel that does not exist is a no-op. Idempotent.
   */
  setServerMute(channelId: ChannelId, userId: UserId, muted: boolean, at: number): Promise<void>;
  isServerMuted(channelId: ChannelId, userId: UserId): Promise<boolean>;
  /** One page of the mutes stored for a channel, ordered by user id; empty for an unknown channel. */
  listServerMutes(channelId: ChannelId, page: Page): Promise<PageResult<StoredServerMute>>;

  /**
   * Deletes at most `limit` users (with their tokens and mutes) who own no channel, are not in
   * `keep`, and either can no longer log in (last seen before `staleBefore`, or holding no token
   * at all) or never connected (`lastSeenAt` still equals `createdAt`) and were created before
   * `unconnectedBefore`. Returns their ids, least recently seen first.
   */
  purgeUsers(criteria: PurgeCriteria): Promise<UserId[]>;

  close(): Promise<void>;
}

export type JoinResult = { ok: true } | { ok: false; reason: 'full' };

/**
 * What of a session must outlive the process holding its connection: the seat, the controls and
 * the volumes. A resume on any node, or the node that takes a channel over, reads it from here.
 */
export interface SessionRecord {
  userId: UserId;
  /** The node holding (or last holding) its signaling connection. */
  nodeId: string;
  nickname: string;
  channelId: ChannelId | null;
  selfMute: boolean;
  selfDeaf: boolean;
  serverMute: boolean;
  /** Listener-side volume per speaker id, percent; absent means 100. */
  volumes: Record<string, number>;
  /**
   * Speakers its connection may receive as STREAM packets (Welcome.streams, README 8.8); absent in
   * records written before it existed: 1 (mixes only).
   */
  streams?: number;
  /** RED granted to its connection (Welcome.red, README 9.1); absent in older records: false. */
  red?: boolean;
  /** The member as last published, for listings made on other nodes. */
  member: Member;
}

/**
 * Live, non-durable state shared by every node: sessions, who is online, which nicknames connected
 * users hold, and who is in which channel. Every entry a session made (its record, nickname claim,
 * online mark and seat) expires `ttlMs` after it was last written or touched, so the claims of a
 * process that died go away on their own; a live node touches its sessions well within that.
 */
export interface SessionDirectory {
  /** How long a session's entries live without a touch. */
  readonly ttlMs: number;
  /** Writes (replaces) a session record. */
  putSession(record: SessionRecord): Promise<void>;
  getSession(userId: UserId): Promise<SessionRecord | null>;
  /** Removes the record (its claims stay until released or expired). */
  deleteSession(userId: UserId): Promise<void>;
  /**
   * Extends the life of each user's record, nickname claim, online mark and seat. Returns the users
   * whose record had already expired (their claims may be gone: the caller re-establishes them).
   */
  touch(userIds: readonly UserId[]): Promise<UserId[]>;

  /**
   * Claims a nickname for a connected user; false if another online user holds one with the same
   * `nicknameKey` (protocol: case-folded UTS #39 confusable skeleton, so `аdmin` collides with
   * `admin`). Every implementation keys claims and releases by `nicknameKey(nickname)`.
   */
  claimNickname(nickname: string, userId: UserId): Promise<boolean>;
  releaseNickname(nickname: string, userId: UserId): Promise<void>;
  setOnline(userId: UserId, online: boolean): Promise<void>;
  isOnline(userId: UserId): Promise<boolean>;
  onlineUsers(): Promise<UserId[]>;

  /** Atomically checks the limit (0 = none) and adds the member. Re-joining the same channel is ok. */
  joinChannel(channelId: ChannelId, userId: UserId, limit: number): Promise<JoinResult>;
  leaveChannel(channelId: ChannelId, userId: UserId): Promise<boolean>;
  channelMembers(channelId: ChannelId): Promise<UserId[]>;
  memberCounts(channelIds: readonly ChannelId[]): Promise<Map<ChannelId, number>>;
  clearChannel(channelId: ChannelId): Promise<UserId[]>;
  close(): Promise<void>;
}

/** Events that every node must see. Members' full state travels with member events. */
export type BusEvent =
  | { type: 'channel.created'; channel: StoredChannel }
  | { type: 'channel.updated'; channel: StoredChannel }
  | { type: 'channel.deleted'; channelId: ChannelId }
  | { type: 'member.joined'; channelId: ChannelId; member: Member }
  | { type: 'member.updated'; channelId: ChannelId; member: Member }
  | { type: 'member.left'; channelId: ChannelId; userId: UserId; reason: LeaveReason }
  | { type: 'speaking'; channelId: ChannelId; userId: UserId; speaking: boolean }
  | { type: 'user.updated'; user: StoredUser };

export type BusEventType = BusEvent['type'];
export type BusListener = (event: BusEvent) => void;

/** Fan-out of BusEvents to every node (including the publisher). Listener errors never break it. */
export interface EventBus {
  publish(event: BusEvent): Promise<void>;
  subscribe(listener: BusListener): () => void;
  close(): Promise<void>;
}
