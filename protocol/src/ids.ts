/** Branded identifiers: a UserId can never be passed where a ChannelId is expected. */
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type UserId = Brand<string, 'UserId'>;
export type ChannelId = Brand<string, 'ChannelId'>;
export type SessionToken = Brand<string, 'SessionToken'>;
/** 32-bit id that tags a session's voice packets (like an RTP SSRC). Assigned by the server. */
export type VoiceId = Brand<number, 'VoiceId'>;

/** Ids are 12 url-safe base64 characters (72 random bits) behind a one-letter kind prefix. */
export const ID_PATTERN = /^[uc]_[A-Za-z0-9_-]{12}$/;
export const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export const asUserId = (s: string): UserId => s as UserId;
export const asChannelId = (s: string): ChannelId => s as ChannelId;
export const asSessionToken = (s: string): SessionToken => s as SessionToken;
export const asVoiceId = (n: number): VoiceId => (n >>> 0) as VoiceId;
