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
  /**
   * A timing advance: cut every later frame `samples` later in the device stream (negative:
   * earlier), taken modulo a frame. Returns the change of send instant it made, in samples: the
   * same phase, but never a frame or more of hold. Optional: a source without it ignores advances.
   */
  shift?(samples: number): number;
}

export function isClockedSource(s: AudioSource): s is ClockedAudioSource {
  return (s as Partial<ClockedAudioSource>).clocked === true;
}

/**
 * The capture side of a sound card: the audio engine delivers each processed 10 ms frame with
 * `deliver()` as the device hands it over, with whether it should be sent (voice activity or
 * push-to-talk). Frames are gathered to the sender's frame size (10 or 20 ms); a 20 ms frame is sent
 * when any of its samples came in an active delivery.
 *
 * The instant a frame goes is its phase in the device stream, which a timing advance moves
 * (`shift`): a complete frame waits `hold` more samples of the stream (0 to a frame less one) before
 * it is handed over, at the instant the device captures the last of those (a timer from the block
 * before, so the phase is not rounded to the device's 10 ms blocks; or the block that brings it,
 * if that comes first). Frames stay the stream's consecutive samples whatever the hold (none lost
 * or repeated, so the sender's timestamps stay continuous); only their send instant moves. Two
 * frames of samples are kept (the one held and the one filling): capture never lags by more.
 */
export class ClockedSource implements ClockedAudioSource {
  readonly name = 'device';
  readonly clocked = true as const;
  lastCaptureTime = 0;
  /** Frames delivered while no sender was attached (not in a channel). */
  unattached = 0;
  private onFrame: ClockedFrameHandler | null = null;
  /** The ring: the frame being filled and the complete one waiting out its hold. */
  private slots = [new Int16Array(480), new Int16Array(480)];
  private readonly slotActive = [false, false];
  private readonly slotTime = [0, 0];
  /** The slot being filled, and how many of its samples are in. */
  private cur = 0;
  private fill = 0;
  /** The other slot holds a complete frame that goes once `since` reaches `hold` samples. */
  private waiting = false;
  private since = 0;
  private holdSamples = 0;
  /** When the last block came (performance clock): the stream's position in time. */
  private blockAt = 0;
  /** Sends the waiting frame when it falls due between two blocks. */
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Errors thrown by the frame handler from that timer (nothing else reports them). */
  timerErrors = 0;

  /** Samples a complete frame waits before it goes: the phase timing advances moved it to. */
  get hold(): number {
    return this.holdSamples;
  }

  attach(frameSamples: number, onFrame: ClockedFrameHandler): void {
    if (!Number.isInteger(frameSamples) || frameSamples <= 0) throw new TypeError('frameSamples must be > 0');
    if (this.slots[0]!.length !== frameSamples)
      this.slots = [new Int16Array(frameSamples), new Int16Array(frameSamples)];
    // A new sender (a new binding) starts on the device's own phase: its advances are its own.
    this.cur = 0;
    this.fill = 0;
    this.waiting = false;
    this.since = 0;
    this.holdSamples = 0;
    this.slotActive[0] = this.slotActive[1] = false;
    this.disarm();
    this.onFrame = onFrame;
  }

  detach(): void {
    this.onFrame = null;
    this.disarm();
  }

  get attached(): boolean {
    return this.onFrame !== null;
  }

  shift(samples: number): number {
    if (!Number.isFinite(samples)) throw new TypeError('shift must be a finite number of samples');
    const n = this.slots[0]!.length;
    const before = this.holdSamples;
    // Modulo a frame, as the least hold: a frame cannot go before its last sample is in, and a
    // whole frame more would only add a frame of delay at the same phase.
    this.holdSamples = (((before + Math.round(samples)) % n) + n) % n;
    // A shorter hold: the waiting frame may be due already; else its timer moves.
    this.emitDue();
    this.arm();
    return this.holdSamples - before;
  }

  deliver(pcm: Int16Array, captureTime: number, active: boolean): void {
    if (!(pcm instanceof Int16Array)) throw new TypeError('pcm must be an Int16Array');
    if (!this.onFrame) {
      this.unattached++;
      return;
    }
    // The block's last sample was captured about now: the clock the hold's timer counts from.
    this.blockAt = performance.now();
    const size = this.slots[0]!.length;
    for (let i = 0; i < pcm.length && this.onFrame;) {
      // Up to the end of the frame filling. (Where in a block the waiting frame falls due does not
      // matter: the whole block is handed over at one instant.)
      const n = Math.min(pcm.length - i, size - this.fill);
      this.slots[this.cur]!.set(pcm.subarray(i, i + n), this.fill);
      this.fill += n;
      i += n;
      if (this.waiting) this.since += n;
      if (n > 0) this.slotActive[this.cur] ||= active;
      this.emitDue();
      if (this.fill === size) {
        // Complete: it waits out the hold (the previous one went: its hold is under a frame).
        this.slotTime[this.cur] = captureTime;
        this.waiting = true;
        this.since = 0;
        this.cur ^= 1;
        this.fill = 0;
        this.slotActive[this.cur] = false;
        this.emitDue();
      }
    }
    this.arm();
  }

  /** Hands over the waiting frame once the stream has brought `hold` samples after it. */
  private emitDue(): void {
    if (this.waiting && this.since >= this.holdSamples) this.emit();
  }

  private emit(): void {
    const cb = this.onFrame;
    if (!this.waiting || !cb) return;
    this.waiting = false;
    this.disarm();
    const slot = this.cur ^ 1;
    this.lastCaptureTime = this.slotTime[slot]!;
    cb(this.slots[slot]!, this.slotTime[slot]!, this.slotActive[slot]!);
  }

  /** A frame still waits: send it when the device captures its last sample of hold (48 a ms). */
  private arm(): void {
    this.disarm();
    if (!this.waiting || !this.onFrame) return;
    const dueAt = this.blockAt + (this.holdSamples - this.since) / 48;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        try {
          this.emit();
        } catch {
          // The sender reports its own failures; this only keeps a throw off the event loop.
          this.timerErrors++;
        }
      },
      Math.max(0, dueAt - performance.now()),
    );
  }

  private disarm(): void {
    if (this.timer === null) return;
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Not used: the sender never polls a clocked source. */
  read(_out: Int16Array, _now: number): boolean {
    return false;
  }
}
