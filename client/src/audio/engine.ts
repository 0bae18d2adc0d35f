import { EventEmitter } from 'node:events';
import { emitSafely } from '../emit-safely.js';
import { ClockedSource } from '../voice/sources.js';
import { CaptureChain } from './capture.js';
import { AudioDeviceError } from './errors.js';
import { FrameFifo } from './frame-fifo.js';
import { PlaybackChain } from './playback.js';
import { GainStage, HighPassStage, LevelMeter, ProcessingChain } from './processing.js';
import type {
  AudioBackend,
  AudioDeviceInfo,
  AudioInput,
  AudioOutput,
  PullSource,
  StreamFormat,
} from './types.js';

/** How captured audio is gated: voice activity, push-to-talk, or always on. */
export type TransmitMode = 'vad' | 'ptt' | 'always';

export interface AudioEngineOptions {
  readonly backend: AudioBackend;
  readonly inputDeviceId?: number;
  readonly outputDeviceId?: number;
  /** Device format wishes (rate, channels, sample format); default: the device's own rate, mono i16. */
  readonly inputFormat?: Partial<StreamFormat>;
  readonly outputFormat?: Partial<StreamFormat>;
  readonly inputGainDb?: number;
  readonly highPassHz?: number;
  readonly vadThresholdDbfs?: number;
  readonly transmit?: TransmitMode;
  /** Level events per second (default 10). */
  readonly levelRate?: number;
}

export interface AudioEngineEvents {
  /** Input level after processing, and whether we are sending (throttled to levelRate). */
  level: [rmsDbfs: number, peakDbfs: number, transmitting: boolean];
  /** A device failed or went away; the stream is closed, the engine keeps running without it. */
  error: [err: AudioDeviceError, which: 'input' | 'output'];
}

const FRAME = 480; // the engine works in 10 ms frames; the sender gathers 20 ms ones itself

/**
 * The desktop client's audio: one input and one output device from a backend, the capture
 * processing chain (gain, high-pass, meter and voice activity), the playback chain with drift
 * compensation, and the microphone test loopback. The capture side feeds `source` (a ClockedSource
 * for VoiceClient.startVoice); the playback side pulls from whatever `setPlayback()` was given.
 * close() is idempotent and closes both streams.
 */
export class AudioEngine extends EventEmitter<AudioEngineEvents> {
  readonly backend: AudioBackend;
  /** Give this to VoiceClient.startVoice(): frames arrive on the input device's clock. */
  readonly source = new ClockedSource();
  readonly gain: GainStage;
  readonly highPass: HighPassStage;
  readonly meter: LevelMeter;
  readonly processing: ProcessingChain;
  transmit: TransmitMode;
  /** Push-to-talk key held. */
  pttDown = false;
  private input: AudioInput | null = null;
  private output: AudioOutput | null = null;
  /** The device ids the open streams were asked for (undefined: the default device). */
  private inputId: number | undefined;
  private outputId: number | undefined;
  private capture: CaptureChain | null = null;
  private playback: PlaybackChain | null = null;
  private playSource: PullSource | null = null;
  private readonly silence: PullSource = { pull: (out) => out.fill(0) };
  private loop: FrameFifo | null = null;
  private outputVolume = 1;
  private levelEvery: number;
  private framesSinceLevel = 0;
  private closed = false;
  /**
   * Opening and closing a direction's stream take turns: two switches asked at once (the desktop
   * controller runs commands concurrently) each closed the stream that was current when they began
   * and then both opened one, and the one not kept ran on, unclosed.
   */
  private readonly turns = { input: Promise.resolve(), output: Promise.resolve() };
  /** Errors thrown by event listeners (caught). */
  listenerErrors = 0;

  constructor(private readonly o: AudioEngineOptions) {
    super();
    this.backend = o.backend;
    this.gain = new GainStage(o.inputGainDb ?? 0);
    this.highPass = new HighPassStage(o.highPassHz ?? 80);
    this.meter = new LevelMeter({ frameMs: 10, thresholdDbfs: o.vadThresholdDbfs ?? -45 });
    this.processing = new ProcessingChain([this.highPass, this.gain, this.meter]);
    this.transmit = o.transmit ?? 'vad';
    this.levelEvery = Math.max(1, Math.round(100 / (o.levelRate ?? 10)));
  }

  listDevices(): AudioDeviceInfo[] {
    return this.backend.listDevices();
  }

  get inputFormat(): StreamFormat | null {
    return this.input?.format ?? null;
  }

  get outputFormat(): StreamFormat | null {
    return this.output?.format ?? null;
  }

  /** Whether an input stream runs on `deviceId` (undefined: the default device). */
  inputRunsOn(deviceId: number | undefined): boolean {
    return this.input !== null && this.inputId === deviceId;
  }

  /** Whether an output stream runs on `deviceId` (undefined: the default device). */
  outputRunsOn(deviceId: number | undefined): boolean {
    return this.output !== null && this.outputId === deviceId;
  }

  /** True when captured frames are being sent (before self-mute, which the session applies). */
  get transmitting(): boolean {
    return this.transmit === 'always' || (this.transmit === 'ptt' ? this.pttDown : this.meter.speaking);
  }

  /** Runs `fn` after every earlier start or stop of the same direction has finished. */
  private inTurn<T>(which: 'input' | 'output', fn: () => Promise<T>): Promise<T> {
    const run = this.turns[which].then(fn);
    this.turns[which] = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Opens (or switches to) an input device; on failure the previous one is closed and the error thrown. */
  startInput(deviceId: number | undefined = this.o.inputDeviceId): Promise<void> {
    return this.inTurn('input', () => this.openInput(deviceId));
  }

  private async openInput(deviceId: number | undefined): Promise<void> {
    this.checkOpen();
    await this.closeInput();
    const input = this.backend.openInput({
      ...(deviceId !== undefined ? { deviceId } : {}),
      ...(this.o.inputFormat ? { format: this.o.inputFormat } : {}),
    });
    const capture = new CaptureChain({
      device: input.format,
      frameSamples: FRAME,
      processing: this.processing,
      onFrame: (pcm, t) => this.onCaptured(pcm, t),
    });
    this.input = input;
    this.inputId = deviceId;
    this.capture = capture;
    input.start(
      // Only the current input feeds the sender: a closing one may still deliver a period or two.
      (chunk, t) => {
        if (this.capture === capture) capture.write(chunk, t);
      },
      (err) => this.deviceFailed(err, 'input', input),
    );
  }

  /**
   * Opens an input on `deviceId` unless one runs on it already; resolves true when it opened one.
   * Judged in the direction's turn, so settings sent at once open a device once.
   */
  ensureInput(deviceId: number | undefined): Promise<boolean> {
    return this.inTurn('input', async () => {
      if (this.inputRunsOn(deviceId)) return false;
      await this.openInput(deviceId);
      return true;
    });
  }

  stopInput(): Promise<void> {
    return this.inTurn('input', () => this.closeInput());
  }

  private async closeInput(): Promise<void> {
    const i = this.input;
    this.input = null;
    this.capture = null;
    this.processing.reset();
    await i?.close();
  }

  startOutput(deviceId: number | undefined = this.o.outputDeviceId): Promise<void> {
    return this.inTurn('output', () => this.openOutput(deviceId));
  }

  private async openOutput(deviceId: number | undefined): Promise<void> {
    this.checkOpen();
    await this.closeOutput();
    const output = this.backend.openOutput({
      ...(deviceId !== undefined ? { deviceId } : {}),
      ...(this.o.outputFormat ? { format: this.o.outputFormat } : {}),
    });
    this.output = output;
    this.outputId = deviceId;
    this.rebuildPlayback();
    output.start(
      (bytes) => {
        if (this.output === output) this.render(bytes);
        else bytes.fill(0);
      },
      (err) => this.deviceFailed(err, 'output', output),
    );
  }

  /** As ensureInput, for the output. */
  ensureOutput(deviceId: number | undefined): Promise<boolean> {
    return this.inTurn('output', async () => {
      if (this.outputRunsOn(deviceId)) return false;
      await this.openOutput(deviceId);
      return true;
    });
  }

  stopOutput(): Promise<void> {
    return this.inTurn('output', () => this.closeOutput());
  }

  private async closeOutput(): Promise<void> {
    const out = this.output;
    this.output = null;
    this.playback = null;
    await out?.close();
  }

  /** What the speaker plays (a session's playout); null: silence. */
  setPlayback(source: PullSource | null): void {
    this.playSource = source;
    this.rebuildPlayback();
  }

  /** Output volume, percent 0-200. */
  setOutputVolume(percent: number): void {
    if (!Number.isFinite(percent) || percent < 0 || percent > 200)
      throw new TypeError('volume must be 0-200');
    this.outputVolume = percent / 100;
    if (this.playback) this.playback.volume = this.outputVolume;
  }

  /** "Test my microphone": plays the processed capture back on the speaker (about 30 ms later). */
  setLoopback(on: boolean): void {
    this.loop = on ? new FrameFifo({ capacity: 9600, target: 1440 }) : null;
    this.rebuildPlayback();
  }

  get loopback(): boolean {
    return this.loop !== null;
  }

  /** Drift figures of the playback chain (null without an output or a steerable source). */
  driftStats(): { correction: number; driftPpm: number; levelSamples: number } | null {
    const d = this.playback?.drift;
    return d ? { correction: d.correction, driftPpm: d.driftPpm, levelSamples: d.smoothedLevel } : null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.source.detach();
    await Promise.all([this.stopInput(), this.stopOutput()]);
  }

  // ---------------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new AudioDeviceError('CLOSED');
  }

  private rebuildPlayback(): void {
    const out = this.output;
    if (!out) return;
    this.playback = new PlaybackChain({
      device: out.format,
      frameSamples: FRAME,
      source: this.loop ?? this.playSource ?? this.silence,
    });
    this.playback.volume = this.outputVolume;
  }

  private render(bytes: Uint8Array): void {
    if (this.playback) this.playback.render(bytes);
    else bytes.fill(0);
  }

  private onCaptured(pcm: Int16Array, t: number): void {
    const transmitting = this.transmitting;
    this.loop?.push(pcm);
    this.source.deliver(pcm, t, transmitting);
    if (++this.framesSinceLevel >= this.levelEvery) {
      this.framesSinceLevel = 0;
      this.safeEmit('level', this.meter.rmsDbfs, this.meter.peakDbfs, transmitting);
    }
  }

  private deviceFailed(err: Error, which: 'input' | 'output', stream: AudioInput | AudioOutput): void {
    const e =
      err instanceof AudioDeviceError
        ? err
        : new AudioDeviceError('DEVICE_FAILED', err.message, { cause: err });
    // In turn, and only if it is still the current stream: a switch may have replaced it already.
    void this.inTurn(which, async () => {
      if (which === 'input' && this.input === stream) await this.closeInput();
      if (which === 'output' && this.output === stream) await this.closeOutput();
    });
    this.safeEmit('error', e, which);
  }

  /** Listener errors are counted and never reach the device callback that emitted. */
  private safeEmit<K extends keyof AudioEngineEvents>(event: K, ...args: AudioEngineEvents[K]): void {
    emitSafely(this, event, args, () => void this.listenerErrors++);
  }
}
