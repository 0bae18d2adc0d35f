import { ProtocolError, nicknameKey, type User, type UserId } from '@voice/protocol';
import type { StoredUser } from '../state/types.js';
import { hashToken, newToken, newUserId } from '../state/passwords.js';
import type { AddressBudget } from './address-budget.js';
import type { AppContext } from './context.js';

const DAY_MS = 86_400_000;

/** Log-in by nickname alone (the seeds' "pseudo uniquement"), tokens, and profiles. */
export class UserService {
  constructor(
    private readonly ctx: AppContext,
    private readonly budget: AddressBudget,
  ) {}

  /**
   * Creates a user holding `nickname` (unique among connected users) and its session token, paid
   * from the new-user budget of `address` (the client's).
   */
  async login(nickname: string, address: string): Promise<{ token: string; user: StoredUser }> {
    const now = this.ctx.now();
    const id = newUserId();
    if (!(await this.ctx.directory.claimNickname(nickname, id))) throw new ProtocolError('NICKNAME_TAKEN');
    // Charged only for a user that will exist: a taken nickname costs the log-in rate, not this.
    try {
      this.budget.spend('new_user', address);
    } catch (err) {
      await this.ctx.directory.releaseNickname(nickname, id);
      throw err;
    }
    const user: StoredUser = { id, nickname, status: '', createdAt: now, lastSeenAt: now };
    const token = newToken();
    try {
      await this.ctx.store.createUser(user, hashToken(token));
    } catch (err) {
      await this.ctx.directory.releaseNickname(nickname, id);
      throw err;
    }
    this.ctx.metrics.logins.inc();
    return { token, user };
  }

  /** The user a token belongs to; INVALID_TOKEN when unknown or unused for longer than the TTL. */
  async authenticate(token: string): Promise<StoredUser> {
    const user = await this.ctx.store.getUserByTokenHash(hashToken(token));
    if (!user) throw new ProtocolError('INVALID_TOKEN');
    if (this.ctx.now() - user.lastSeenAt > this.ctx.config.tokenTtlDays * DAY_MS) {
      await this.ctx.store.deleteToken(hashToken(token));
      throw new ProtocolError('INVALID_TOKEN', 'the session token has expired; log in again');
    }
    return user;
  }

  async logout(token: string): Promise<void> {
    await this.ctx.store.deleteToken(hashToken(token));
  }

  async get(id: UserId): Promise<StoredUser> {
    const user = await this.ctx.store.getUser(id);
    if (!user) throw new ProtocolError('NOT_FOUND', 'no such user');
    return user;
  }

  /**
   * Changes nickname and/or status. A new nickname must be free among connected users; the old one
   * is released only once the new one is held.
   */
  async updateProfile(
    id: UserId,
    patch: { nickname?: string | undefined; status?: string | undefined },
  ): Promise<StoredUser> {
    const current = await this.get(id);
    const renaming = patch.nickname !== undefined && patch.nickname !== current.nickname;
    if (renaming && !(await this.ctx.directory.claimNickname(patch.nickname!, id))) {
      throw new ProtocolError('NICKNAME_TAKEN');
    }
    const upd: { nickname?: string; status?: string } = {};
    if (patch.nickname !== undefined) upd.nickname = patch.nickname;
    if (patch.status !== undefined) upd.status = patch.status;
    const updated = await this.ctx.store.updateUser(id, upd);
    if (!updated) throw new ProtocolError('NOT_FOUND', 'no such user');
    if (renaming && nicknameKey(current.nickname) !== nicknameKey(patch.nickname!)) {
      await this.ctx.directory.releaseNickname(current.nickname, id);
    }
    await this.ctx.bus.publish({ type: 'user.updated', user: updated });
    return updated;
  }

  async view(user: StoredUser): Promise<User> {
    return { ...user, online: await this.ctx.directory.isOnline(user.id) };
  }
}
