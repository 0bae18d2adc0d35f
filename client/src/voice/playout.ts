import {
  FramePlayout,
  JitterInsert,
  PlayoutFrame,
  Ticker,
  type JitterBufferOptions,
  type JitterInsertResult,
  type OpusFactory,
  type Tick,
} from '@voice/media';
import type { Recording } from './recording.js';
import { SAMPLE_RATE } from './sources.js';

/** Called once per played frame with the audio (valid during the call only) and its play time. */
export type PlayoutHook = (pcm: Int16Array, samples: number, playTime: number) => void;

/** Phase margin of the client's jitter buffer, ms (see JitterBufferOptions.marginMs). */
export const PLAYOUT_MARGIN_MS = 3;
/**
 * A timer tick that fires this late (ms) found this process stalled; the packets it is due to
 * play were held up by the same stall (here, or in a sender on this machine). It waits for them up
 * to STALL_WAIT_MS (as long as a sender on this machine keeps time through a stall, see Sender)
 * instead of concealing a frame that is about to arrive.
 */
const STALL_LATENESS_MS = 4;
const STALL_WAIT_MS = 250;
/**
 * An on-time tick may complete this long (ms) after its due time when its packet is not there
 * yet, as a sound card's buffer would let a pull run late: the recording keeps the due time, so
 * the audio's timeline is unchanged; only a packet later than this underruns.
 */
const TIMER_GRACE_MS = 8;

export interface PlayoutOptions {
  readonly frameMs: 10 | 20;
  readonly opus: OpusFactory;
  /** Overrides for the jitter buffer (frameMs is always the stream's). */
  readonly jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  readonly recording: Recording | null;
  /** Frames concealed when the buffer runs dry right after audio (default 2; see FramePlayout). */
  /** Time-scale modification in the playout (FramePlayoutOptions.timeStretch). Default true. */
  readonly timeStretch?: boolean;
  readonly drainConcealFrames?: number;
  /**
   * 'timer' (default): a drift-free Ticker pulls one frame per frame period. 'pull': nothing runs by
   * itself; a sound card's callback calls `pull()` (the desktop app).
   */
  readonly clock?: 'timer' | 'pull';
  readonly onPlayout?: PlayoutHook;
  /** Called once, when the first frame of audio (decoded, or rebuilt from FEC) plays. */
  readonly onAudible?: () => void;
  /** Errors from decoding or the hook (counted either way). */
  readonly onError?: (err: unknown) => void;
}

export interface PlayoutStats {
  /** AUDIO packets accepted into the jitter buffer. */
  accepted: number;
  late: number;
  duplicates: number;
  invalid: number;
  /** Frames decoded from a packet. */
  framesPlayed: number;
  /** Concealed frames: lost without FEC, a dry buffer right after audio, or growth for FEC look-ahead. */
  framesConcealed: number;
  /** Lost frames rebuilt from the next packet's in-band FEC. */
  fecRecovered: number;
  /** Of the concealed frames, those inserted to grow the buffer for FEC look-ahead. */
  framesExpanded: number;
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
  /** Playout delay beyond the earliest arrival at the last frame, and its target, ms. */
  delayMs: number;
  targetDelayMs: number;
  delayP95Ms: number;
  drains: number;
  resets: number;
  overflowDrops: number;
  staleDrops: number;
  /** Timer ticks that waited for their packet (within the grace, or late after a stall). */
  stallWaits: number;
}

/**
 * The receive side of one voice session: server AUDIO packets go into the shared FramePlayout
 * (media/: jitter buffer, decode, FEC, concealment), keyed by the header timestamp (the server's
 * sequence counter also advances for HELLO_ACK/HEARTBEAT_ACK, so it does not number audio frames).
 *
 * Pull-driven, as NetEq's GetAudio: `pull(out)` returns the next `out.length` samples of playout,
 * any length (a sound card's 10 ms period, or one frame); decoded frames not yet pulled wait in a
 * one-frame FIFO. With `clock: 'timer'` a drift-free Ticker pulls one frame per period, after the
 * event loop has read pending packets (a timer fires before I/O is polled: pulling at once would
 * underrun on every hiccup of this process), and appends it to the recording with its due time.
 */
export class Playout {
  readonly frameMs: number;
  readonly frameSamples: number;
  readonly stream: FramePlayout;
  private readonly frame: Int16Array;
  private fifoPos: number;
  private readonly ticker: Ticker | null;
  private readonly recording: Recording | null;
  private readonly onPlayout: PlayoutHook | undefined;
  private readonly onError: ((err: unknown) => void) | undefined;
  private origin = 0;
  private closed = false;
  /**
   * Timer ticks waiting to pull (after the event loop has read I/O): due time, whether the tick came
   * late, when it was queued. A ring: a stall's replayed ticks queue up behind a waiting one.
   */
  private readonly qDue = new Float64Array(64);
  private readonly qLate = new Uint8Array(64);
  private readonly qAt = new Float64Array(64);
  private qHead = 0;
  private qLen = 0;
  private qScheduled = false;
  private waitedTick = -1;
  /** Ticks that waited for their packet (within the grace, or late after a stall). */
  private stallWaits = 0;
  private readonly runPending = (): void => {
    this.qScheduled = false;
    this.flushTicks();
  };
  private readonly tickOut: Int16Array;
  /** Play silence whatever arrives (self-deafened). */
  deaf = false;
  /**
   * Pulled frames go neither to the recording nor to `onPlayout` (a handover: the previous
   * session's playout is what is heard until this one has audio).
   */
  held = false;
  private audible = false;
  private readonly onAudible: (() => void) | undefined;
  private readonly s = {
    accepted: 0,
    late: 0,
    duplicates: 0,
    invalid: 0,
    framesSkipped: 0,
  };

  constructor(options: PlayoutOptions) {
    this.frameMs = options.frameMs;
    this.frameSamples = (SAMPLE_RATE / 1000) * options.frameMs;
    this.stream = new FramePlayout({
      frameSamples: this.frameSamples,
      decoder: options.opus.createDecoder({ frameSamples: this.frameSamples }),
      jitter: { marginMs: PLAYOUT_MARGIN_MS, ...options.jitter },
      // Excess delay in speech goes by whole pitch periods, the FEC look-ahead grows the same way.
      timeStretch: options.timeStretch ?? true,
      ...(options.drainConcealFrames !== undefined ? { drainConcealFrames: options.drainConcealFrames } : {}),
    });
    this.frame = new Int16Array(this.frameSamples);
    this.tickOut = new Int16Array(this.frameSamples);
    this.fifoPos = this.frameSamples; // empty
    this.recording = options.recording;
    this.onPlayout = options.onPlayout;
    this.onAudible = options.onAudible;
    this.onError = options.onError;
    this.ticker =
      (options.clock ?? 'timer') === 'timer'
        ? new Ticker({
            periodMs: options.frameMs,
            // Replay up to 1 s of missed ticks rather than skip them: every tick is a frame of the recording.
            maxLatePeriods: Math.ceil(1000 / options.frameMs),
            onTick: (t) => this.tick(t),
            onError: (err) => this.onError?.(err),
          })
        : null;
  }

  /** Whether audio (not silence or concealment) has played yet. */
  get hasPlayedAudio(): boolean {
    return this.audible;
  }

  /** The jitter buffer (its stats and settings). */
  get jitter(): FramePlayout['jitter'] {
    return this.stream.jitter;
  }

  start(): void {
    if (this.closed || !this.ticker || this.ticker.running) return;
    this.origin = performance.now();
    this.ticker.start();
  }

  /** Stores one opened AUDIO payload; `timestamp` is the header's (uint32 sample position). */
  insert(timestamp: number, payload: Uint8Array, length: number, now: number): JitterInsertResult {
    const r = this.stream.insertTimestamp(timestamp, payload, length, now);
    if (r === JitterInsert.ACCEPTED) this.s.accepted++;
    else if (r === JitterInsert.LATE) this.s.late++;
    else if (r === JitterInsert.DUPLICATE) this.s.duplicates++;
    else this.s.invalid++;
    return r;
  }

  /**
   * Fills `out` with the next `out.length` samples of playout (48 kHz mono) and returns that count.
   * `playTime` (performance.now() ms, default now) is when the first sample plays: it goes to the
   * recording and to `onPlayout`. Never throws for bad audio: decode errors play silence.
   */
  pull(out: Int16Array, playTime: number = performance.now()): number {
    if (this.closed) {
      out.fill(0);
      return out.length;
    }
    const n = this.frameSamples;
    let i = 0;
    while (i < out.length) {
      if (this.fifoPos === n) {
        // The jitter buffer judges the delay at the time the frame plays, not when this runs: a
        // late pull (this process stalled) must not look like an excess to drop.
        const now = performance.now();
        this.produce(now, Math.max(0, now - (playTime + i / 48)));
        this.fifoPos = 0;
      }
      const take = Math.min(n - this.fifoPos, out.length - i);
      out.set(this.frame.subarray(this.fifoPos, this.fifoPos + take), i);
      this.fifoPos += take;
      i += take;
    }
    if (this.held) return out.length;
    this.recording?.append(out, out.length, playTime);
    if (this.onPlayout) {
      try {
        this.onPlayout(out, out.length, playTime);
      } catch (err) {
        this.onError?.(err);
      }
    }
    return out.length;
  }

  private produce(now: number, lateMs: number): void {
    const kind = this.stream.next(now, this.frame, lateMs);
    if (kind === PlayoutFrame.ERROR) this.onError?.(new Error('audio frame could not be decoded'));
    if (this.deaf) this.frame.fill(0);
    if (!this.audible && (kind === PlayoutFrame.DECODED || kind === PlayoutFrame.FEC)) {
      this.audible = true;
      try {
        this.onAudible?.();
      } catch (err) {
        this.onError?.(err);
      }
    }
  }

  private tick(t: Tick): void {
    const due = this.origin + t.dueMs;
    if (t.skipped > 0) {
      this.flushTicks(true);
      this.s.framesSkipped += t.skipped;
      // Held (a handover): the previous session records this stretch, as it plays it.
      if (!this.held)
        this.recording?.append(null, t.skipped * this.frameSamples, due - t.skipped * this.frameMs);
    }
    if (this.qLen === this.qDue.length) this.flushTicks(true);
    const i = (this.qHead + this.qLen) % this.qDue.length;
    this.qDue[i] = due;
    this.qLate[i] = t.latenessMs > STALL_LATENESS_MS ? 1 : 0;
    this.qAt[i] = performance.now();
    this.qLen++;
    if (!this.qScheduled) {
      this.qScheduled = true;
      setImmediate(this.runPending);
    }
  }

  /** Pulls the queued ticks in order; a late one waits (briefly) for a packet the stall held up. */
  private flushTicks(force = false): void {
    const jb = this.stream.jitter;
    while (this.qLen > 0 && !this.closed) {
      const i = this.qHead;
      const now = performance.now();
      if (
        !force &&
        jb.playing &&
        !jb.headReady &&
        jb.buffered === 0 &&
        (this.qLate[i] === 1 ? now - this.qAt[i]! < STALL_WAIT_MS : now - this.qDue[i]! < TIMER_GRACE_MS)
      ) {
        if (this.waitedTick !== i) {
          this.waitedTick = i;
          this.stallWaits++;
        }
        if (!this.qScheduled) {
          this.qScheduled = true;
          setTimeout(this.runPending, 1);
        }
        return;
      }
      this.waitedTick = -1;
      this.qHead = (i + 1) % this.qDue.length;
      this.qLen--;
      this.pull(this.tickOut, this.qDue[i]);
    }
  }

  stats(): PlayoutStats {
    const j = this.stream.jitter.stats();
    const p = this.stream.stats();
    return {
      ...this.s,
      framesPlayed: p.decoded,
      framesConcealed: p.concealed + p.fecRecovered,
      fecRecovered: p.fecRecovered,
      framesExpanded: p.expanded,
      underruns: p.underruns,
      framesSilent: p.silent,
      decodeErrors: p.decodeErrors,
      jitterMs: j.jitterMs,
      bufferMs: j.depth * this.frameMs,
      targetMs: j.target * this.frameMs,
      delayMs: j.delayMs,
      targetDelayMs: j.targetDelayMs,
      delayP95Ms: j.delayPercentileMs,
      drains: j.drains,
      resets: j.resets,
      overflowDrops: j.overflowDrops,
      staleDrops: j.staleDrops,
      stallWaits: this.stallWaits,
    };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ticker?.close();
    this.stream.close();
  }
}
