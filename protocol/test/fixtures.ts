import {
  asChannelId,
  asUserId,
  type Channel,
  type ClientMessageOf,
  type ClientMessageType,
  type Member,
  type ServerEvent,
  type ServerMessageType,
  type User,
  type VoiceBinding,
} from '../src/index.js';

export const USER_ID = asUserId('u_AAAAAAAAAAAA');
export const OTHER_USER_ID = asUserId('u_bbbb-bbbb_bb');
export const CHANNEL_ID = asChannelId('c_CCCCCCCCCCCC');

/** One valid example of every client message. The mapped type makes a missing one a compile error. */
export const CLIENT_SAMPLES: { [K in ClientMessageType]: ClientMessageOf<K> } = {
  hello: { t: 'hello', id: 1, versions: [1], token: 'x'.repeat(43), client: 'test/1.0' },
  ping: { t: 'ping', id: 2, ts: 1_700_000_000_123.5 },
  'profile.update': { t: 'profile.update', id: 3, nickname: 'Ærø_bot 2', status: 'away for lunch' },
  'channel.list': { t: 'channel.list', id: 4, cursor: '50', limit: 20 },
  'channel.members': { t: 'channel.members', id: 13, channelId: CHANNEL_ID, cursor: '20' },
  'channel.create': {
    t: 'channel.create',
    id: 5,
    name: 'Lobby',
    userLimit: 10,
    password: 'hunter2',
    voice: { bitrate: 32_000, frameMs: 10 },
  },
  'channel.update': { t: 'channel.update', id: 6, channelId: CHANNEL_ID, name: 'Renamed', password: null },
  'channel.delete': { t: 'channel.delete', id: 7, channelId: CHANNEL_ID },
  'channel.join': { t: 'channel.join', id: 8, channelId: CHANNEL_ID, password: 'hunter2' },
  'channel.leave': { t: 'channel.leave', id: 9 },
  'voice.state': { t: 'voice.state', id: 10, selfMute: true, selfDeaf: false },
  'voice.volume': { t: 'voice.volume', id: 11, userId: OTHER_USER_ID, volume: 150 },
  'voice.serverMute': { t: 'voice.serverMute', id: 0xffff_ffff, userId: OTHER_USER_ID, muted: true },
  'channel.mutes': { t: 'channel.mutes', id: 15, channelId: CHANNEL_ID, cursor: '100', limit: 100 },
  voice: { t: 'voice', p: Uint8Array.from([0x56, 1, 1, 0, 0, 0, 0, 7]) },
};

/** For each type, a change that makes the sample invalid, with the field the error must name. */
export const CLIENT_INVALID: { [K in ClientMessageType]: { patch: Record<string, unknown>; field: string } } =
  {
    hello: { patch: { versions: [] }, field: 'versions' },
    ping: { patch: { ts: 'now' }, field: 'ts' },
    'profile.update': { patch: { nickname: 'x' }, field: 'nickname' },
    'channel.list': { patch: { limit: 101 }, field: 'limit' },
    'channel.members': { patch: { cursor: '' }, field: 'cursor' },
    'channel.create': { patch: { name: '   ' }, field: 'name' },
    'channel.update': { patch: { channelId: 'u_AAAAAAAAAAAA' }, field: 'channelId' },
    'channel.delete': { patch: { channelId: 42 }, field: 'channelId' },
    'channel.join': { patch: { password: '' }, field: 'password' },
    'channel.leave': { patch: { id: 1.5 }, field: 'id' },
    'voice.state': { patch: { selfMute: 'yes' }, field: 'selfMute' },
    'voice.volume': { patch: { volume: 201 }, field: 'volume' },
    'voice.serverMute': { patch: { muted: 1 }, field: 'muted' },
    'channel.mutes': { patch: { channelId: 'c_short' }, field: 'channelId' },
    voice: { patch: { p: new Uint8Array(1033) }, field: 'p' },
  };

export const USER: User = {
  id: USER_ID,
  nickname: 'Alice',
  status: '',
  online: true,
  createdAt: 1_700_000_000_000,
  lastSeenAt: 1_700_000_100_000,
};

export const CHANNEL: Channel = {
  id: CHANNEL_ID,
  name: 'Lobby',
  userLimit: 0,
  ownerId: USER_ID,
  hasPassword: false,
  voice: { bitrate: 64_000, frameMs: 20, complexity: 9 },
  memberCount: 1,
  createdAt: 1_700_000_000_000,
  updatedAt: 1_700_000_000_000,
};

export const MEMBER: Member = {
  userId: USER_ID,
  nickname: 'Alice',
  status: '',
  selfMute: false,
  selfDeaf: false,
  serverMute: false,
  speaking: true,
  transport: 'udp',
  away: false,
};

export const BINDING: VoiceBinding = {
  voiceId: 0xdead_beef,
  key: Uint8Array.from({ length: 32 }, (_, i) => i),
  udpHost: '203.0.113.5',
  udpPort: 50_000,
  sampleRate: 48_000,
  frameMs: 20,
  bitrate: 64_000,
};

/** One example of every server message type. */
export const SERVER_SAMPLES: { [T in ServerMessageType]: ServerEvent<T> } = {
  result: { t: 'result', re: 8, data: { channel: CHANNEL, members: [MEMBER], voice: BINDING } },
  error: { t: 'error', re: 3, code: 'NICKNAME_TAKEN', message: 'a connected user already has this nickname' },
  'channel.created': { t: 'channel.created', channel: CHANNEL },
  'channel.updated': { t: 'channel.updated', channel: { ...CHANNEL, name: 'Renamed' } },
  'channel.deleted': { t: 'channel.deleted', channelId: CHANNEL_ID },
  'member.joined': { t: 'member.joined', channelId: CHANNEL_ID, member: MEMBER },
  'member.updated': { t: 'member.updated', channelId: CHANNEL_ID, member: { ...MEMBER, selfMute: true } },
  'member.left': { t: 'member.left', channelId: CHANNEL_ID, userId: USER_ID, reason: 'timeout' },
  speaking: { t: 'speaking', channelId: CHANNEL_ID, userId: USER_ID, speaking: false },
  stats: {
    t: 'stats',
    stats: {
      rttMs: 23.5,
      lossUp: 0.01,
      jitterMs: 4,
      bufferMs: 40,
      packetsIn: 1000,
      packetsOut: 998,
      concealed: 2,
    },
  },
  voice: { t: 'voice', p: Uint8Array.from([0x56, 1, 1, 0]) },
  'voice.moved': { t: 'voice.moved', channelId: CHANNEL_ID, voice: { ...BINDING, udpPort: 50_002 } },
  'voice.redirect': { t: 'voice.redirect', channelId: CHANNEL_ID, url: 'ws://10.0.0.2:8080/ws' },
  'voice.advance': { t: 'voice.advance', channelId: CHANNEL_ID, seq: 3, shiftUs: -1_250 },
  bye: { t: 'bye', code: 'SESSION_REPLACED', message: 'resumed elsewhere' },
};
