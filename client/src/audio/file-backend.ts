import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { decodeWav, encodeWav, Ticker } from '@voice/media';
import { floatToI16Array, fromMonoFloat, toMonoFloat } from './convert.js';
import { AudioDeviceError } from './errors.js';
import { SincResampler } from './resampler.js';
import {
  bytesPerSample,
  checkStreamFormat,
  ENGINE_RATE,
  type AudioBackend,
  type AudioDeviceInfo,
  type AudioInput,
  type AudioOutput,
  type CaptureHandler,
  type OpenOptions,
  type RenderHandler,
  type StreamFormat,
} from './types.js';

/**
 * Audio I/O from and to WAV files, paced like a device: the input plays a WAV (16-bit mono, any rate)
 * as device chunks, the output records what it is asked to play and writes a 48 kHz mono WAV on
 * close. Each stream runs on its own clock: real time (a drift-free Ticker, optionally off by
 * `clockError` to imitate a sound card's crystal) or `manual`, where the test calls `step()` once
 * per period. Tests and bots run the same engine as the desktop app this way.
 */
export interface FileBackendOptions {
  /** WAV file (or 48 kHz samples) the "microphone" plays; silence when absent. */
  readonly input?: string | Int16Array;
  /** Play the input again from the start at its end (default true). */
  readonly loop?: boolean;
  /**
   * Where the "speaker" writes a 48 kHz mono WAV as it plays (streamed: the header says "to the end
   * of the file" until close() writes the real sizes), so a test can read what was played so far.
   */
  readonly outputPath?: string;
  /** Device format the streams pretend to have (default 48 kHz mono i16). */
  readonly format?: StreamFormat;
  /** 'realtime' (default) or 'manual' (call step()). */
  readonly clock?: 'realtime' | 'manual';
  /** Relative clock error of the real-time streams, e.g. 0.001 = 0.1 % fast (default 0). */
  readonly clockError?: number;
  /** Most seconds of output kept in memory (default 600). */
  readonly maxOutputSeconds?: number;
}

const DEVICES: readonly AudioDeviceInfo[] = [
  {
    id: 0,
    name: 'file input',
    hostApi: 'file',
    maxInputChannels: 8,
    maxOutputChannels: 0,
    defaultSampleRate: ENGINE_RATE,
  },
  {
    id: 1,
    name: 'file output',
    hostApi: 'file',
    maxInputChannels: 0,
    maxOutputChannels: 8,
    defaultSampleRate: ENGINE_RATE,
  },
];

abstract class FileStream {
  readonly format: StreamFormat;
  readonly periodFrames: number;
  protected readonly bytes: Uint8Array;
  protected onError: ((err: Error) => void) | null = null;
  private ticker: Ticker | null = null;
  protected closed = false;

  constructor(o: FileBackendOptions, options: OpenOptions) {
    const def = o.format ?? { sampleRate: ENGINE_RATE, channels: 1, format: 'i16' };
    this.format = { ...def, ...options.format };
    checkStreamFormat(this.format);
    const periodMs = options.periodMs ?? 10;
    if (!(periodMs >= 1 && periodMs <= 100)) throw new TypeError('periodMs must be in [1, 100]');
    this.periodFrames = Math.round((this.format.sampleRate * periodMs) / 1000);
    this.bytes = new Uint8Array(
      this.periodFrames * this.format.channels * bytesPerSample(this.format.format),
    );
    if ((o.clock ?? 'realtime') === 'realtime') {
      const err = o.clockError ?? 0;
      if (!(Math.abs(err) < 0.05)) throw new TypeError('clockError must be within +-5 %');
      this.ticker = new Ticker({
        periodMs: periodMs / (1 + err),
        maxLatePeriods: 20,
        onTick: () => this.step(),
        onError: (e) => this.onError?.(e instanceof Error ? e : new Error(String(e))),
      });
    }
  }

  protected startClock(): void {
    this.ticker?.start();
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** One period: delivers (input) or asks for (output) one chunk. */
  abstract step(): void;

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.ticker?.close();
      this.ticker = null;
      this.finish();
    }
    return Promise.resolve();
  }

  protected finish(): void {}
}

export class FileInput extends FileStream implements AudioInput {
  private onData: CaptureHandler | null = null;
  private readonly samples: Float32Array;
  private pos = 0;
  private readonly loop: boolean;
  private readonly mono: Float32Array;

  constructor(o: FileBackendOptions, options: OpenOptions) {
    super(o, options);
    this.loop = o.loop ?? true;
    let pcm: Int16Array = new Int16Array(0);
    let rate = ENGINE_RATE;
    if (typeof o.input === 'string') {
      const wav = decodeWav(readFileSync(o.input));
      pcm = wav.samples;
      rate = wav.sampleRate;
    } else if (o.input instanceof Int16Array) pcm = o.input;
    // Once, at open: the file at the device's rate, so each period is a plain copy.
    const f = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) f[i] = pcm[i]! / 32768;
    this.samples = rate === this.format.sampleRate ? f : convertWhole(f, rate, this.format.sampleRate);
    this.mono = new Float32Array(this.periodFrames);
  }

  start(onData: CaptureHandler, onError: (err: Error) => void): void {
    if (this.closed) throw new AudioDeviceError('CLOSED');
    this.onData = onData;
    this.onError = onError;
    this.startClock();
  }

  step(): void {
    if (this.closed || !this.onData) return;
    const n = this.periodFrames;
    const src = this.samples;
    for (let i = 0; i < n; i++) {
      if (this.pos >= src.length) {
        if (this.loop && src.length > 0) this.pos = 0;
        else {
          this.mono.fill(0, i);
          break;
        }
      }
      this.mono[i] = src[this.pos++]!;
    }
    fromMonoFloat(this.mono, n, this.format, this.bytes);
    this.onData(this.bytes, performance.now());
  }
}

export class FileOutput extends FileStream implements AudioOutput {
  private render: RenderHandler | null = null;
  private readonly mono: Float32Array;
  private readonly out: Int16Array;
  private written = 0;
  private fd: number | null = null;
  private flushed = 0;

  constructor(
    private readonly o: FileBackendOptions,
    options: OpenOptions,
  ) {
    super(o, options);
    this.mono = new Float32Array(this.periodFrames);
    this.out = new Int16Array(Math.round((o.maxOutputSeconds ?? 600) * this.format.sampleRate));
  }

  start(render: RenderHandler, onError: (err: Error) => void): void {
    if (this.closed) throw new AudioDeviceError('CLOSED');
    this.render = render;
    this.onError = onError;
    if (this.o.outputPath) {
      this.fd = openSync(this.o.outputPath, 'w');
      const header = encodeWav(new Int16Array(0), this.format.sampleRate);
      const v = new DataView(header.buffer);
      v.setUint32(4, 0xffffffff, true);
      v.setUint32(40, 0xffffffff, true);
      writeSync(this.fd, header);
    }
    this.startClock();
  }

  step(): void {
    if (this.closed || !this.render) return;
    this.render(this.bytes);
    const n = toMonoFloat(this.bytes, this.format, this.mono, this.periodFrames);
    const keep = Math.min(n, this.out.length - this.written);
    floatToI16Array(this.mono, this.out.subarray(this.written, this.written + keep), keep);
    this.written += keep;
    // Flush about every 100 ms: a test reads the file while we play.
    if (this.fd !== null && this.written - this.flushed >= this.format.sampleRate / 10) this.flush();
  }

  /** What was played so far, mono Int16 at the output's rate (a copy). */
  recording(): Int16Array {
    return this.out.slice(0, this.written);
  }

  private flush(): void {
    if (this.fd === null) return;
    const part = this.out.subarray(this.flushed, this.written);
    writeSync(this.fd, new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
    this.flushed = this.written;
  }

  protected override finish(): void {
    if (this.fd === null) return;
    this.flush();
    const bytes = this.written * 2;
    const size = new Uint8Array(4);
    new DataView(size.buffer).setUint32(0, 36 + bytes, true);
    writeSync(this.fd, size, 0, 4, 4);
    new DataView(size.buffer).setUint32(0, bytes, true);
    writeSync(this.fd, size, 0, 4, 40);
    closeSync(this.fd);
    this.fd = null;
  }
}

/** Whole-buffer rate conversion with the streaming resampler (used once per file, not per period). */
export function convertWhole(input: Float32Array, from: number, to: number): Float32Array {
  const r = new SincResampler({ inRate: from, outRate: to, capacity: Math.max(64, input.length + 64) });
  r.write(input);
  r.write(new Float32Array(r.taps)); // flush the kernel's tail
  const out = new Float32Array(Math.floor((input.length * to) / from));
  r.read(out, out.length);
  return out;
}

export class FileBackend implements AudioBackend {
  readonly name = 'file';
  private readonly streams = new Set<FileStream>();

  constructor(private readonly o: FileBackendOptions = {}) {}

  listDevices(): AudioDeviceInfo[] {
    return DEVICES.map((d) => ({ ...d }));
  }

  openInput(options: OpenOptions = {}): FileInput {
    if (options.deviceId !== undefined && options.deviceId !== 0) throw new AudioDeviceError('NO_DEVICE');
    const s = new FileInput(this.o, options);
    this.streams.add(s);
    return s;
  }

  openOutput(options: OpenOptions = {}): FileOutput {
    if (options.deviceId !== undefined && options.deviceId !== 1) throw new AudioDeviceError('NO_DEVICE');
    const s = new FileOutput(this.o, options);
    this.streams.add(s);
    return s;
  }

  /** Manual clock: one period of every open stream. */
  step(): void {
    for (const s of this.streams) {
      if (s.isClosed) this.streams.delete(s);
      else s.step();
    }
  }
}
