import { readFileSync } from 'node:fs';
import { decodeWav, dbfsToAmplitude, SineGenerator, type WavData } from '@voice/media';

/** The client's audio format: 48 kHz mono Int16. */
export const SAMPLE_RATE = 48_000;
const SAMPLES_PER_MS = SAMPLE_RATE / 1000;

/**
 * Where the sender's audio comes from. Once per frame tick the sender calls `read()` with a buffer of
 * exactly one frame (480 or 960 samples).
 */
export interface AudioSource {
  /** For logs and stats. */
  readonly name: string;
  /**
   * Fills `out` with the next frame and returns true, or returns false when there is nothing to send
   * for this frame (a pause: the sender sends no packet, and the next one it sends starts a talkspurt
   * with the MARKER flag). `now` is performance.now() at the tick.
   */
  read(out: Int16Array, now: number): boolean;
  /**
   * When the frame returned by the last successful read() was produced, performance.now() ms.
   * Synthetic sources report the tick's `now`; PushSource reports when the push that completed the
   * frame happened (the moment a microphone would have delivered it).
   */
  readonly lastCaptureTime: number;
  /** Releases what the source holds; optional. */
  close?(): void;
}

function checkFrame(out: Int16Array): void {
  if (!(out instanceof Int16Array) || out.length === 0)
    throw new TypeError('out must be a non-empty Int16Array');
}

/** A steady sine at `freqHz` and `dbfs` (peak level: 0 dBFS is a full-scale sine). Always sends. */
export class ToneSource implements AudioSource {
  readonly name: string;
  lastCaptureTime = 0;
  private readonly gen: SineGenerator;

  constructor(
    readonly freqHz: number,
    readonly dbfs: number = -20,
  ) {
    if (!Number.isFinite(freqHz) || freqHz <= 0 || freqHz >= SAMPLE_RATE / 2) {
      throw new TypeError(`freqHz must be in (0, ${SAMPLE_RATE / 2}), got ${freqHz}`);
    }
    if (!Number.isFinite(dbfs) || dbfs > 0) throw new TypeError(`dbfs must be <= 0, got ${dbfs}`);
    this.name = `tone ${freqHz} Hz ${dbfs} dBFS`;
    this.gen = new SineGenerator(freqHz, dbfsToAmplitude(dbfs), SAMPLE_RATE);
  }

  read(out: Int16Array, now: number): boolean {
    checkFrame(out);
    this.gen.fill(out);
    this.lastCaptureTime = now;
    return true;
  }
}

export interface SilenceSourceOptions {
  /** Send encoded silence frames (true) or nothing at all (false, default: a quiet member sends nothing). */
  readonly transmit?: boolean;
}

/** Zeros. By default it sends nothing, as a client with voice activity detection would. */
export class SilenceSource implements AudioSource {
  readonly name = 'silence';
  readonly transmit: boolean;
  lastCaptureTime = 0;

  constructor(options: SilenceSourceOptions = {}) {
    this.transmit = options.transmit ?? false;
  }

  read(out: Int16Array, now: number): boolean {
    checkFrame(out);
    out.fill(0);
    this.lastCaptureTime = now;
    return this.transmit;
  }
}

export interface WavSourceOptions {
  /** Start again at the end (default false: after the end the source pauses for good). */
  readonly loop?: boolean;
}

/**
 * Plays 16-bit mono PCM: a WAV file path (read synchronously), decoded WAV data, or 48 kHz samples.
 * Other sample rates are converted to 48 kHz by linear interpolation (good enough for test speech).
 */
export class WavSource implements AudioSource {
  readonly name: string;
  readonly samples: Int16Array;
  readonly loop: boolean;
  lastCaptureTime = 0;
  private pos = 0;
  private done = false;

  constructor(input: string | Int16Array | WavData, options: WavSourceOptions | boolean = {}) {
    const opts = typeof options === 'boolean' ? { loop: options } : options;
    let data: WavData;
    if (typeof input === 'string') {
      if (input === '') throw new TypeError('WavSource: empty path');
      data = decodeWav(readFileSync(input));
      this.name = `wav ${input}`;
    } else if (input instanceof Int16Array) {
      data = { sampleRate: SAMPLE_RATE, samples: input };
      this.name = 'wav (samples)';
    } else if (typeof input === 'object' && input !== null && input.samples instanceof Int16Array) {
      data = input;
      this.name = 'wav (data)';
    } else {
      throw new TypeError('WavSource needs a path, an Int16Array or WavData');
    }
    this.samples =
      data.sampleRate === SAMPLE_RATE ? data.samples : resampleLinear(data.samples, data.sampleRate);
    this.loop = opts.loop ?? false;
    if (this.samples.length === 0) this.done = true;
  }

  /** True once a non-looping source has played everything. */
  get ended(): boolean {
    return this.done;
  }

  /** Samples of the file played so far (modulo its length when looping). */
  get position(): number {
    return this.pos;
  }

  read(out: Int16Array, now: number): boolean {
    checkFrame(out);
    if (this.done) return false;
    const src = this.samples;
    let i = 0;
    while (i < out.length) {
      if (this.pos >= src.length) {
        if (!this.loop) {
          out.fill(0, i);
          this.done = true;
          break;
        }
        this.pos = 0;
      }
      const n = Math.min(out.length - i, src.length - this.pos);
      out.set(src.subarray(this.pos, this.pos + n), i);
      this.pos += n;
      i += n;
    }
    this.lastCaptureTime = now;
    return true;
  }
}

/** Converts to 48 kHz by linear interpolation. */
export function resampleLinear(input: Int16Array, fromRate: number): Int16Array {
  if (!Number.isFinite(fromRate) || fromRate <= 0) throw new TypeError('fromRate must be > 0');
  if (fromRate === SAMPLE_RATE || input.length === 0) return input.slice();
  const n = Math.floor((input.length * SAMPLE_RATE) / fromRate);
  const out = new Int16Array(n);
  const step = fromRate / SAMPLE_RATE;
  for (let i = 0; i < n; i++) {
    const x = i * step;
    const j = Math.floor(x);
    const f = x - j;
    const a = input[j] ?? 0;
    const b = input[j + 1] ?? a;
    out[i] = Math.round(a + (b - a) * f);
  }
  return out;
}

export interface ClickSourceOptions {
  /** Where the click starts, ms from the source's first sample. */
  readonly atMs: number;
  /** Click length, ms (default 5): a burst of a 2 kHz sine, which survives Opus with a sharp onset. */
  readonly widthMs?: number;
  /** Peak amplitude, linear 0..1 (default 0.8). */
  readonly amplitude?: number;
  /** Repeat the click every this many ms after `atMs` (default: once). */
  readonly periodMs?: number;
  /**
   * Send the silence around the click as encoded frames (default true), so the stream is steady and
   * the click's latency is that of a running stream, not of a talkspurt start.
   */
  readonly transmitSilence?: boolean;
}

const CLICK_HZ = 2000;

/** Silence with a short click at a given time (and optionally every `periodMs`), for latency tests. */
export class ClickSource implements AudioSource {
  readonly name: string;
  /** Source sample index where the (first) click starts. */
  readonly clickSample: number;
  readonly widthSamples: number;
  readonly periodSamples: number;
  readonly amplitude: number;
  readonly transmitSilence: boolean;
  lastCaptureTime = 0;
  private pos = 0;

  constructor(options: ClickSourceOptions) {
    const { atMs, widthMs = 5, amplitude = 0.8, periodMs, transmitSilence = true } = options;
    if (!Number.isFinite(atMs) || atMs < 0) throw new TypeError(`atMs must be >= 0, got ${atMs}`);
    if (!Number.isFinite(widthMs) || widthMs <= 0) throw new TypeError(`widthMs must be > 0, got ${widthMs}`);
    if (!(amplitude > 0 && amplitude <= 1))
      throw new TypeError(`amplitude must be in (0, 1], got ${amplitude}`);
    if (periodMs !== undefined && !(Number.isFinite(periodMs) && periodMs > widthMs)) {
      throw new TypeError('periodMs must be longer than the click');
    }
    this.clickSample = Math.round(atMs * SAMPLES_PER_MS);
    this.widthSamples = Math.max(1, Math.round(widthMs * SAMPLES_PER_MS));
    this.periodSamples = periodMs === undefined ? 0 : Math.round(periodMs * SAMPLES_PER_MS);
    this.amplitude = amplitude;
    this.transmitSilence = transmitSilence;
    this.name = `click at ${atMs} ms`;
  }

  /** Samples produced so far. */
  get position(): number {
    return this.pos;
  }

  /** Source sample indexes where clicks start, up to `limit` samples. */
  clickSamples(limit: number): number[] {
    const out: number[] = [];
    for (let s = this.clickSample; s < limit; s += this.periodSamples) {
      out.push(s);
      if (this.periodSamples === 0) break;
    }
    return out;
  }

  /** Offset of sample `s` inside a click, or -1 when `s` is silence. */
  private clickOffset(s: number): number {
    const d = s - this.clickSample;
    if (d < 0) return -1;
    const off = this.periodSamples > 0 ? d % this.periodSamples : d;
    return off < this.widthSamples ? off : -1;
  }

  read(out: Int16Array, now: number): boolean {
    checkFrame(out);
    const scale = 32767 * this.amplitude;
    const w = (2 * Math.PI * CLICK_HZ) / SAMPLE_RATE;
    let any = false;
    for (let i = 0; i < out.length; i++) {
      const off = this.clickOffset(this.pos + i);
      if (off < 0) out[i] = 0;
      else {
        // sin(w * (off + 1)) so the very first click sample is already well above zero.
        out[i] = Math.round(scale * Math.sin(w * (off + 1)));
        any = true;
      }
    }
    this.pos += out.length;
    this.lastCaptureTime = now;
    return any || this.transmitSilence;
  }
}

export interface PushSourceOptions {
  /** Most audio held, ms (default 500). Pushing more drops the oldest samples (counted). */
  readonly capacityMs?: number;
}

const PUSH_RECORDS = 256;

/**
 * Audio pushed by the application (e.g. the desktop app's capture callback), in chunks of any length;
 * the sender takes it out a frame at a time. When less than a frame is buffered the sender pauses
 * (sends nothing). Bounded: when full, the oldest audio is dropped and counted.
 */
export class PushSource implements AudioSource {
  readonly name = 'push';
  readonly capacity: number;
  lastCaptureTime = 0;
  /** Samples dropped because the buffer was full. */
  droppedSamples = 0;
  /** Frames the sender asked for when less than a frame was buffered. */
  underruns = 0;
  private readonly ring: Int16Array;
  private readStart = 0;
  private count = 0;
  private written = 0;
  private readTotal = 0;
  // When each push happened, by the total sample count it brought the stream to.
  private readonly recEnd = new Float64Array(PUSH_RECORDS);
  private readonly recTime = new Float64Array(PUSH_RECORDS);
  private recStart = 0;
  private recCount = 0;
  private closed = false;

  constructor(options: PushSourceOptions = {}) {
    const { capacityMs = 500 } = options;
    if (!Number.isFinite(capacityMs) || capacityMs < 10) throw new TypeError('capacityMs must be >= 10');
    this.capacity = Math.round(capacityMs * SAMPLES_PER_MS);
    this.ring = new Int16Array(this.capacity);
  }

  /** Samples waiting to be sent. */
  get buffered(): number {
    return this.count;
  }

  /** Appends captured samples; `captureTime` is when they were captured (default now). */
  push(samples: Int16Array, captureTime: number = performance.now()): void {
    if (!(samples instanceof Int16Array)) throw new TypeError('samples must be an Int16Array');
    if (this.closed || samples.length === 0) return;
    let src = samples;
    if (src.length > this.capacity) {
      this.droppedSamples += src.length - this.capacity;
      this.skip(this.count);
      this.written += src.length - this.capacity;
      this.readTotal = this.written;
      src = src.subarray(src.length - this.capacity);
    }
    const overflow = this.count + src.length - this.capacity;
    if (overflow > 0) {
      this.droppedSamples += overflow;
      this.skip(overflow);
    }
    let w = (this.readStart + this.count) % this.capacity;
    let i = 0;
    while (i < src.length) {
      const n = Math.min(src.length - i, this.capacity - w);
      this.ring.set(src.subarray(i, i + n), w);
      i += n;
      w = (w + n) % this.capacity;
    }
    this.count += src.length;
    this.written += src.length;
    this.record(this.written, captureTime);
  }

  read(out: Int16Array, _now: number): boolean {
    checkFrame(out);
    if (this.count < out.length) {
      this.underruns++;
      return false;
    }
    let i = 0;
    while (i < out.length) {
      const n = Math.min(out.length - i, this.capacity - this.readStart);
      out.set(this.ring.subarray(this.readStart, this.readStart + n), i);
      i += n;
      this.readStart = (this.readStart + n) % this.capacity;
    }
    this.count -= out.length;
    this.readTotal += out.length;
    this.lastCaptureTime = this.timeOf(this.readTotal);
    return true;
  }

  close(): void {
    this.closed = true;
    this.count = 0;
  }

  private skip(n: number): void {
    this.readStart = (this.readStart + n) % this.capacity;
    this.count -= n;
    this.readTotal += n;
  }

  private record(end: number, time: number): void {
    if (this.recCount === PUSH_RECORDS) {
      this.recStart = (this.recStart + 1) % PUSH_RECORDS;
      this.recCount--;
    }
    const i = (this.recStart + this.recCount) % PUSH_RECORDS;
    this.recEnd[i] = end;
    this.recTime[i] = time;
    this.recCount++;
  }

  /** Time of the push that brought the stream to (at least) `total` samples; forgets older pushes. */
  private timeOf(total: number): number {
    while (this.recCount > 1 && this.recEnd[this.recStart]! < total) {
      this.recStart = (this.recStart + 1) % PUSH_RECORDS;
      this.recCount--;
    }
    return this.recCount > 0 ? this.recTime[this.recStart]! : performance.now();
  }
}

/** Receives one sender-sized frame from a clocked source (valid during the call only). */
export type ClockedFrameHandler = (pcm: Int16Array, captureTime: number, active: boolean) => void;

/** A source whose frames come on the device's clock: the sender attaches instead of running a timer. */
export interface ClockedAudioSource extends AudioSource {
  readonly clocked: true;
  attach(frameSamples: number, onFrame: ClockedFrameHandler): void;
  detach(): void;
}

export function isClockedSource(s: AudioSource): s is ClockedAudioSource {
  return (s as Partial<ClockedAudioSource>).clocked === true;
}

/**
 * The capture side of a sound card: the audio engine delivers each processed 10 ms frame with
 * `deliver()` as the device hands it over, with whether it should be sent (voice activity or
 * push-to-talk). Frames are gathered to the sender's frame size (10 or 20 ms); a 20 ms frame is sent
 * when either half was active. Nothing is buffered beyond one frame: capture never lags.
 */
export class ClockedSource implements ClockedAudioSource {
  readonly name = 'device';
  readonly clocked = true as const;
  lastCaptureTime = 0;
  /** Frames delivered while no sender was attached (not in a channel). */
  unattached = 0;
  private onFrame: ClockedFrameHandler | null = null;
  private frame = new Int16Array(480);
  private fill = 0;
  private active = false;

  attach(frameSamples: number, onFrame: ClockedFrameHandler): void {
    if (!Number.isInteger(frameSamples) || frameSamples <= 0) throw new TypeError('frameSamples must be > 0');
    if (this.frame.length !== frameSamples) this.frame = new Int16Array(frameSamples);
    this.fill = 0;
    this.active = false;
    this.onFrame = onFrame;
  }

  detach(): void {
    this.onFrame = null;
  }

  get attached(): boolean {
    return this.onFrame !== null;
  }

  deliver(pcm: Int16Array, captureTime: number, active: boolean): void {
    if (!(pcm instanceof Int16Array)) throw new TypeError('pcm must be an Int16Array');
    const cb = this.onFrame;
    if (!cb) {
      this.unattached++;
      return;
    }
    for (let i = 0; i < pcm.length;) {
      const n = Math.min(pcm.length - i, this.frame.length - this.fill);
      this.frame.set(pcm.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      this.active ||= active;
      if (this.fill === this.frame.length) {
        this.lastCaptureTime = captureTime;
        const a = this.active;
        this.fill = 0;
        this.active = false;
        cb(this.frame, captureTime, a);
      }
    }
  }

  /** Not used: the sender never polls a clocked source. */
  read(_out: Int16Array, _now: number): boolean {
    return false;
  }
}
