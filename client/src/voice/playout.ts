import { VoiceFlags, createRedBlock, readRedBlock } from '@voice/protocol';
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
import { SourcePlayouts, type SourcePlayoutsStats } from './source-playouts.js';
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
   * 'timer' (default): a drift-free Ticker pulls one frame per frame period (10 ms with `sources`,
   * so each source starts within 10 ms of its packet being due). 'pull': nothing runs by
   * itself; a sound card's callback calls `pull()` (the desktop app).
   */
  readonly clock?: 'timer' | 'pull';
  readonly onPlayout?: PlayoutHook;
  /**
   * Speakers received as STREAM packets and mixed here, at most this many at once (the granted
   * `streams`, protocol README 8.8); 0 or 1 (default): the server mixes, STREAM packets are refused.
   */
  readonly sources?: number;
  /** The clock (ms) frames are produced at; default performance.now (tests drive a virtual one). */
  readonly now?: () => number;
  /**
   * RED was negotiated (Welcome.red, protocol README 9.1): a packet with the RED flag carries the
   * previous frame too. False (default): the flag is ignored, as section 11 asks of unknown bits.
   */
  readonly red?: boolean;
  /** Called once, when the first frame of audio (decoded, or rebuilt from FEC) plays. */
  readonly onAudible?: () => void;
  /** Errors from decoding or the hook (counted either way). */
  readonly onError?: (err: unknown) => void;
}

/**
 * Every field is a number (callers diff two snapshots). With sources (STREAM), the totals (accepted
 * ... decodeErrors) count the mix and every source together; the jitter figures are the mix's, or
 * while sources play and the mix does not, those of the source buffering the most. Per-source
 * figures: `Playout.sourceStats()`.
 */
export interface PlayoutStats {
  /** Packets accepted into a jitter buffer (AUDIO, and STREAM of every source). */
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
  /** Frames whose packet was lost, played from the copy the next packet carried (RED; in framesPlayed). */
  redRecovered: number;
  /** RED packets dropped because their block was malformed (in `invalid`). */
  redMalformed: number;
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
 * STREAM packets go to one FramePlayout per speaker (SourcePlayouts), added into each pull.
 *
 * Pull-driven, as NetEq's GetAudio: `pull(out)` returns the next `out.length` samples of playout,
 * any length (a sound card's 10 ms period, or one frame); decoded frames not yet pulled wait in a
 * one-frame FIFO. With `clock: 'timer'` a drift-free Ticker pulls once per period, after the
 * event loop has read pending packets (a timer fires before I/O is polled: pulling at once would
 * underrun on every hiccup of this process), and appends it to the recording with its due time.
 */
export class Playout {
  readonly frameMs: number;
  readonly frameSamples: number;
  readonly stream: FramePlayout;
  /** The speakers received as STREAM packets (null unless granted 2 or more). */
  readonly sources: SourcePlayouts | null;
  private readonly now: () => number;
  private readonly frame: Int16Array;
  private fifoPos: number;
  /** Whether the frame in the FIFO is sound (not silence, not an error's zeros). */
  private frameHeard = false;
  /** The timer path's period, ms: 10 with stream sources (each starts within 10 ms), else a frame. */
  readonly periodMs: number;
  private skippedSamples = 0;
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
  private readonly red: boolean;
  private readonly redBlock = createRedBlock();
  private readonly s = {
    accepted: 0,
    late: 0,
    duplicates: 0,
    invalid: 0,
    redMalformed: 0,
    /** Frames in which nothing was heard (the mix and every source silent). */
    framesSilent: 0,
  };

  constructor(options: PlayoutOptions) {
    this.frameMs = options.frameMs;
    this.frameSamples = (SAMPLE_RATE / 1000) * options.frameMs;
    this.stream = new FramePlayout({
      frameSamples: this.frameSamples,
      decoder: options.opus.createDecoder({ frameSamples: this.frameSamples }),
      jitter: { marginMs: PLAYOUT_MARGIN_MS, dropLateCopies: true, ...options.jitter },
      // Excess delay in speech goes by whole pitch periods, the FEC look-ahead grows the same way.
      timeStretch: options.timeStretch ?? true,
      ...(options.drainConcealFrames !== undefined ? { drainConcealFrames: options.drainConcealFrames } : {}),
    });
    this.now = options.now ?? (() => performance.now());
    this.red = options.red === true;
    const sources = options.sources ?? 0;
    this.sources =
      sources >= 2
        ? new SourcePlayouts({
            max: sources,
            frameSamples: this.frameSamples,
            opus: options.opus,
            // The same settings as the mix: a source is played exactly as a forwarded AUDIO stream.
            jitter: { marginMs: PLAYOUT_MARGIN_MS, dropLateCopies: true, ...options.jitter },
            timeStretch: options.timeStretch ?? true,
            red: this.red,
            ...(options.drainConcealFrames !== undefined
              ? { drainConcealFrames: options.drainConcealFrames }
              : {}),
          })
        : null;
    this.frame = new Int16Array(this.frameSamples);
    // With sources, a finer tick lets each start at its own phase (SourcePlayouts.addInto).
    this.periodMs = this.sources && options.frameMs > 10 ? 10 : options.frameMs;
    this.tickOut = new Int16Array((SAMPLE_RATE / 1000) * this.periodMs);
    this.fifoPos = this.frameSamples; // empty
    this.recording = options.recording;
    this.onPlayout = options.onPlayout;
    this.onAudible = options.onAudible;
    this.onError = options.onError;
    this.ticker =
      (options.clock ?? 'timer') === 'timer'
        ? new Ticker({
            periodMs: this.periodMs,
            // Replay up to 1 s of missed ticks rather than skip them: every tick is a period of the recording.
            maxLatePeriods: Math.ceil(1000 / this.periodMs),
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
    this.origin = this.now();
    this.ticker.start();
  }

  /**
   * Stores one opened AUDIO payload; `timestamp` and `flags` are the header's. With RED negotiated, a
   * RED packet's block is split (its copy fills the frame before when that one is missing); a
   * malformed block drops the packet (counted).
   */
  insert(timestamp: number, payload: Uint8Array, length: number, now: number, flags = 0): JitterInsertResult {
    let r: JitterInsertResult;
    if (this.red && (flags & VoiceFlags.RED) !== 0) {
      const b = this.redBlock;
      if (!readRedBlock(payload, 0, length, b)) {
        this.s.redMalformed++;
        this.s.invalid++;
        return JitterInsert.INVALID;
      }
      r = this.stream.insertRedTimestamp(timestamp, payload, b, now);
    } else r = this.stream.insertTimestamp(timestamp, payload, length, now);
    if (r === JitterInsert.ACCEPTED) this.s.accepted++;
    else if (r === JitterInsert.LATE) this.s.late++;
    else if (r === JitterInsert.DUPLICATE) this.s.duplicates++;
    else this.s.invalid++;
    return r;
  }

  /**
   * Stores one opened STREAM payload (source, then Opus; protocol README 8.8) with its header's
   * timestamp and flags. Returns the jitter buffer's verdict, or -1 when refused (no streams were
   * granted, a bad source, or every source playout busy: counted in `stats().sources`).
   */
  insertStream(payload: Uint8Array, length: number, timestamp: number, flags: number, now: number): number {
    if (!this.sources) {
      this.s.invalid++;
      return -1;
    }
    return this.sources.insert(payload, length, timestamp, flags, now);
  }

  /**
   * Fills `out` with the next `out.length` samples of playout (48 kHz mono) and returns that count.
   * `playTime` (performance.now() ms, default now) is when the first sample plays: it goes to the
   * recording and to `onPlayout`. Never throws for bad audio: decode errors play silence.
   */
  pull(out: Int16Array, playTime: number = this.now()): number {
    if (this.closed) {
      out.fill(0);
      return out.length;
    }
    const n = this.frameSamples;
    let i = 0;
    let mixHeard = false;
    while (i < out.length) {
      if (this.fifoPos === n) {
        // The jitter buffer judges the delay at the time the frame plays, not when this runs: a
        // late pull (this process stalled) must not look like an excess to drop.
        const now = this.now();
        this.produce(now, Math.max(0, now - (playTime + i / 48)));
        this.fifoPos = 0;
      }
      mixHeard ||= this.frameHeard;
      const take = Math.min(n - this.fifoPos, out.length - i);
      // A loop, not set(subarray()): a view would allocate per pull.
      for (let j = 0; j < take; j++) out[i + j] = this.frame[this.fifoPos + j]!;
      this.fifoPos += take;
      i += take;
    }
    if (this.sources) {
      this.sources.addInto(out, this.now(), playTime, mixHeard);
      if (this.sources.audible) this.heardAudio();
    }
    if (this.deaf) out.fill(0);
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

  /** The mix stream's next frame into the FIFO (the sources are added per pull, at their own phases). */
  private produce(now: number, lateMs: number): void {
    const kind = this.stream.next(now, this.frame, lateMs);
    if (kind === PlayoutFrame.ERROR) this.onError?.(new Error('audio frame could not be decoded'));
    this.frameHeard = kind !== PlayoutFrame.SILENT && kind !== PlayoutFrame.ERROR;
    if (kind === PlayoutFrame.SILENT && (this.sources?.active ?? 0) === 0) this.s.framesSilent++;
    if (kind === PlayoutFrame.DECODED || kind === PlayoutFrame.FEC) this.heardAudio();
  }

  /** The first audio (decoded, or rebuilt from FEC) is playing: ends a handover's hold. */
  private heardAudio(): void {
    if (!this.audible) {
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
      const samples = t.skipped * this.tickOut.length;
      this.skippedSamples += samples;
      // Held (a handover): the previous session records this stretch, as it plays it.
      if (!this.held) this.recording?.append(null, samples, due - t.skipped * this.periodMs);
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
    // A stream waits for its packet only when the FIFO cannot cover the tick's samples.
    const need = this.tickOut.length;
    while (this.qLen > 0 && !this.closed) {
      const i = this.qHead;
      const now = performance.now();
      if (
        !force &&
        ((jb.playing && !jb.headReady && jb.buffered === 0 && this.frameSamples - this.fifoPos < need) ||
          this.sources?.waiting(need) === true) &&
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
    const mixJitter = this.stream.jitter;
    // While sources play and the mix does not, the figures of what is heard are the sources'.
    const lead = (!mixJitter.playing && this.sources?.deepest()) || mixJitter;
    const j = lead.stats();
    const p = this.stream.stats();
    const t = this.sources?.totals();
    return {
      ...this.s,
      framesSkipped: Math.floor(this.skippedSamples / this.frameSamples),
      accepted: this.s.accepted + (t?.accepted ?? 0),
      late: this.s.late + (t?.late ?? 0),
      duplicates: this.s.duplicates + (t?.duplicates ?? 0),
      invalid: this.s.invalid + (t?.invalid ?? 0),
      framesPlayed: p.decoded + (t?.decoded ?? 0),
      framesConcealed: p.concealed + p.fecRecovered + (t ? t.concealed + t.fecRecovered : 0),
      fecRecovered: p.fecRecovered + (t?.fecRecovered ?? 0),
      redRecovered: p.redRecovered + (t?.redRecovered ?? 0),
      redMalformed: this.s.redMalformed + (t?.redMalformed ?? 0),
      framesExpanded: p.expanded + (t?.expanded ?? 0),
      underruns: p.underruns + (t?.underruns ?? 0),
      decodeErrors: p.decodeErrors + (t?.decodeErrors ?? 0),
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

  /** The speakers received as separate streams (null when none were granted). */
  sourceStats(): SourcePlayoutsStats | null {
    return this.sources?.stats() ?? null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ticker?.close();
    this.stream.close();
    this.sources?.close();
  }
}
