/**
 * Named errors of @voice/media. Bad arguments (a frame of the wrong size, a gain out of range)
 * throw the built-in `TypeError` / `RangeError`; problems with data or the codec throw these.
 */
export const MEDIA_ERROR_CODES = {
  CODEC_UNAVAILABLE: 'the requested Opus backend could not be loaded',
  CODEC_FAILED: 'libopus returned an error',
  INVALID_PACKET: 'the Opus packet is malformed or empty',
  BUFFER_TOO_SMALL: 'the output buffer cannot hold the result',
  DESTROYED: 'the codec was already destroyed',
  WAV_FORMAT: 'the file is not a 16-bit PCM mono WAV',
  WAV_TRUNCATED: 'the WAV file ends before its declared data',
} as const satisfies Record<string, string>;

export type MediaErrorCode = keyof typeof MEDIA_ERROR_CODES;

/** Base class: every error of this package carries a stable code. */
export class MediaError extends Error {
  override name = 'MediaError';
  constructor(
    readonly code: MediaErrorCode,
    message: string = MEDIA_ERROR_CODES[code],
  ) {
    super(message);
  }
}

/** Opus encode/decode failures; `opusStatus` is libopus's negative return value when there is one. */
export class OpusCodecError extends MediaError {
  override name = 'OpusCodecError';
  constructor(
    code: MediaErrorCode,
    message?: string,
    readonly opusStatus?: number,
  ) {
    super(code, message);
  }
}

/** A WAV file that cannot be read as 16-bit PCM mono. */
export class WavFormatError extends MediaError {
  override name = 'WavFormatError';
}
