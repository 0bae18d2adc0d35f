import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
import { AudioDeviceError } from './errors.js';
import { StallWatch } from './stall-watch.js';
import {
  bytesPerSample,
  checkStreamFormat,
  type AudioBackend,
  type AudioDeviceInfo,
  type AudioInput,
  type AudioOutput,
  type CaptureHandler,
  type OpenOptions,
  type RenderHandler,
  type StreamFormat,
} from './types.js';

/** The part of naudiodon (PortAudio) we use; loaded lazily so a missing binary is an error, not a crash. */
interface PortAudio {
  readonly SampleFormatFloat32: number;
  readonly SampleFormat16Bit: number;
  getDevices(): {
    id: number;
    name: string;
    maxInputChannels: number;
    maxOutputChannels: number;
    defaultSampleRate: number;
    hostAPIName: string;
  }[];
  AudioIO(options: Record<string, unknown>): (Readable | Writable) & {
    start(): void;
    quit(cb?: () => void): Promise<void>;
    abort(cb?: () => void): void;
  };
}

/** How the device backend judges a stream that stopped (see StallWatch). */
export interface DeviceBackendOptions {
  /** No period for this long: DEVICE_FAILED (default 1000 ms). */
  readonly stallMs?: number;
  /** Not judged this long after a stream starts (default 5000 ms). */
  readonly startMs?: number;
}

/**
 * Sound cards through naudiodon 2.3.6 (PortAudio, built from source at install): lists devices,
 * opens one by id, runs 10 ms periods (its `highwaterMark` is set to one period, else it hands over
 * 16 KiB at a time). PortAudio has no unsigned 16-bit format: devices run f32 or i16. Where naudiodon
 * has no binary (macOS on arm64), `load()` throws BACKEND_UNAVAILABLE and the app says so; the file
 * backend still works.
 */
export class DeviceBackend implements AudioBackend {
  readonly name = 'naudiodon';

  private constructor(
    private readonly pa: PortAudio,
    private readonly o: DeviceBackendOptions,
  ) {}

  static load(options: DeviceBackendOptions = {}): DeviceBackend {
    try {
      const require = createRequire(import.meta.url);
      return new DeviceBackend(require('naudiodon') as PortAudio, options);
    } catch (err) {
      throw new AudioDeviceError(
        'BACKEND_UNAVAILABLE',
        `naudiodon did not load on ${process.platform}-${process.arch}: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }

  listDevices(): AudioDeviceInfo[] {
    return this.pa.getDevices().map((d) => ({
      id: d.id,
      name: d.name,
      hostApi: d.hostAPIName,
      maxInputChannels: d.maxInputChannels,
      maxOutputChannels: d.maxOutputChannels,
      defaultSampleRate: d.defaultSampleRate,
    }));
  }

  /** The device by id, or the host's default ('default' by name on ALSA, else the first fitting one). */
  private pick(deviceId: number | undefined, input: boolean): AudioDeviceInfo {
    const fits = (d: AudioDeviceInfo): boolean => (input ? d.maxInputChannels : d.maxOutputChannels) > 0;
    const list = this.listDevices().filter(fits);
    const d =
      deviceId === undefined || deviceId < 0
        ? (list.find((x) => x.name === 'default') ?? list.find((x) => x.name === 'pulse') ?? list[0])
        : list.find((x) => x.id === deviceId);
    if (!d) {
      throw new AudioDeviceError(
        'NO_DEVICE',
        deviceId === undefined
          ? `no ${input ? 'input' : 'output'} device`
          : `no ${input ? 'input' : 'output'} device ${deviceId}`,
      );
    }
    return d;
  }

  private formatFor(d: AudioDeviceInfo, input: boolean, o: OpenOptions): StreamFormat {
    const max = input ? d.maxInputChannels : d.maxOutputChannels;
    const f: StreamFormat = {
      sampleRate: o.format?.sampleRate ?? Math.round(d.defaultSampleRate),
      channels: Math.min(o.format?.channels ?? 1, max),
      format: o.format?.format ?? 'i16',
    };
    checkStreamFormat(f);
    if (f.format === 'u16')
      throw new AudioDeviceError('DEVICE_FAILED', 'PortAudio has no unsigned 16-bit format');
    return f;
  }

  private open(input: boolean, o: OpenOptions): DeviceStream {
    const d = this.pick(o.deviceId, input);
    const format = this.formatFor(d, input, o);
    const periodMs = o.periodMs ?? 10;
    if (!(periodMs >= 2.5 && periodMs <= 100)) throw new TypeError('periodMs must be in [2.5, 100]');
    const periodFrames = Math.round((format.sampleRate * periodMs) / 1000);
    const bytes = periodFrames * format.channels * bytesPerSample(format.format);
    const opts = {
      channelCount: format.channels,
      sampleFormat: format.format === 'f32' ? this.pa.SampleFormatFloat32 : this.pa.SampleFormat16Bit,
      sampleRate: format.sampleRate,
      deviceId: d.id,
      framesPerBuffer: periodFrames,
      // Input: one period per 'data' event. Output: three periods in flight, else each write waits for
      // the previous one to reach PortAudio and the device is fed at about half its rate.
      highwaterMark: input ? bytes : 3 * bytes,
      // An xrun ("output underflow") is not fatal: with closeOnError PortAudio's stream would close.
      closeOnError: false,
      // Periods PortAudio's thread may queue for us: 8 (80 ms at 10 ms) rides out an event-loop stall
      // without losing input (the default 2 drops audio after a 20 ms stall).
      maxQueue: 8,
    };
    let io;
    try {
      io = this.pa.AudioIO(input ? { inOptions: opts } : { outOptions: opts });
    } catch (err) {
      throw new AudioDeviceError('DEVICE_FAILED', `cannot open ${d.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new DeviceStream(io, d, format, periodFrames, bytes, {
      stallMs: this.o.stallMs ?? 1000,
      startMs: this.o.startMs ?? 5000,
    });
  }

  openInput(options: OpenOptions = {}): AudioInput {
    return this.open(true, options);
  }

  openOutput(options: OpenOptions = {}): AudioOutput {
    return this.open(false, options);
  }
}

type Io = ReturnType<PortAudio['AudioIO']>;

/** One naudiodon stream, used as input or output. */
class DeviceStream implements AudioInput, AudioOutput {
  private closed = false;
  private failed: ((err: Error) => void) | null = null;
  private readonly watch: StallWatch;

  constructor(
    private readonly io: Io,
    readonly device: AudioDeviceInfo,
    readonly format: StreamFormat,
    readonly periodFrames: number,
    private readonly periodBytes: number,
    stall: { stallMs: number; startMs: number },
  ) {
    // A sound server that dies or a device that wedges stops PortAudio's callbacks without an error
    // (tried: PulseAudio killed or its sink suspended under a running stream): judge by the periods.
    this.watch = new StallWatch({
      ...stall,
      onStall: (ms) => this.fail(new Error(`no audio from the device for ${ms} ms: it stopped`)),
    });
    // naudiodon logs stream errors itself with console.error; ours go to onError.
    io.removeAllListeners('error');
    io.on('error', (err: unknown) => this.fail(err instanceof Error ? err : new Error(String(err))));
  }

  private fail(err: Error): void {
    if (this.closed) return;
    const cb = this.failed;
    void this.close();
    cb?.(new AudioDeviceError('DEVICE_FAILED', `${this.device.name}: ${err.message}`, { cause: err }));
  }

  start(handler: CaptureHandler | RenderHandler, onError: (err: Error) => void): void {
    if (this.closed) throw new AudioDeviceError('CLOSED');
    this.failed = onError;
    const io = this.io;
    if ('read' in io && typeof (io as Readable).read === 'function' && !('write' in io)) {
      const onData = handler;
      (io as Readable).on('data', (chunk: Buffer) => {
        if (this.closed) return; // PortAudio may still hand over what it had queued
        this.watch.beat();
        try {
          onData(chunk, performance.now());
        } catch (err) {
          this.fail(err as Error);
        }
      });
    } else {
      const render = handler as RenderHandler;
      const w = io as Writable;
      // The stream buffers one period (highwaterMark): write whenever it has room, so the device's
      // consumption paces the calls to render().
      // Period buffers are reused round a ring, not allocated per period: naudiodon copies a chunk
      // when its write reaches the addon, and the stream holds at most highwaterMark (3 periods)
      // plus the one that said "full" before draining, so 8 are never still in use.
      const ring = Array.from({ length: 8 }, () => Buffer.alloc(this.periodBytes));
      let next = 0;
      const pump = (): void => {
        while (!this.closed) {
          const buf = ring[next]!;
          next = (next + 1) % ring.length;
          try {
            render(buf);
          } catch (err) {
            this.fail(err as Error);
            return;
          }
          if (!w.write(buf)) break;
        }
      };
      // A drain is the device taking a period: the first comes once it has started.
      w.on('drain', () => {
        this.watch.beat();
        pump();
      });
      pump();
    }
    io.start();
    this.watch.start();
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    this.watch.stop();
    // naudiodon 2.3.6's abort() always throws ("Quit expects 1 argument"): the stream went on running
    // after every device switch. quit() stops it; an output's quit first waits for its queue to
    // play out, which a dead device never does, so the wait is bounded (the native call is then
    // left blocked on one libuv pool thread until the device comes back).
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 1000);
      this.io.quit().then(
        () => {
          clearTimeout(t);
          resolve();
        },
        () => {
          clearTimeout(t);
          resolve();
        },
      );
    });
  }
}
