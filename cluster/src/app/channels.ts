import {
  DEFAULT_VOICE_SETTINGS,
  ProtocolError,
  RateLimitedError,
  type Channel,
  type ChannelId,
  type ServerMute,
  type UserId,
  type VoiceSettings,
} from '@voice/protocol';
import type { ChannelFilter, ChannelPatch, Page, PageResult, StoredChannel } from '../state/types.js';
import { newChannelId } from '../state/passwords.js';
import { KeyedRateLimiter } from '../ratelimit.js';
import type { AddressBudget } from './address-budget.js';
import type { AppContext, Principal } from './context.js';
import { PasswordGuard } from './password-guard.js';

export interface ChannelInput {
  name: string;
  userLimit?: number | undefined;
  password?: string | undefined;
  voice?: Partial<VoiceSettings> | undefined;
}
export interface ChannelUpdate {
  name?: string | undefined;
  userLimit?: number | undefined;
  password?: string | null | undefined;
  voice?: Partial<VoiceSettings> | undefined;
}

/**
 * Channel CRUD with the basic permission rule: the owner or an admin may edit or delete. One user
 * may own `limits.channelsPerUser` channels and create them at `channelCreatesPerMinute`, and
 * one client address create `channelCreatesPerAddressPerHour` whatever accounts it uses; the
 * admin is bound only by the server's total. Owns the channels' password checks.
 */
export class ChannelService {
  readonly passwords: PasswordGuard;
  readonly #creations: KeyedRateLimiter;

  constructor(
    private readonly ctx: AppContext,
    private readonly budget: AddressBudget,
  ) {
    const { limits } = ctx.config;
    this.passwords = new PasswordGuard(ctx.config.passwords, ctx.metrics);
    this.#creations = new KeyedRateLimiter(
      limits.channelCreatesPerMinute / 60,
      limits.channelCreateBurst,
      10_000,
    );
  }

  async get(id: ChannelId): Promise<StoredChannel> {
    const ch = await this.ctx.store.getChannel(id);
    if (!ch) throw new ProtocolError('NOT_FOUND', 'no such channel');
    return ch;
  }

  canModerate(who: Principal, ch: StoredChannel): boolean {
    return who.admin || (who.userId !== null && who.userId === ch.ownerId);
  }

  /**
   * Joining `ch` needs its password unless `who` moderates it. WRONG_PASSWORD when missing or
   * wrong; RATE_LIMITED (with a retry time) while the user or the channel backs off after wrong ones.
   */
  async admit(who: Principal, ch: StoredChannel, password: string | undefined): Promise<void> {
    if (ch.passwordHash === null || this.canModerate(who, ch)) return;
    if (password === undefined) throw new ProtocolError('WRONG_PASSWORD', 'this channel needs a password');
    if (who.userId === null || !(await this.passwords.verify(who.userId, ch.id, password, ch.passwordHash)))
      throw new ProtocolError('WRONG_PASSWORD');
  }

  /** Creates a channel owned by `who`, asked from `address` (the client's, for its budget). */
  async create(who: Principal, input: ChannelInput, address: string): Promise<StoredChannel> {
    if (who.userId === null) throw new ProtocolError('FORBIDDEN', 'channels are created by a logged-in user');
    const { limits } = this.ctx.config;
    if (!who.admin && !this.#creations.take(who.userId)) {
      this.ctx.metrics.rateLimited.inc({ limit: 'channel_creations' });
      throw new RateLimitedError(60_000 / limits.channelCreatesPerMinute, 'too many channels created');
    }
    if (!who.admin) this.budget.spend('channel_creation', address);
    const now = this.ctx.now();
    const ch: StoredChannel = {
      id: newChannelId(),
      name: input.name,
      userLimit: input.userLimit ?? 0,
      ownerId: who.userId,
      passwordHash: input.password ? await this.passwords.hash(who.userId, input.password) : null,
      voice: { ...DEFAULT_VOICE_SETTINGS, ...input.voice },
      createdAt: now,
      updatedAt: now,
    };
    await this.ctx.store.createChannel(ch, {
      maxTotal: limits.maxChannels,
      maxPerOwner: who.admin ? limits.maxChannels : limits.channelsPerUser,
    });
    await this.ctx.bus.publish({ type: 'channel.created', channel: ch });
    return ch;
  }

  async update(who: Principal, id: ChannelId, input: ChannelUpdate): Promise<StoredChannel> {
    const ch = await this.get(id);
    if (!this.canModerate(who, ch))
      throw new ProtocolError('FORBIDDEN', 'only the owner or an admin may edit');
    const patch: ChannelPatch = { updatedAt: this.ctx.now() };
    if (input.name !== undefined) patch.name = input.name;
    if (input.userLimit !== undefined) patch.userLimit = input.userLimit;
    if (input.password !== undefined) {
      patch.passwordHash =
        input.password === null ? null : await this.passwords.hash(who.userId, input.password);
    }
    if (input.voice !== undefined) patch.voice = { ...ch.voice, ...input.voice };
    const updated = await this.ctx.store.updateChannel(id, patch);
    if (!updated) throw new ProtocolError('NOT_FOUND', 'no such channel');
    await this.ctx.bus.publish({ type: 'channel.updated', channel: updated });
    return updated;
  }

  /** Deletes the channel; members are removed by the session layer on the `channel.deleted` event. */
  async delete(who: Principal, id: ChannelId): Promise<void> {
    const ch = await this.get(id);
    if (!this.canModerate(who, ch))
      throw new ProtocolError('FORBIDDEN', 'only the owner or an admin may delete');
    if (!(await this.ctx.store.deleteChannel(id))) throw new ProtocolError('NOT_FOUND', 'no such channel');
    await this.ctx.bus.publish({ type: 'channel.deleted', channelId: id });
  }

  /** The server mutes stored for a channel, present members or not: its owner or an admin only. */
  async serverMutes(who: Principal, id: ChannelId, page: Page): Promise<PageResult<ServerMute>> {
    const ch = await this.get(id);
    if (!this.canModerate(who, ch))
      throw new ProtocolError('FORBIDDEN', 'only the owner or an admin may see server mutes');
    const res = await this.ctx.store.listServerMutes(id, page);
    const users = await Promise.all(res.items.map((m) => this.ctx.store.getUser(m.userId)));
    return {
      ...res,
      items: res.items.map((m, i) => ({
        userId: m.userId,
        nickname: users[i]?.nickname ?? null,
        mutedAt: m.mutedAt,
      })),
    };
  }

  async list(filter: ChannelFilter, page: Page): Promise<PageResult<Channel>> {
    const res = await this.ctx.store.listChannels(filter, page);
    return { ...res, items: await this.views(res.items) };
  }

  async listAll(): Promise<Channel[]> {
    return (await this.list({}, { limit: this.ctx.config.limits.maxChannels, offset: 0 })).items;
  }

  async view(ch: StoredChannel): Promise<Channel> {
    const [v] = await this.views([ch]);
    return v!;
  }

  async views(chs: readonly StoredChannel[]): Promise<Channel[]> {
    const counts = await this.ctx.directory.memberCounts(chs.map((c) => c.id));
    return chs.map((c) => toChannel(c, counts.get(c.id) ?? 0));
  }
}

/** The public view: the password hash never leaves the server. */
export function toChannel(c: StoredChannel, memberCount: number): Channel {
  return {
    id: c.id,
    name: c.name,
    userLimit: c.userLimit,
    ownerId: c.ownerId,
    hasPassword: c.passwordHash !== null,
    voice: c.voice,
    memberCount,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

export type { UserId };
