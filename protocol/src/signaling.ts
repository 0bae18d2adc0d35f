import { z } from 'zod';
import {
  ChannelIdSchema,
  ChannelName,
  Nickname,
  Password,
  StatusText,
  UserIdSchema,
  VoiceSettings,
} from './models.js';
import type { Channel, ConnectionStats, Member, ServerMute, User } from './models.js';
import type { ChannelId, UserId } from './ids.js';
import type { ErrorCode } from './errors.js';
import { MAX_PACKET_BYTES } from './voice-packet.js';

/** Longest cursor a client may send back (the server's are shorter). */
export const MAX_CURSOR_CHARS = 64;
/** Most items a client may ask for in one page of a signaling list. */
export const MAX_PAGE_ITEMS = 100;
/** Items per page when the request does not say. */
export const DEFAULT_PAGE_ITEMS = 50;
/** The largest `streams` a client may ask for in `hello` (README 8.8). */
export const MAX_STREAMS = 8;

/**
 * Client-to-server messages. Every message is a msgpack map with a string `t` (type).
 * Requests carry `id`, a client-chosen integer echoed as `re` in the matching `result` or `error`.
 */
const reqId = z.number().int().min(0).max(0xffff_ffff);

/** An opaque position in a list, returned as `next`: send it back unchanged for the following page. */
export const Cursor = z.string().min(1).max(MAX_CURSOR_CHARS);
/** Items per page a client may ask for; the server may send fewer (a page always fits one frame). */
const PageLimit = z.number().int().min(1).max(MAX_PAGE_ITEMS);

export const ClientMessages = {
  hello: z.object({
    t: z.literal('hello'),
    id: reqId,
    versions: z.array(z.number().int().min(1)).min(1).max(16),
    token: z.string().min(1).max(128),
    client: z.string().max(64).optional(),
    /** The server's admin token: grants moderation (edit, delete, server-mute) on this connection. */
    adminToken: z.string().max(256).optional(),
    /**
     * How many speakers' streams the client can receive at once and mix itself (STREAM packets,
     * README 8.8); absent or 1: mixes only.
     */
    streams: z.number().int().min(1).max(MAX_STREAMS).optional(),
    /** The client reads RED packets (README 9.1): the server may send them, and accepts them. */
    red: z.boolean().optional(),
  }),
  ping: z.object({ t: z.literal('ping'), id: reqId, ts: z.number() }),
  'profile.update': z.object({
    t: z.literal('profile.update'),
    id: reqId,
    nickname: Nickname.optional(),
    status: StatusText.optional(),
  }),
  /** One page of channels (default 50): follow `next` until it is null for the whole list. */
  'channel.list': z.object({
    t: z.literal('channel.list'),
    id: reqId,
    cursor: Cursor.optional(),
    limit: PageLimit.optional(),
  }),
  /** One page of a channel's members (the rest of the list `channel.join` could not fit). */
  'channel.members': z.object({
    t: z.literal('channel.members'),
    id: reqId,
    channelId: ChannelIdSchema,
    cursor: Cursor.optional(),
    limit: PageLimit.optional(),
  }),
  'channel.create': z.object({
    t: z.literal('channel.create'),
    id: reqId,
    name: ChannelName,
    userLimit: z.number().int().min(0).max(1000).optional(),
    password: Password.optional(),
    voice: VoiceSettings.partial().optional(),
  }),
  'channel.update': z.object({
    t: z.literal('channel.update'),
    id: reqId,
    channelId: ChannelIdSchema,
    name: ChannelName.optional(),
    userLimit: z.number().int().min(0).max(1000).optional(),
    /** A string sets the password, null removes it. */
    password: Password.nullable().optional(),
    voice: VoiceSettings.partial().optional(),
  }),
  'channel.delete': z.object({ t: z.literal('channel.delete'), id: reqId, channelId: ChannelIdSchema }),
  'channel.join': z.object({
    t: z.literal('channel.join'),
    id: reqId,
    channelId: ChannelIdSchema,
    password: Password.optional(),
  }),
  'channel.leave': z.object({ t: z.literal('channel.leave'), id: reqId }),
  /** Own voice state: self-mute and deafen are shown to the other members. */
  'voice.state': z.object({
    t: z.literal('voice.state'),
    id: reqId,
    selfMute: z.boolean().optional(),
    selfDeaf: z.boolean().optional(),
  }),
  /** How loud this listener hears one speaker, 0 to 200 (percent). */
  'voice.volume': z.object({
    t: z.literal('voice.volume'),
    id: reqId,
    userId: UserIdSchema,
    volume: z.number().int().min(0).max(200),
  }),
  /**
   * Channel owner or admin: the mixer ignores this speaker. `channelId` (default: your channel)
   * names the channel; there, the stored mute of a user who is not in it may be lifted.
   */
  'voice.serverMute': z.object({
    t: z.literal('voice.serverMute'),
    id: reqId,
    userId: UserIdSchema,
    muted: z.boolean(),
    channelId: ChannelIdSchema.optional(),
  }),
  /** Channel owner or admin: one page of the server mutes stored for a channel. */
  'channel.mutes': z.object({
    t: z.literal('channel.mutes'),
    id: reqId,
    channelId: ChannelIdSchema,
    cursor: Cursor.optional(),
    limit: PageLimit.optional(),
  }),
  /**
   * Fallback transport: a voice packet (same bytes as over UDP) carried in a WebSocket frame.
   * Fire-and-forget: no `id`, no reply.
   */
  voice: z.object({
    t: z.literal('voice'),
    p: z
      .instanceof(Uint8Array)
      .refine((p) => p.byteLength <= MAX_PACKET_BYTES, `at most ${MAX_PACKET_BYTES} bytes`),
  }),
} as const;

export type ClientMessageType = keyof typeof ClientMessages;
export type ClientMessage = {
  [K in ClientMessageType]: z.infer<(typeof ClientMessages)[K]>;
}[ClientMessageType];
export type ClientMessageOf<K extends ClientMessageType> = z.infer<(typeof ClientMessages)[K]>;
export const CLIENT_MESSAGE_TYPES = Object.keys(ClientMessages) as ClientMessageType[];

/** What each request's `result.data` holds. */
export interface ResultMap {
  hello: Welcome;
  ping: { ts: number; serverTime: number };
  'profile.update': { user: User };
  'channel.list': { channels: Channel[]; next: string | null };
  'channel.members': { members: Member[]; next: string | null };
  'channel.create': { channel: Channel };
  'channel.update': { channel: Channel };
  'channel.delete': Record<string, never>;
  /** `members` is the first page of the member list; `membersNext` continues it with `channel.members`. */
  'channel.join': { channel: Channel; members: Member[]; membersNext: string | null; voice: VoiceBinding };
  'channel.leave': Record<string, never>;
  'voice.state': { member: Member };
  'voice.volume': Record<string, never>;
  /** `member` is null when the user is not in the channel (a stored mute was lifted). */
  'voice.serverMute': { member: Member | null };
  'channel.mutes': { mutes: ServerMute[]; next: string | null };
}

/** Where and how to send voice once joined. */
export interface VoiceBinding {
  /** The id that tags this session's voice packets. */
  voiceId: number;
  /** 32-byte AES-256-GCM key for this session's voice packets, both directions. */
  key: Uint8Array;
  udpHost: string;
  udpPort: number;
  sampleRate: 48_000;
  frameMs: 10 | 20;
  bitrate: number;
}

export interface Welcome {
  version: number;
  server: string;
  user: User;
  /** True when the token's session was still within its grace period and was restored. */
  resumed: boolean;
  /** The channel restored with the session, if any (then `voice` is set too). */
  channelId: ChannelId | null;
  voice: VoiceBinding | null;
  /** Send a ping at least this often or the server considers the connection dead. */
  heartbeatMs: number;
  /** How long the session survives a lost connection. */
  graceMs: number;
  /**
   * How many speakers the server forwards to this connection as STREAM packets at most (README 8.8):
   * hello's `streams` capped by the server; 1 means mixes only (older servers omit it: read as 1).
   */
  streams: number;
  /**
   * RED packets (README 9.1) granted: the server reads them from this connection and may send them
   * to it. True only when hello asked `red: true` (older servers omit it: read as false).
   */
  red: boolean;
}

/** Largest |shiftUs| of a `voice.advance`: under one frame of the longest frame size (20 ms). */
export const MAX_ADVANCE_US = 19_999;

/**
 * Timing advance (server to client, no reply): send every later AUDIO packet `shiftUs`
 * microseconds later (negative: earlier) than you would have, on your own clock, so that your
 * packets reach the mixer just before its tick. Relative to your current schedule; `seq` counts
 * the advances of one binding from 1 (apply each `seq` once). Timestamps do not change: they count
 * samples, the advance moves send time. See protocol/README.md section 8.7.
 */
export const VoiceAdvance = z.object({
  t: z.literal('voice.advance'),
  channelId: ChannelIdSchema,
  seq: z.number().int().min(1).max(0xffff_ffff),
  shiftUs: z.number().int().min(-MAX_ADVANCE_US).max(MAX_ADVANCE_US),
});
export type VoiceAdvance = z.infer<typeof VoiceAdvance>;

export type LeaveReason = 'leave' | 'disconnect' | 'timeout' | 'deleted' | 'moved';

/** Server-to-client messages. */
export type ServerMessage =
  | { [K in keyof ResultMap]: { t: 'result'; re: number; data: ResultMap[K] } }[keyof ResultMap]
  | { t: 'error'; re?: number; code: ErrorCode; message: string; retryAfterMs?: number }
  | { t: 'channel.created'; channel: Channel }
  | { t: 'channel.updated'; channel: Channel }
  | { t: 'channel.deleted'; channelId: ChannelId }
  | { t: 'member.joined'; channelId: ChannelId; member: Member }
  | { t: 'member.updated'; channelId: ChannelId; member: Member }
  | { t: 'member.left'; channelId: ChannelId; userId: UserId; reason: LeaveReason }
  | { t: 'speaking'; channelId: ChannelId; userId: UserId; speaking: boolean }
  | { t: 'stats'; stats: ConnectionStats }
  | { t: 'voice.moved'; channelId: ChannelId; voice: VoiceBinding }
  | { t: 'voice.redirect'; channelId: ChannelId; url: string }
  | VoiceAdvance
  | { t: 'voice'; p: Uint8Array }
  | { t: 'bye'; code: ErrorCode; message: string };

export type ServerMessageType = ServerMessage['t'];
export type ServerEvent<T extends ServerMessageType> = Extract<ServerMessage, { t: T }>;
