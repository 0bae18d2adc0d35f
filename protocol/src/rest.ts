import { z } from 'zod';
import { ChannelName, Nickname, Password, StatusText, VoiceSettings } from './models.js';

/** REST request bodies (JSON). Unknown keys are rejected so typos fail loudly. */
export const RestBodies = {
  login: z.object({ nickname: Nickname }).strict(),
  updateProfile: z.object({ nickname: Nickname.optional(), status: StatusText.optional() }).strict(),
  createChannel: z
    .object({
      name: ChannelName,
      userLimit: z.number().int().min(0).max(1000).optional(),
      password: Password.optional(),
      voice: VoiceSettings.partial().optional(),
    })
    .strict(),
  updateChannel: z
    .object({
      name: ChannelName.optional(),
      userLimit: z.number().int().min(0).max(1000).optional(),
      password: Password.nullable().optional(),
      voice: VoiceSettings.partial().optional(),
    })
    .strict(),
} as const;

/** Pagination for listings: `?limit=` (1-200, default 50) and `?offset=` (default 0). */
export const PageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
  q: z.string().max(64).optional(),
});

export interface PageResponse<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}
