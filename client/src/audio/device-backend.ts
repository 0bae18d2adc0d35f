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

/** How the device backend judges a stream that stopped (see StallWatch), and how many it abandons. */
export interface DeviceBackendOptions {
  /** No period for this long: DEVICE_FAILED (default DEFAULT_STALL_MS). */
  readonly stallMs?: number;
  /** Not judged this long after a stream starts (default 5000 ms). */
  readonly startMs?: number;
  /**
   * Streams whose close may be left stuck at once (default: maxAbandonedFor the process's libuv
   * pool). Each holds a libuv pool thread until its device comes back; at the bound, opening a
   * stream fails with DEVICES_STUCK rather than take the threads fs, crypto and dns need.
   */
  readonly maxAbandoned?: number;
}

/** No period for this long is a dead device, ms. */
export const DEFAULT_STALL_MS = 1000;

/**
 * Periods PortAudio's thread may queue for an input (naudiodon's `maxQueue`): 8 (80 ms at 10 ms)
 * ride out an event-loop stall without losing audio (its default 2 loses audio after 20 ms).
 */
export const INPUT_QUEUE_PERIODS = 8;

/**
 * Periods written ahead to an output (its `highwaterMark`): with one, each write waits for the
 * previous one to reach PortAudio and the device is fed at about half its rate.
 */
export const OUTPUT_PERIODS_AHEAD = 3;

/** How long a close waits for naudiodon's quit() before leaving it to finish (or not) alone, ms. */
const QUIT_WAIT_MS = 1000;

/**
 * libuv pool threads kept for everything but stuck closes: the two running streams' reads and
 * writes (naudiodon runs each as pool work), and libuv's default pool of four for fs, crypto, dns.
 */
const POOL_RESERVED = 6;

/**
 * The libuv pool size the desktop launcher (client/app/extension/voice-extension, .cmd) starts the
 * extension with unless UV_THREADPOOL_SIZE is set: room for POOL_RESERVED and 10 stuck closes.
 */
export const EXTENSION_POOL_SIZE = 16;

/**
 * The libuv pool size of this process, read as libuv reads UV_THREADPOOL_SIZE when the pool starts:
 * 4 when unset, else its atoi() into an unsigned count, 0 (or no number) taken as 1, more than 1024
 * as 1024. Only the environment the process started with counts: the pool starts before the first
 * line of an ES module entry runs, so the launcher sets it.
 */
export function libuvPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const v = env.UV_THREADPOOL_SIZE;
  if (v === undefined) return 4;
  const n = Number.parseInt(v, 10) || 0;
  return n === 0 ? 1 : n < 0 || n > 1024 ? 1024 : n;
}

/** Stuck closes allowed in a pool of `poolSize` threads: what POOL_RESERVED leaves, at least one. */
export function maxAbandonedFor(poolSize: number): number {
  return Math.max(1, poolSize - POOL_RESERVED);
}

/** Counters of streams abandoned in a close that did not finish. */
export interface AbandonedStats {
  /** Stuck now (each holds a pool thread). */
  readonly abandoned: number;
  /** The bound on `abandoned`. */
  readonly maxAbandoned: number;
  /** Ever abandoned; `abandoned` goes down again when a stuck close finishes. */
  readonly abandonedTotal: number;
  /** Opens refused with DEVICES_STUCK at the bound. */
  readonly refused: number;
}

/**
 * Sound cards through naudiodon 2.3.6 (PortAudio, built from source at install): lists devices,
 * opens one by id, runs 10 ms periods (an input hands over one period at a time, an output is
 * written OUTPUT_PERIODS_AHEAD periods ahead). PortAudio has no unsigned 16-bit format: devices run
 * f32 or i16. Where naudiodon has no binary (macOS on arm64), `load()` throws BACKEND_UNAVAILABLE and
 * the app says so; the file backend still works. A stream that stops delivering periods is
 * DEVICE_FAILED (StallWatch); a close stuck on a dead device is abandoned, counted and bounded.
 */
export class DeviceBackend implements AudioBackend {
  readonly name = 'naudiodon';

  private readonly maxAbandoned: number;
  private readonly stuck = { abandoned: 0, abandonedTotal: 0, refused: 0 };

  private constructor(
    private readonly pa: PortAudio,
    private readonly o: DeviceBackendOptions,
  ) {
    const max = o.maxAbandoned ?? maxAbandonedFor(libuvPoolSize());
    if (!Number.isInteger(max) || max < 1) throw new TypeError('maxAbandoned must be an integer >= 1');
    this.maxAbandoned = max;
  }

  stats(): AbandonedStats {
    return { ...this.stuck, maxAbandoned: this.maxAbandoned };
  }

  static load(options: DeviceBackendOptions = {}): DeviceBackend {
    let pa: PortAudio;
    try {
      pa = createRequire(import.meta.url)('naudiodon') as PortAudio;
    } catch (err) {
      throw new AudioDeviceError(
        'BACKEND_UNAVAILABLE',
        `naudiodon did not load on ${process.platform}-${process.arch}: ${(err as Error).message}`,
        { cause: err },
      );
    }
    return new DeviceBackend(pa, options);
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

  /** The device by id, or the host's default: 'default' by name (ALSA), else 'pulse', else the first that fits. */
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
    if (this.stuck.abandoned >= this.maxAbandoned) {
      this.stuck.refused++;
      throw new AudioDeviceError(
        'DEVICES_STUCK',
        `${this.stuck.abandoned} streams are stuck closing on devices that stopped responding (at most ${this.maxAbandoned}): restart the app`,
      );
    }
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
      // Input: one period per 'data' event (the default hands over 16 KiB at a time).
      highwaterMark: input ? bytes : OUTPUT_PERIODS_AHEAD * bytes,
      // An xrun ("output underflow") is not fatal: with closeOnError PortAudio's stream would close.
      closeOnError: false,
      maxQueue: INPUT_QUEUE_PERIODS,
    };
    let io;
    try {
      io = this.pa.AudioIO(input ? { inOptions: opts } : { outOptions: opts });
    } catch (err) {
      throw new AudioDeviceError('DEVICE_FAILED', `cannot open ${d.name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new DeviceStream(
      io,
      d,
      format,
      periodFrames,
      bytes,
      { stallMs: this.o.stallMs ?? DEFAULT_STALL_MS, startMs: this.o.startMs ?? 5000 },
      (stuck) => {
        this.stuck.abandoned += stuck ? 1 : -1;
        if (stuck) this.stuck.abandonedTotal++;
      },
    );
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
    /** A close left its quit() running (true), and that quit() finished after all (false). */
    private readonly onAbandoned: (stuck: boolean) => void,
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
      // The stream takes OUTPUT_PERIODS_AHEAD periods (highwaterMark): write while it has room, so
      // the device's consumption paces the calls to render().
      // Period buffers are reused round a ring, not allocated per period: naudiodon copies a chunk
      // when its write reaches the addon, and the stream holds at most OUTPUT_PERIODS_AHEAD chunks
      // (the write that fills it says "full"), so a ring of 8 is never still in use.
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
      // A drain is the device having taken what was written ahead: the first comes once it has started.
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
    // naudiodon 2.3.6's abort() always throws ("Quit expects 1 argument"), so it cannot stop a
    // stream; quit() does. An output's quit first waits for its queue to play out, which a dead
    // device never does (and a live one under load took up to 2 s here), so the wait is bounded.
    // The native call is then abandoned, blocked on a libuv pool thread until it finishes (the
    // device comes back): the backend counts those and bounds them.
    return new Promise<void>((resolve) => {
      let abandoned = false;
      const t = setTimeout(() => {
        abandoned = true;
        this.onAbandoned(true);
        resolve();
      }, QUIT_WAIT_MS);
      const done = (): void => {
        clearTimeout(t);
        if (abandoned) this.onAbandoned(false);
        resolve();
      };
      this.io.quit().then(done, done);
    });
  }
}
