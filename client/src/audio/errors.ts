/** Why an audio device operation failed (bad arguments throw TypeError instead). */
export const AUDIO_ERROR_CODES = {
  /** The native device library did not load (no binary for this platform, or it failed to build). */
  BACKEND_UNAVAILABLE: 'the audio device library is not available on this platform',
  /** No device of the wanted kind exists (no sound card, no PulseAudio, wrong id). */
  NO_DEVICE: 'no such audio device',
  /** The device refused to open with the wanted format or went away while running. */
  DEVICE_FAILED: 'the audio device failed',
  /**
   * Streams left stuck on dead devices (a close that never finished) hold every thread allowed for
   * them: no stream opens until one of those devices comes back, or the app restarts.
   */
  DEVICES_STUCK: 'audio devices that stopped responding hold every thread allowed for them: restart the app',
  /** The stream was closed. */
  CLOSED: 'the audio stream is closed',
} as const;

export type AudioErrorCode = keyof typeof AUDIO_ERROR_CODES;

export class AudioDeviceError extends Error {
  override readonly name = 'AudioDeviceError';
  constructor(
    readonly code: AudioErrorCode,
    message: string = AUDIO_ERROR_CODES[code],
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}
