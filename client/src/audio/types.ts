/**
 * The audio engine's interfaces. A backend (sound card through naudiodon, or WAV files for tests and
 * bots) moves interleaved bytes in the device's own format; the engine converts them to and from the
 * client's format (48 kHz mono Int16, one 10 or 20 ms frame at a time) and runs the processing chain.
 */

/** Sample encodings a device may use: float32, signed 16-bit, unsigned (offset-binary) 16-bit. */
export type SampleFormat = 'f32' | 'i16' | 'u16';

export const SAMPLE_FORMATS: readonly SampleFormat[] = ['f32', 'i16', 'u16'];

export function bytesPerSample(format: SampleFormat): number {
  return format === 'f32' ? 4 : 2;
}

/** What a device stream carries. */
export interface StreamFormat {
  readonly sampleRate: number;
  readonly channels: number;
  readonly format: SampleFormat;
}

/** The client's own format: what Opus, the sender and the playout use. */
export const ENGINE_RATE = 48_000;

export function checkStreamFormat(f: StreamFormat): void {
  if (!Number.isInteger(f.sampleRate) || f.sampleRate < 8000 || f.sampleRate > 384_000)
    throw new TypeError(`sampleRate must be an integer in [8000, 384000], got ${f.sampleRate}`);
  if (!Number.isInteger(f.channels) || f.channels < 1 || f.channels > 32)
    throw new TypeError(`channels must be an integer in [1, 32], got ${f.channels}`);
  if (!SAMPLE_FORMATS.includes(f.format)) throw new TypeError(`format must be f32, i16 or u16`);
}

export interface AudioDeviceInfo {
  /** Stable within one process run (PortAudio's index); the name is what a person picks by. */
  readonly id: number;
  readonly name: string;
  readonly hostApi: string;
  readonly maxInputChannels: number;
  readonly maxOutputChannels: number;
  readonly defaultSampleRate: number;
}

/** Typed events of a device stream; listener errors never reach the backend. */
export interface AudioStreamEvents {
  /** The device failed or went away: the stream is closed and will deliver nothing more. */
  error: [err: Error];
}

/** Where captured audio goes: interleaved bytes in the input's format, valid during the call only. */
export type CaptureHandler = (chunk: Uint8Array, captureTime: number) => void;

/** A running capture stream. close() is idempotent. */
export interface AudioInput {
  readonly format: StreamFormat;
  /** Device frames per callback. */
  readonly periodFrames: number;
  start(onData: CaptureHandler, onError: (err: Error) => void): void;
  close(): Promise<void>;
}

/** Fills `out` (interleaved bytes in the output's format, a whole number of device frames). */
export type RenderHandler = (out: Uint8Array) => void;

/** A running playback stream that asks for audio at its own clock. close() is idempotent. */
export interface AudioOutput {
  readonly format: StreamFormat;
  readonly periodFrames: number;
  start(render: RenderHandler, onError: (err: Error) => void): void;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Device id from listDevices() (default: the system default device). */
  readonly deviceId?: number;
  /** Wanted format; a backend may pick the device's own rate when this one is not given. */
  readonly format?: Partial<StreamFormat>;
  /** Period, ms (default 10). */
  readonly periodMs?: number;
}

/** One way to reach audio: the sound card, or files. */
export interface AudioBackend {
  readonly name: string;
  listDevices(): AudioDeviceInfo[];
  openInput(options?: OpenOptions): AudioInput;
  openOutput(options?: OpenOptions): AudioOutput;
}

/**
 * The playback side of a voice session, pulled once per 48 kHz frame by the device's clock. A source
 * that can say how much audio it holds ahead of the reader (`levelSamples()`, 48 kHz samples) and
 * the depth it aims for (`targetSamples`) lets the engine steer its resampler so the device clock
 * follows the network clock (drift compensation).
 */
export interface PullSource {
  pull(out: Int16Array): void;
  levelSamples?(): number;
  /** Read every period: an adaptive jitter buffer's target may move. */
  readonly targetSamples?: number;
  /**
   * Drops up to `samples` of the oldest audio; returns how many. The engine uses it when the level is
   * far above the target (the device started late or stalled): catching up by resampling would take
   * minutes of added delay, dropping takes one period.
   */
  discard?(samples: number): number;
}
