import {
  DEFAULT_VOICE_SETTINGS,
  ProtocolError,
  type Channel,
  type ChannelId,
  type UserId,
  type VoiceSettings,
} from '@voice/protocol';
import type { ChannelFilter, ChannelPatch, Page, PageResult, StoredChannel } from '../state/types.js';
import { hashPassword, newChannelId } from '../state/passwords.js';
import type { AppContext, Principal } from './context.js';

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

/** Channel CRUD with the basic permission rule: the owner or an admin may edit or delete. */
export class ChannelService {
  constructor(private readonly ctx: AppContext) {}

  async get(id: ChannelId): Promise<StoredChannel> {
    const ch = await this.ctx.store.getChannel(id);
    if (!ch) throw new ProtocolError('NOT_FOUND', 'no such channel');
    return ch;
  }

  canModerate(who: Principal, ch: StoredChannel): boolean {
    return who.admin || (who.userId !== null && who.userId === ch.ownerId);
  }

  async create(who: Principal, input: ChannelInput): Promise<StoredChannel> {
    if (who.userId === null) throw new ProtocolError('FORBIDDEN', 'channels are created by a logged-in user');
    const { total } = await this.ctx.store.listChannels({}, { limit: 1, offset: 0 });
    if (total >= this.ctx.config.limits.maxChannels) {
      throw new ProtocolError(
        'FORBIDDEN',
        `this server allows at most ${this.ctx.config.limits.maxChannels} channels`,
      );
    }
    const now = this.ctx.now();
    const ch: StoredChannel = {
      id: newChannelId(),
      name: input.name,
      userLimit: input.userLimit ?? 0,
      ownerId: who.userId,
      passwordHash: input.password ? await hashPassword(input.password) : null,
      voice: { ...DEFAULT_VOICE_SETTINGS, ...input.voice },
      createdAt: now,
      updatedAt: now,
    };
    await this.ctx.store.createChannel(ch);
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
      patch.passwordHash = input.password === null ? null : await hashPassword(input.password);
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
