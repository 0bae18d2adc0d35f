import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import {
  ChannelIdSchema,
  PageQuery,
  ProtocolError,
  RateLimitedError,
  RestBodies,
  UserIdSchema,
} from '@voice/protocol';
import type { ChannelService } from '../app/channels.js';
import type { AppContext, Principal } from '../app/context.js';
import type { SessionManager } from '../app/sessions.js';
import type { UserService } from '../app/users.js';
import type { KeyedRateLimiter } from '../ratelimit.js';
import type { StoredUser, UserFilter } from '../state/types.js';
import { parseOr400, parseParam } from '../validate.js';
import type { RestRequest, RestRouter } from './server.js';

export interface RouteDeps {
  ctx: AppContext;
  users: UserService;
  channels: ChannelService;
  sessions: SessionManager;
  loginLimiter: KeyedRateLimiter;
  ready: () => boolean;
  /** A draining node (SIGTERM in a cluster) is not ready and says why. */
  draining?: () => boolean;
}

export function isAdminToken(ctx: AppContext, candidate: string | undefined): boolean {
  const admin = ctx.config.adminToken;
  if (!admin || !candidate) return false;
  const a = Buffer.from(admin);
  const b = Buffer.from(candidate);
  return a.length === b.length && timingSafeEqual(a, b);
}

function bearer(req: RestRequest): string | undefined {
  const m = /^Bearer\s+(\S+)$/i.exec(req.authorization);
  return m?.[1];
}

const AdminUsersQuery = PageQuery.extend({ online: z.enum(['true', 'false']).optional() });
const AdminChannelsQuery = PageQuery.extend({ owner: UserIdSchema.optional() });

/** Every REST route. Handlers validate input, call a service, and shape the output. */
export function registerRoutes(router: RestRouter, d: RouteDeps): void {
  const { ctx, users, channels, sessions } = d;

  const principal = async (
    req: RestRequest,
  ): Promise<Principal & { user: StoredUser | null; token?: string }> => {
    const token = bearer(req);
    if (!token) throw new ProtocolError('NOT_AUTHENTICATED', 'send Authorization: Bearer <token>');
    if (isAdminToken(ctx, token)) return { userId: null, admin: true, user: null };
    const user = await users.authenticate(token);
    return { userId: user.id, admin: false, user, token };
  };
  const userOnly = async (req: RestRequest): Promise<{ user: StoredUser; token: string }> => {
    const p = await principal(req);
    if (!p.user || !p.token) throw new ProtocolError('FORBIDDEN', 'this route needs a user token');
    return { user: p.user, token: p.token };
  };
  const adminOnly = async (req: RestRequest): Promise<void> => {
    const p = await principal(req);
    if (!p.admin) throw new ProtocolError('FORBIDDEN', 'this route needs the admin token');
  };
  const query = (req: RestRequest): Record<string, string> => Object.fromEntries(req.query.entries());
  const channelId = (req: RestRequest) => parseParam(ChannelIdSchema, req.params.id, 'id');

  router
    .add('GET', '/healthz', () => ({ status: 200, body: { ok: true } }))
    .add('GET', '/readyz', () =>
      d.ready()
        ? { status: 200, body: { ready: true } }
        : { status: 503, body: { ready: false, ...(d.draining?.() && { draining: true }) } },
    )
    .add('GET', '/metrics', async () => ({
      status: 200,
      text: await ctx.metrics.registry.metrics(),
      contentType: ctx.metrics.registry.contentType,
    }))
    .add('POST', '/api/v1/login', async (req) => {
      if (!d.loginLimiter.take(req.address)) {
        ctx.metrics.rateLimited.inc({ limit: 'logins' });
        throw new RateLimitedError(
          d.loginLimiter.retryAfterMs(req.address),
          'too many log-ins from this address',
        );
      }
      const { nickname } = parseOr400(RestBodies.login, req.body, 'login');
      const { token, user } = await users.login(nickname, req.address);
      await sessions.registerLogin(token, user);
      return { status: 201, body: { token, user: await users.view(user) } };
    })
    .add('POST', '/api/v1/logout', async (req) => {
      const { user, token } = await userOnly(req);
      await sessions.logout(user.id);
      await users.logout(token);
      return { status: 204 };
    })
    .add('GET', '/api/v1/me', async (req) => {
      const { user } = await userOnly(req);
      return { status: 200, body: { user: await users.view(user) } };
    })
    .add('PATCH', '/api/v1/me', async (req) => {
      const { user } = await userOnly(req);
      const patch = parseOr400(RestBodies.updateProfile, req.body, 'profile');
      const updated = await users.updateProfile(user.id, patch);
      return { status: 200, body: { user: await users.view(updated) } };
    })
    .add('GET', '/api/v1/users/:id', async (req) => {
      await principal(req);
      const id = parseParam(UserIdSchema, req.params.id, 'id');
      return { status: 200, body: { user: await users.view(await users.get(id)) } };
    })
    .add('GET', '/api/v1/channels', async (req) => {
      await principal(req);
      const q = parseOr400(PageQuery, query(req), 'query');
      const page = await channels.list(q.q ? { q: q.q } : {}, q);
      return { status: 200, body: page };
    })
    .add('POST', '/api/v1/channels', async (req) => {
      const p = await principal(req);
      const body = parseOr400(RestBodies.createChannel, req.body, 'channel');
      const ch = await channels.create(p, body, req.address);
      return { status: 201, body: { channel: await channels.view(ch) } };
    })
    .add('GET', '/api/v1/channels/:id', async (req) => {
      await principal(req);
      return { status: 200, body: { channel: await channels.view(await channels.get(channelId(req))) } };
    })
    .add('PATCH', '/api/v1/channels/:id', async (req) => {
      const p = await principal(req);
      const id = channelId(req);
      const body = parseOr400(RestBodies.updateChannel, req.body, 'channel');
      return { status: 200, body: { channel: await channels.view(await channels.update(p, id, body)) } };
    })
    .add('DELETE', '/api/v1/channels/:id', async (req) => {
      const p = await principal(req);
      await channels.delete(p, channelId(req));
      return { status: 204 };
    })
    .add('GET', '/api/v1/channels/:id/members', async (req) => {
      await principal(req);
      const id = channelId(req);
      await channels.get(id);
      return { status: 200, body: { members: await sessions.channelMembers(id) } };
    })
    .add('GET', '/api/v1/channels/:id/mutes', async (req) => {
      const p = await principal(req);
      const q = parseOr400(PageQuery, query(req), 'query');
      return { status: 200, body: await channels.serverMutes(p, channelId(req), q) };
    })
    .add('DELETE', '/api/v1/channels/:id/mutes/:userId', async (req) => {
      const p = await principal(req);
      const id = channelId(req);
      const target = parseParam(UserIdSchema, req.params.userId, 'userId');
      await sessions.serverMute(p, id, target, false);
      return { status: 204 };
    })
    .add('GET', '/api/v1/admin/users', async (req) => {
      await adminOnly(req);
      const q = parseOr400(AdminUsersQuery, query(req), 'query');
      // Presence lives in the directory, users in the store: filter in the store's query, before
      // paging, so that pages are full and `total` counts exactly the matches.
      const online = q.online === undefined ? undefined : await ctx.directory.onlineUsers();
      const filter: UserFilter = {
        ...(q.q ? { q: q.q } : {}),
        ...(q.online === 'true' ? { ids: online } : {}),
        ...(q.online === 'false' ? { excludeIds: online } : {}),
      };
      const page = await ctx.store.listUsers(filter, q);
      const items = await Promise.all(page.items.map((u) => users.view(u)));
      const total = page.total;
      return { status: 200, body: { items, total, limit: q.limit, offset: q.offset } };
    })
    .add('GET', '/api/v1/admin/channels', async (req) => {
      await adminOnly(req);
      const q = parseOr400(AdminChannelsQuery, query(req), 'query');
      const page = await channels.list(
        { ...(q.q ? { q: q.q } : {}), ...(q.owner ? { ownerId: q.owner } : {}) },
        q,
      );
      return { status: 200, body: page };
    });
}
