import {
  countFitting,
  DEFAULT_PAGE_ITEMS,
  negotiateVersion,
  ProtocolError,
  type ServerMessage,
  type ClientMessage,
  type ClientMessageOf,
  type ResultMap,
} from '@voice/protocol';
import type { ChannelService } from '../app/channels.js';
import type { AppContext, Connection } from '../app/context.js';
import type { Session, SessionManager } from '../app/sessions.js';
import type { UserService } from '../app/users.js';
import { isAdminToken } from '../http/routes.js';

export interface HandlerDeps {
  ctx: AppContext;
  users: UserService;
  channels: ChannelService;
  sessions: SessionManager;
}

/** Largest offset a cursor may hold: well past any list the server keeps (channels, members). */
const MAX_OFFSET = 9_999_999;
/** A cursor as long as any we issue, for measuring a page's envelope. */
const WIDEST_CURSOR = String(MAX_OFFSET);
/** The widest request id, for the same reason. */
const WIDEST_RE = 0xffff_ffff;

/** Cursors are offsets written in decimal; clients treat them as opaque (protocol/README.md 4.4). */
function readCursor(cursor: string | undefined): number {
  if (cursor === undefined) return 0;
  if (!/^[0-9]{1,7}$/.test(cursor))
    throw new ProtocolError('INVALID_FIELD', 'cursor: not one this server issued');
  return Number(cursor);
}

/**
 * The longest prefix of `window` (the items from `offset` on, at most the asked limit) that fits
 * one frame in `envelope`, and the cursor after it (null when `total` is reached).
 */
function fitPage<T>(
  window: readonly T[],
  offset: number,
  total: number,
  envelope: (items: T[], next: string) => ServerMessage,
): { items: T[]; next: string | null } {
  const n = countFitting(window, (items) => envelope(items, WIDEST_CURSOR));
  // Field limits keep any one channel or member far below a frame; if that ever broke, refuse
  // rather than hand out a cursor that never advances.
  if (n === 0 && window.length > 0) throw new Error('one list item is larger than a signaling frame');
  const end = offset + n;
  return { items: window.slice(0, n), next: end < total ? String(end) : null };
}

type Request = Exclude<ClientMessage, { t: 'voice' } | { t: 'hello' }>;
type Handler<K extends Request['t']> = (
  s: Session,
  m: ClientMessageOf<K>,
) => Promise<ResultMap[K]> | ResultMap[K];

/** One handler per request type; the compiler checks every type is handled with the right result. */
export function createHandlers(d: HandlerDeps): { [K in Request['t']]: Handler<K> } {
  const { users, channels, sessions } = d;
  return {
    ping: (_s, m) => ({ ts: m.ts, serverTime: Date.now() }),
    'profile.update': async (s, m) => {
      const user = await users.updateProfile(s.userId, { nickname: m.nickname, status: m.status });
      return { user: await users.view(user) };
    },
    'channel.list': async (_s, m) => {
      const offset = readCursor(m.cursor);
      const limit = m.limit ?? DEFAULT_PAGE_ITEMS;
      const page = await channels.list({}, { offset, limit });
      const { items, next } = fitPage(page.items, offset, page.total, (chs, cursor) => ({
        t: 'result',
        re: WIDEST_RE,
        data: { channels: chs, next: cursor },
      }));
      return { channels: items, next };
    },
    'channel.members': async (_s, m) => {
      await channels.get(m.channelId);
      const offset = readCursor(m.cursor);
      const all = await sessions.channelMembers(m.channelId);
      const window = all.slice(offset, offset + (m.limit ?? DEFAULT_PAGE_ITEMS));
      const { items, next } = fitPage(window, offset, all.length, (members, cursor) => ({
        t: 'result',
        re: WIDEST_RE,
        data: { members, next: cursor },
      }));
      return { members: items, next };
    },
    'channel.create': async (s, m) => ({
      channel: await channels.view(
        await channels.create(
          s.principal,
          { name: m.name, userLimit: m.userLimit, password: m.password, voice: m.voice },
          // A request arrives on the session's connection; no connection means no address to charge.
          s.conn?.address ?? 'unknown',
        ),
      ),
    }),
    'channel.update': async (s, m) => ({
      channel: await channels.view(
        await channels.update(s.principal, m.channelId, {
          name: m.name,
          userLimit: m.userLimit,
          password: m.password,
          voice: m.voice,
        }),
      ),
    }),
    'channel.delete': async (s, m) => {
      await channels.delete(s.principal, m.channelId);
      return {};
    },
    'channel.join': async (s, m) => {
      const joined = await sessions.join(s, m.channelId, m.password);
      // The first page of members rides along; a crowded channel continues with channel.members.
      const window = joined.members.slice(0, DEFAULT_PAGE_ITEMS);
      const { items, next } = fitPage(window, 0, joined.members.length, (members, cursor) => ({
        t: 'result',
        re: WIDEST_RE,
        data: { ...joined, members, membersNext: cursor },
      }));
      return { ...joined, members: items, membersNext: next };
    },
    'channel.leave': async (s) => {
      if (!s.channelId) throw new ProtocolError('NOT_IN_CHANNEL');
      await sessions.leave(s, 'leave');
      return {};
    },
    'voice.state': async (s, m) => ({
      member: await sessions.setVoiceState(s, { selfMute: m.selfMute, selfDeaf: m.selfDeaf }),
    }),
    'voice.volume': async (s, m) => {
      await sessions.setVolume(s, m.userId, m.volume);
      return {};
    },
    'voice.serverMute': async (s, m) => {
      // Without channelId: your own channel, so you must be in one.
      const channelId = m.channelId ?? s.channelId;
      if (!channelId) throw new ProtocolError('NOT_IN_CHANNEL');
      return { member: await sessions.serverMute(s.principal, channelId, m.userId, m.muted) };
    },
    'channel.mutes': async (s, m) => {
      const offset = readCursor(m.cursor);
      const page = await channels.serverMutes(s.principal, m.channelId, {
        offset,
        limit: m.limit ?? DEFAULT_PAGE_ITEMS,
      });
      const { items, next } = fitPage(page.items, offset, page.total, (mutes, cursor) => ({
        t: 'result',
        re: WIDEST_RE,
        data: { mutes, next: cursor },
      }));
      return { mutes: items, next };
    },
  };
}

/** `hello`: version negotiation and authentication. */
export async function handleHello(
  d: HandlerDeps,
  conn: Connection,
  m: ClientMessageOf<'hello'>,
): Promise<ResultMap['hello']> {
  const version = negotiateVersion(m.versions);
  if (version === null) {
    throw new ProtocolError(
      'UNSUPPORTED_VERSION',
      `server speaks versions ${[1].join(', ')}; client offered ${m.versions.join(', ')}`,
    );
  }
  if (m.adminToken !== undefined && !isAdminToken(d.ctx, m.adminToken)) {
    throw new ProtocolError('INVALID_TOKEN', 'wrong admin token');
  }
  return d.sessions.attach(conn, m.token, m.adminToken !== undefined, version, m.streams, m.red === true);
}
