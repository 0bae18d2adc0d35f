import {
  negotiateVersion,
  ProtocolError,
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
    'channel.list': async () => ({ channels: await channels.listAll() }),
    'channel.create': async (s, m) => ({
      channel: await channels.view(
        await channels.create(s.principal, {
          name: m.name,
          userLimit: m.userLimit,
          password: m.password,
          voice: m.voice,
        }),
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
    'channel.join': (s, m) => sessions.join(s, m.channelId, m.password),
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
    'voice.serverMute': async (s, m) => ({ member: await sessions.serverMute(s, m.userId, m.muted) }),
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
  return d.sessions.attach(conn, m.token, m.adminToken !== undefined, version);
}
