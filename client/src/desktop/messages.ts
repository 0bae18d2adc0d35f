import { z } from 'zod';

/**
 * The one message set between the desktop UI and its extension (the Node process that owns audio
 * and the network). The UI sends commands, each with an `id`, and gets one `reply` per command; the
 * extension pushes events whenever its state changes. Both directions are validated with zod, as
 * protocol/ does for the wire: a malformed message is answered with BAD_MESSAGE, never a crash.
 * Carried as JSON, over Neutralino's extension events in the app, or over the development WebSocket.
 * This file has no Node imports: the UI bundles it too.
 */

export const DESKTOP_PROTOCOL = 1;

const id = z.number().int().min(0).max(0x7fff_ffff);
const channelId = z.string().min(1).max(64);
const userId = z.string().min(1).max(64);
const channelFields = {
  name: z.string().trim().min(1).max(64),
  userLimit: z.number().int().min(0).max(1000).optional(),
  bitrate: z.number().int().min(6000).max(510_000).optional(),
  frameMs: z.union([z.literal(10), z.literal(20)]).optional(),
};

export const TransmitModeSchema = z.enum(['vad', 'ptt', 'always']);

/** Audio settings the UI persists and sends after each start; every field optional (a patch). */
export const AudioSettingsSchema = z.object({
  inputDeviceId: z.number().int().min(-1).max(10_000).optional(),
  outputDeviceId: z.number().int().min(-1).max(10_000).optional(),
  inputGainDb: z.number().min(-30).max(30).optional(),
  vadThresholdDbfs: z.number().min(-100).max(0).optional(),
  transmit: TransmitModeSchema.optional(),
  outputVolume: z.number().int().min(0).max(200).optional(),
});
export type AudioSettings = z.infer<typeof AudioSettingsSchema>;

export const Commands = {
  hello: z.object({ cmd: z.literal('hello'), id, protocol: z.number().int() }),
  connect: z.object({
    cmd: z.literal('connect'),
    id,
    server: z.string().trim().min(1).max(256),
    nickname: z.string().trim().min(1).max(32),
    /** The server's admin token (protocol README 4.1): moderation in every channel. */
    adminToken: z.string().min(1).max(256).optional(),
  }),
  disconnect: z.object({ cmd: z.literal('disconnect'), id }),
  'channel.create': z.object({
    cmd: z.literal('channel.create'),
    id,
    ...channelFields,
    password: z.string().max(128).optional(),
  }),
  'channel.update': z.object({
    cmd: z.literal('channel.update'),
    id,
    channelId,
    ...channelFields,
    name: channelFields.name.optional(),
    /** A string sets the password, null removes it, absent keeps it. */
    password: z.string().max(128).nullable().optional(),
  }),
  'channel.delete': z.object({ cmd: z.literal('channel.delete'), id, channelId }),
  join: z.object({ cmd: z.literal('join'), id, channelId, password: z.string().max(128).optional() }),
  leave: z.object({ cmd: z.literal('leave'), id }),
  mute: z.object({ cmd: z.literal('mute'), id, on: z.boolean() }),
  deafen: z.object({ cmd: z.literal('deafen'), id, on: z.boolean() }),
  volume: z.object({ cmd: z.literal('volume'), id, userId, percent: z.number().int().min(0).max(200) }),
  serverMute: z.object({ cmd: z.literal('serverMute'), id, userId, on: z.boolean() }),
  settings: z.object({ cmd: z.literal('settings'), id, settings: AudioSettingsSchema }),
  ptt: z.object({ cmd: z.literal('ptt'), id, down: z.boolean() }),
  loopback: z.object({ cmd: z.literal('loopback'), id, on: z.boolean() }),
  devices: z.object({ cmd: z.literal('devices'), id }),
} as const;

export const CommandSchema = z.discriminatedUnion(
  'cmd',
  Object.values(Commands) as [
    (typeof Commands)[keyof typeof Commands],
    ...(typeof Commands)[keyof typeof Commands][],
  ],
);
export type Command = z.infer<typeof CommandSchema>;
export type CommandName = Command['cmd'];
export type CommandOf<K extends CommandName> = Extract<Command, { cmd: K }>;

export const ConnectionStateSchema = z.enum(['disconnected', 'connecting', 'connected', 'reconnecting']);
export type ConnectionState = z.infer<typeof ConnectionStateSchema>;

const ErrorInfo = z.object({
  code: z.string().max(64),
  message: z.string().max(500),
  /** RATE_LIMITED: when the same request may succeed, ms from now. */
  retryAfterMs: z.number().min(0).optional(),
});
export type ErrorInfo = z.infer<typeof ErrorInfo>;

const ChannelView = z.object({
  id: channelId,
  name: z.string(),
  userLimit: z.number(),
  memberCount: z.number(),
  hasPassword: z.boolean(),
  ownerId: userId,
  bitrate: z.number(),
  frameMs: z.number(),
});
export type ChannelView = z.infer<typeof ChannelView>;

const MemberView = z.object({
  userId,
  nickname: z.string(),
  speaking: z.boolean(),
  selfMute: z.boolean(),
  selfDeaf: z.boolean(),
  serverMute: z.boolean(),
  away: z.boolean(),
  volume: z.number(),
});
export type MemberView = z.infer<typeof MemberView>;

const DeviceView = z.object({ id: z.number(), name: z.string(), input: z.boolean(), output: z.boolean() });
export type DeviceView = z.infer<typeof DeviceView>;

export const EventSchema = z.discriminatedUnion('ev', [
  z.object({
    ev: z.literal('reply'),
    re: id,
    ok: z.boolean(),
    error: ErrorInfo.optional(),
    data: z.unknown().optional(),
  }),
  z.object({
    ev: z.literal('state'),
    connection: ConnectionStateSchema,
    server: z.string().nullable(),
    userId: userId.nullable(),
    nickname: z.string().nullable(),
    isAdmin: z.boolean(),
    channelId: channelId.nullable(),
    muted: z.boolean(),
    deaf: z.boolean(),
    /** Why the last connection attempt or the connection failed. */
    error: ErrorInfo.nullable(),
    /** Next reconnection attempt, ms from now (while reconnecting). */
    retryInMs: z.number().nullable(),
  }),
  z.object({ ev: z.literal('channels'), channels: z.array(ChannelView) }),
  z.object({ ev: z.literal('members'), channelId: channelId.nullable(), members: z.array(MemberView) }),
  z.object({ ev: z.literal('speaking'), userId, speaking: z.boolean() }),
  z.object({ ev: z.literal('level'), rmsDbfs: z.number(), transmitting: z.boolean() }),
  z.object({
    ev: z.literal('stats'),
    pingMs: z.number().nullable(),
    lossPercent: z.number().nullable(),
    jitterMs: z.number().nullable(),
    transport: z.string(),
  }),
  z.object({
    ev: z.literal('devices'),
    devices: z.array(DeviceView),
    inputId: z.number().nullable(),
    outputId: z.number().nullable(),
    backend: z.string(),
  }),
  z.object({ ev: z.literal('audioError'), which: z.enum(['input', 'output', 'backend']), error: ErrorInfo }),
]);
export type DesktopEvent = z.infer<typeof EventSchema>;
export type DesktopEventOf<K extends DesktopEvent['ev']> = Extract<DesktopEvent, { ev: K }>;

/** Neutralino event names (app -> extension, extension -> app). */
export const EXTENSION_ID = 'org.voice.engine';
export const COMMAND_EVENT = 'voice:cmd';
export const EVENT_EVENT = 'voice:evt';

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

export function parseCommand(input: unknown): ParseResult<Command> {
  const r = CommandSchema.safeParse(input);
  return r.success
    ? { ok: true, value: r.data }
    : { ok: false, error: r.error.issues[0]?.message ?? 'invalid' };
}

export function parseEvent(input: unknown): ParseResult<DesktopEvent> {
  const r = EventSchema.safeParse(input);
  return r.success
    ? { ok: true, value: r.data }
    : { ok: false, error: r.error.issues[0]?.message ?? 'invalid' };
}
