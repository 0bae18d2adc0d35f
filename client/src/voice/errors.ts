/** Why a voice client operation failed (bad arguments throw TypeError instead). */
export const VOICE_CLIENT_ERROR_CODES = {
  /** The server's join result carried no voice binding (its voice path is not running). */
  NO_VOICE_BINDING: 'the server returned no voice binding',
  /** The operation needs a channel (and its voice binding). */
  NOT_IN_CHANNEL: 'join a channel first',
  /** No channel has that name (and creating it was not asked for). */
  CHANNEL_NOT_FOUND: 'no such channel',
  /** The client was closed. */
  CLOSED: 'the voice client is closed',
  /** No HELLO_ACK arrived in time: wrong key, blocked path or no voice server. */
  NOT_READY: 'the voice path did not come up in time',
} as const;

export type VoiceClientErrorCode = keyof typeof VOICE_CLIENT_ERROR_CODES;

export class VoiceClientError extends Error {
  override readonly name = 'VoiceClientError';
  constructor(
    readonly code: VoiceClientErrorCode,
    message: string = VOICE_CLIENT_ERROR_CODES[code],
  ) {
    super(message);
  }
}
