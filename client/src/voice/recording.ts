import { SAMPLE_RATE } from './sources.js';

const SAMPLES_PER_MS = SAMPLE_RATE / 1000;

/** What `VoiceClient.recording()` returns: sample `i` was played at `startTime + i / 48` ms. */
export interface RecordingSnapshot {
  readonly samples: Int16Array;
  /** performance.now() at which the first sample was played; NaN while nothing is recorded. */
  readonly startTime: number;
  readonly sampleRate: 48_000;
}

/**
 * The played-out audio as one growable Int16 buffer, with the wall time of its first sample. Frames
 * are appended with the time they were due to play; a frame due later than the end of the recording
 * (skipped ticks, a new voice session) is preceded by silence, so sample index -> play time stays
 * exact. Bounded: past `maxSamples`, the oldest half is discarded and `startTime` moves forward.
 */
export class Recording {
  readonly maxSamples: number;
  private buf: Int16Array;
  private len = 0;
  private start = Number.NaN;
  /** Samples discarded because the recording reached `maxSamples`. */
  discarded = 0;

  constructor(maxSamples: number = 60 * SAMPLE_RATE) {
    if (!Number.isInteger(maxSamples) || maxSamples < SAMPLE_RATE / 10) {
      throw new TypeError('maxSamples must be an integer >= 4800');
    }
    this.maxSamples = maxSamples;
    this.buf = new Int16Array(Math.min(maxSamples, 10 * SAMPLE_RATE));
  }

  get length(): number {
    return this.len;
  }

  get startTime(): number {
    return this.start;
  }

  /** Play time (performance.now() ms) of the sample after the last one recorded. */
  get endTime(): number {
    return this.start + this.len / SAMPLES_PER_MS;
  }

  /** Appends `n` samples of `frame` (zeros when `frame` is null) due to play at `dueTime`. */
  append(frame: Int16Array | null, n: number, dueTime: number): void {
    if (n <= 0) return;
    if (Number.isNaN(this.start)) this.start = dueTime;
    else {
      // A gap of more than half a frame between the end of the recording and this frame is silence.
      const gap = Math.round((dueTime - this.endTime) * SAMPLES_PER_MS);
      if (gap > n / 2) this.fillZeros(Math.min(gap, this.maxSamples));
    }
    this.reserve(n);
    if (frame === null) this.buf.fill(0, this.len, this.len + n);
    else this.buf.set(n === frame.length ? frame : frame.subarray(0, n), this.len);
    this.len += n;
  }

  snapshot(): RecordingSnapshot {
    return { samples: this.buf.slice(0, this.len), startTime: this.start, sampleRate: SAMPLE_RATE };
  }

  clear(): void {
    this.len = 0;
    this.start = Number.NaN;
  }

  private fillZeros(n: number): void {
    this.reserve(n);
    this.buf.fill(0, this.len, this.len + n);
    this.len += n;
  }

  private reserve(n: number): void {
    if (this.len + n > this.maxSamples) {
      // Keep the newest half (at least room for n).
      const keep = Math.max(0, Math.min(this.len, Math.floor(this.maxSamples / 2) - n));
      const drop = this.len - keep;
      this.buf.copyWithin(0, drop, this.len);
      this.len = keep;
      this.start += drop / SAMPLES_PER_MS;
      this.discarded += drop;
    }
    if (this.len + n > this.buf.length) {
      const size = Math.min(this.maxSamples, Math.max(this.len + n, this.buf.length * 2));
      const next = new Int16Array(size);
      next.set(this.buf.subarray(0, this.len));
      this.buf = next;
    }
  }
}

/** One sent AUDIO frame. */
export interface SentFrame {
  /**
   * performance.now() when the source produced the frame, that is when its last sample was captured
   * (see AudioSource.lastCaptureTime): its first sample is one frame older.
   */
  captureTime: number;
  /** performance.now() right after the packet was handed to the transport. */
  sendTime: number;
  /** Index of the frame's first sample in the source's own stream (frames read, including muted ones). */
  sourceSample: number;
  /** Header timestamp (48 kHz sample position, uint32). */
  timestamp: number;
  /** Header sequence number. */
  sequence: number;
  /** MARKER flag set (first packet of a talkspurt). */
  marker: boolean;
}

/**
 * Per sent frame: capture time, send time, source position, timestamp and sequence, in growable typed
 * arrays (no object per packet). Bounded like Recording: past `maxEntries` the oldest half goes.
 */
export class SentLog {
  readonly maxEntries: number;
  private capture: Float64Array;
  private send: Float64Array;
  private source: Float64Array;
  private ts: Uint32Array;
  private seq: Uint32Array;
  private marker: Uint8Array;
  private n = 0;
  /** Entries discarded because the log was full. */
  discarded = 0;

  constructor(maxEntries: number = 6_000) {
    if (!Number.isInteger(maxEntries) || maxEntries < 16)
      throw new TypeError('maxEntries must be an integer >= 16');
    this.maxEntries = maxEntries;
    const size = Math.min(maxEntries, 1024);
    this.capture = new Float64Array(size);
    this.send = new Float64Array(size);
    this.source = new Float64Array(size);
    this.ts = new Uint32Array(size);
    this.seq = new Uint32Array(size);
    this.marker = new Uint8Array(size);
  }

  get length(): number {
    return this.n;
  }

  add(
    captureTime: number,
    sendTime: number,
    sourceSample: number,
    timestamp: number,
    sequence: number,
    marker: boolean,
  ): void {
    if (this.n === this.maxEntries) this.dropOldestHalf();
    if (this.n === this.capture.length) this.grow();
    const i = this.n++;
    this.capture[i] = captureTime;
    this.send[i] = sendTime;
    this.source[i] = sourceSample;
    this.ts[i] = timestamp;
    this.seq[i] = sequence;
    this.marker[i] = marker ? 1 : 0;
  }

  at(i: number): SentFrame | undefined {
    if (!Number.isInteger(i) || i < 0 || i >= this.n) return undefined;
    return {
      captureTime: this.capture[i]!,
      sendTime: this.send[i]!,
      sourceSample: this.source[i]!,
      timestamp: this.ts[i]!,
      sequence: this.seq[i]!,
      marker: this.marker[i] === 1,
    };
  }

  /** The sent frame whose source samples include `sourceSample` (frames are `frameSamples` long). */
  findBySourceSample(sourceSample: number, frameSamples: number): SentFrame | undefined {
    for (let i = 0; i < this.n; i++) {
      const s = this.source[i]!;
      if (sourceSample >= s && sourceSample < s + frameSamples) return this.at(i);
    }
    return undefined;
  }

  toArray(): SentFrame[] {
    const out: SentFrame[] = [];
    for (let i = 0; i < this.n; i++) out.push(this.at(i)!);
    return out;
  }

  clear(): void {
    this.n = 0;
  }

  private grow(): void {
    const size = Math.min(this.maxEntries, this.capture.length * 2);
    const g = <T extends Float64Array | Uint32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.capture = g(this.capture, (k) => new Float64Array(k));
    this.send = g(this.send, (k) => new Float64Array(k));
    this.source = g(this.source, (k) => new Float64Array(k));
    this.ts = g(this.ts, (k) => new Uint32Array(k));
    this.seq = g(this.seq, (k) => new Uint32Array(k));
    this.marker = g(this.marker, (k) => new Uint8Array(k));
  }

  private dropOldestHalf(): void {
    const drop = Math.floor(this.n / 2);
    for (const a of [this.capture, this.send, this.source, this.ts, this.seq, this.marker]) {
      a.copyWithin(0, drop, this.n);
    }
    this.n -= drop;
    this.discarded += drop;
  }
}
