import {
  JitterBuffer,
  JitterInsert,
  JitterPop,
  OPUS_MAX_PACKET_SAMPLES,
  Ticker,
  type JitterBufferOptions,
  type JitterInsertResult,
  type OpusDecoder,
  type OpusFactory,
  type Tick,
} from '@voice/media';
import type { Recording } from './recording.js';
import { SAMPLE_RATE } from './sources.js';

const UINT32 = 0x1_0000_0000;

/** Called once per played frame with the audio (valid during the call only) and its play time. */
export type PlayoutHook = (pcm: Int16Array, samples: number, playTime: number) => void;

export interface PlayoutOptions {
  readonly frameMs: 10 | 20;
  readonly opus: OpusFactory;
  /** Overrides for the jitter buffer (frameMs is always the stream's). */
  readonly jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  readonly recording: Recording | null;
  /**
   * When the buffer runs dry right after playing a frame, conceal this many frames before going
   * silent (default 2), as NetEq's expand does: the receiver cannot tell a late or lost packet from
   * the end of a talkspurt, and a concealed frame sounds better than a hole in speech, while after a
   * real talkspurt end libopus fades the concealment out at once.
   */
  readonly drainConcealFrames?: number;
  readonly onPlayout?: PlayoutHook;
  /** Errors from decoding or the hook (counted either way). */
  readonly onError?: (err: unknown) => void;
}

export interface PlayoutStats {
  /** AUDIO packets accepted into the jitter buffer. */
  accepted: number;
  late: number;
  duplicates: number;
  invalid: number;
  /** Frames played from a packet, concealed, or as silence (buffer empty). */
  framesPlayed: number;
  /** Concealed frames: a hole before a buffered packet, or a dry buffer right after audio (see drainConcealFrames). */
  framesConcealed: number;
  /** Times the buffer ran dry right after playing audio (talkspurt ends, and late or lost packets). */
  underruns: number;
  framesSilent: number;
  /** Frames appended as silence because the playout clock skipped ticks. */
  framesSkipped: number;
  decodeErrors: number;
  /** Jitter buffer figures. */
  jitterMs: number;
  bufferMs: number;
  targetMs: number;
  delayP95Ms: number;
  drains: number;
  resets: number;
  overflowDrops: number;
}

/**
 * The receive side of one voice session: server AUDIO packets go into an adaptive JitterBuffer; a
 * drift-free Ticker at the frame period pops one frame per tick and decodes it (PACKET), conceals it
 * (MISSING) or plays silence (EMPTY), then appends it to the recording with the time it was due.
 *
 * The buffer is keyed by the header timestamp in frames, not by the sequence number: the server's
 * sequence counter also advances for the HELLO_ACK/HEARTBEAT_ACK packets it sends on the same session,
 * so sequence gaps do not mean missing audio frames. Timestamps are unwrapped (serial arithmetic) first,
 * because 2^32 is not a multiple of the frame size.
 */
export class Playout {
  readonly frameMs: number;
  readonly frameSamples: number;
  readonly jitter: JitterBuffer;
  private readonly decoder: OpusDecoder;
  private readonly pcm = new Int16Array(OPUS_MAX_PACKET_SAMPLES);
  private readonly ticker: Ticker;
  private readonly recording: Recording | null;
  private readonly onPlayout: PlayoutHook | undefined;
  private readonly onError: ((err: unknown) => void) | undefined;
  private origin = 0;
  private tsRaw = 0;
  private tsExt = Number.NaN;
  private closed = false;
  private readonly drainConceal: number;
  /** Frames concealed since the buffer ran dry; -1 while not right after audio. */
  private drained = -1;
  /** Play silence whatever arrives (self-deafened). */
  deaf = false;
  private readonly s = {
    accepted: 0,
    late: 0,
    duplicates: 0,
    invalid: 0,
    framesPlayed: 0,
    framesConcealed: 0,
    underruns: 0,
    framesSilent: 0,
    framesSkipped: 0,
    decodeErrors: 0,
  };

  constructor(options: PlayoutOptions) {
    this.frameMs = options.frameMs;
    this.frameSamples = (SAMPLE_RATE / 1000) * options.frameMs;
    this.jitter = new JitterBuffer({ ...options.jitter, frameMs: options.frameMs });
    this.decoder = options.opus.createDecoder({ frameSamples: this.frameSamples });
    this.recording = options.recording;
    this.drainConceal = options.drainConcealFrames ?? 2;
    if (!Number.isInteger(this.drainConceal) || this.drainConceal < 0) {
      throw new TypeError('drainConcealFrames must be an integer >= 0');
    }
    this.onPlayout = options.onPlayout;
    this.onError = options.onError;
    this.ticker = new Ticker({
      periodMs: options.frameMs,
      // Replay up to 1 s of missed ticks rather than skip them: every tick is a frame of the recording.
      maxLatePeriods: Math.ceil(1000 / options.frameMs),
      onTick: (t) => this.tick(t),
      onError: (err) => this.onError?.(err),
    });
  }

  start(): void {
    if (this.closed || this.ticker.running) return;
    this.origin = performance.now();
    this.ticker.start();
  }

  /** Stores one opened AUDIO payload; `timestamp` is the header's (uint32 sample position). */
  insert(timestamp: number, payload: Uint8Array, length: number, now: number): JitterInsertResult {
    if (Number.isNaN(this.tsExt)) {
      this.tsExt = timestamp;
      this.tsRaw = timestamp;
    }
    const ext = this.tsExt + ((timestamp - this.tsRaw) | 0);
    if (ext > this.tsExt) {
      this.tsExt = ext;
      this.tsRaw = timestamp;
    }
    const index = Math.round(ext / this.frameSamples) % UINT32;
    const r = this.jitter.insert(index < 0 ? index + UINT32 : index, payload, now, length);
    if (r === JitterInsert.ACCEPTED) this.s.accepted++;
    else if (r === JitterInsert.LATE) this.s.late++;
    else if (r === JitterInsert.DUPLICATE) this.s.duplicates++;
    else this.s.invalid++;
    return r;
  }

  private tick(t: Tick): void {
    const due = this.origin + t.dueMs;
    if (t.skipped > 0) {
      this.s.framesSkipped += t.skipped;
      this.recording?.append(null, t.skipped * this.frameSamples, due - t.skipped * this.frameMs);
    }
    const jb = this.jitter;
    const r = jb.pop(performance.now());
    let n = this.frameSamples;
    const pcm = this.pcm;
    try {
      if (r === JitterPop.PACKET) {
        n = this.decoder.decode(jb.packet, pcm, jb.packetLength);
        this.s.framesPlayed++;
        this.drained = 0;
      } else if (r === JitterPop.MISSING) {
        n = jb.peekNext() ? this.decoder.decodeFec(jb.next, pcm, jb.nextLength) : this.decoder.conceal(pcm);
        this.s.framesConcealed++;
        this.drained = 0;
      } else if (this.drained >= 0 && this.drained < this.drainConceal) {
        if (this.drained === 0) this.s.underruns++;
        this.drained++;
        n = this.decoder.conceal(pcm);
        this.s.framesConcealed++;
      } else {
        if (this.drained === 0) this.s.underruns++;
        this.drained = -1;
        pcm.fill(0, 0, n);
        this.s.framesSilent++;
      }
    } catch (err) {
      this.s.decodeErrors++;
      this.onError?.(err);
      n = this.frameSamples;
      pcm.fill(0, 0, n);
    }
    if (this.deaf) pcm.fill(0, 0, n);
    this.recording?.append(pcm, n, due);
    if (this.onPlayout) {
      try {
        this.onPlayout(pcm, n, due);
      } catch (err) {
        this.onError?.(err);
      }
    }
  }

  stats(): PlayoutStats {
    const j = this.jitter.stats();
    return {
      ...this.s,
      jitterMs: j.jitterMs,
      bufferMs: j.depth * this.frameMs,
      targetMs: j.target * this.frameMs,
      delayP95Ms: j.delayPercentileMs,
      drains: j.drains,
      resets: j.resets,
      overflowDrops: j.overflowDrops,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ticker.close();
    this.decoder.destroy();
  }
}
