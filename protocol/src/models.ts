import { z } from 'zod';
import type { ChannelId, UserId } from './ids.js';

/** Shared field rules: the server and every client validate with the same schemas. */
export { ChannelName, NICKNAME_RE, Nickname, StatusText } from './names.js';
export const Password = z.string().min(1).max(128);
export const UserIdSchema = z.string().regex(/^u_[A-Za-z0-9_-]{12}$/) as unknown as z.ZodType<UserId>;
export const ChannelIdSchema = z.string().regex(/^c_[A-Za-z0-9_-]{12}$/) as unknown as z.ZodType<ChannelId>;

/** Codec settings a channel imposes (the seeds' per-channel bitrate and codec limits). */
export const FRAME_MS = [10, 20] as const;
export const VoiceSettings = z.object({
  bitrate: z.number().int().min(8_000).max(256_000),
  frameMs: z.union([z.literal(10), z.literal(20)]),
  complexity: z.number().int().min(0).max(10),
});
export type VoiceSettings = z.infer<typeof VoiceSettings>;
export const DEFAULT_VOICE_SETTINGS: VoiceSettings = { bitrate: 64_000, frameMs: 20, complexity: 9 };

export interface User {
  id: UserId;
  nickname: string;
  status: string;
  online: boolean;
  createdAt: number;
  lastSeenAt: number;
}

export interface Channel {
  id: ChannelId;
  name: string;
  /** 0 means no limit. */
  userLimit: number;
  ownerId: UserId;
  hasPassword: boolean;
  voice: VoiceSettings;
  memberCount: number;
  createdAt: number;
  updatedAt: number;
}

export type Transport = 'none' | 'udp' | 'ws';

export interface Member {
  userId: UserId;
  nickname: string;
  status: string;
  selfMute: boolean;
  selfDeaf: boolean;
  serverMute: boolean;
  speaking: boolean;
  transport: Transport;
  /** True while the member's connection is lost but its grace period has not run out. */
  away: boolean;
}

/** A server mute stored for a channel (protocol/README.md 4.15), whether or not the user is in it. */
export interface ServerMute {
  userId: UserId;
  /** The user's current nickname; null when the user no longer exists. */
  nickname: string | null;
  /** When the mute was set, milliseconds since the epoch. */
  mutedAt: number;
}

/** Connection figures a member receives about itself, as Discord's connection panel shows them. */
export interface ConnectionStats {
  rttMs: number | null;
  /** Fraction 0..1 of our packets the server found missing over the last window. */
  lossUp: number;
  /** Arrival jitter of the audio this member receives, in milliseconds. */
  jitterMs: number;
  bufferMs: number;
  packetsIn: number;
  packetsOut: number;
  concealed: number;
}
