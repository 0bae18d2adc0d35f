import type { RedBlock } from '@voice/protocol';
import type { OpusDecoder } from './codec.js';
import {
  JitterBuffer,
  JitterInsert,
  JitterPop,
  type JitterBufferOptions,
  type JitterInsertResult,
} from './jitter-buffer.js';
import { opusPacketHasLbrr } from './opus-packet.js';
import { TimeStretch, type StretchCounts } from './time-stretch.js';
import { TimestampUnwrapper } from './timestamp.js';

/** A frame whose peak stays below this (-40 dBFS) is quiet: catch-up may drop a frame there unheard. */
const QUIET_PEAK = 328;
/** A look-ahead growth waits this long for a quiet frame (ms), then grows in loud audio anyway. */
const GROW_DEADLINE_MS = 1000;

/** What `FramePlayout.next()` produced. */
export const PlayoutFrame = {
  /** A packet, decoded. */
  DECODED: 0,
  /** A lost frame rebuilt from the next packet's in-band FEC (its LBRR data). */
  FEC: 1,
  /** Loss concealment: a lost frame without FEC, or a dry buffer right after audio. */
  CONCEALED: 2,
  /** Nothing to play: zeros. */
  SILENT: 3,
  /** The packet could not be decoded (corrupt, or another frame size than the stream's): zeros. */
  ERROR: 4,
} as const;
export type PlayoutFrameKind = (typeof PlayoutFrame)[keyof typeof PlayoutFrame];

export interface FramePlayoutOptions {
  /** Samples per frame of the stream (480 or 960 at 48 kHz). */
  readonly frameSamples: number;
  /** The stream's decoder; owned from now on (`close()` destroys it). */
  readonly decoder: OpusDecoder;
  /** Jitter buffer settings; `frameMs` always follows `frameSamples`. */
  readonly jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  /**
   * When the buffer runs dry right after audio, conceal this many frames before going silent
   * (default 2), as NetEq's expand does: a late or lost packet cannot be told from the end of a
   * talkspurt, a concealed frame sounds better than a hole in speech, and after a real end libopus
   * fades the concealment out at once.
   */
  readonly drainConcealFrames?: number;
  /**
   * After a loss on a stream that carries in-band FEC (and a decoder that can decode it), keep one
   * frame of look-ahead for this long (ms, default 10000; 0 never): the packet after a lost one is
   * then buffered when the lost one is due, and rebuilds it.
   */
  readonly fecHoldMs?: number;
  /**
   * Time-scale modification (NetEq's accelerate and preemptive expand, `TimeStretch`): excess delay
   * in loud audio is given back by removing pitch periods instead of dropping a whole frame (and,
   * with `growLookAheadByStretch`, the FEC look-ahead is grown by inserting them). Output passes
   * through a small sync buffer, so `next()` may decode two packets or none (`produced` says which).
   * Default false
   * (the client's playout turns it on; the server's channel members with `clock.timeStretch`).
   */
  readonly timeStretch?: boolean;
  /**
   * With `timeStretch`: grow the FEC look-ahead by inserting pitch periods (preemptive expand)
   * instead of one concealed frame. Default false: on a lossy link with 20 ms of jitter the
   * inserted periods cost the forwarded path about 0.3 of PESQ with FEC (3.18 against 3.46,
   * BENCHMARKS.md "Speech quality"); the look-ahead grows after a loss, where one more concealed
   * frame is heard less than periods spliced into the speech around it.
   */
  readonly growLookAheadByStretch?: boolean;
  /**
   * Grow the look-ahead where it is not heard (default false: at once, as before). At the first loss
   * a late RED copy of a frame the dry buffer concealed is left unplayed (no slip: the next frame
   * plays on time), and the one frame of growth waits for a quiet frame, a pause, or 1 s of loud
   * audio. Losses meanwhile are concealed, not rebuilt: BENCHMARKS.md "Speech quality" has the
   * trade (better at 10 % loss with RED forwarded, worse at 5 %), so it is not on by default yet.
   */
  readonly growLookAheadWhenQuiet?: boolean;
  /**
   * After `skip()` (frames popped without decoding), the next decoding call first decodes this many
   * of the last skipped packets, output discarded (default 2), so the decoder has the history the
   * next packet was coded against: a decoder resumed cold is off for a frame (a click).
   */
  readonly warmFrames?: number;
}

export interface FramePlayoutStats {
  readonly decoded: number;
  /** Lost frames rebuilt from the next packet's FEC: only when that packet carried LBRR data. */
  readonly fecRecovered: number;
  /**
   * Frames whose own packet never came in time, played from the redundant copy (RED) the next packet
   * carried: exactly the lost frame's bytes (also counted in `decoded`, or `skipped` by skip()).
   */
  readonly redRecovered: number;
  /** Frames concealed (lost without FEC, and dry-buffer concealment). */
  readonly concealed: number;
  /** Of `concealed`, frames played because the buffer ran dry right after audio. */
  readonly drainConcealed: number;
  readonly silent: number;
  /** Times the buffer ran dry right after audio (talkspurt ends, and late or lost packets). */
  readonly underruns: number;
  readonly decodeErrors: number;
  /** Frames known lost in a talkspurt (holes, and gaps found after a dry buffer). */
  readonly lost: number;
  /** Packets popped by `skip()`, not decoded. */
  readonly skipped: number;
  /** Skipped packets decoded again to warm the decoder when decoding resumed. */
  readonly warmed: number;
  /** FEC look-ahead frames in use now (0 or 1). */
  readonly lookAhead: number;
  /**
   * Frames inserted to grow the buffer for the look-ahead: concealed after a quiet frame (or after
   * a second of loud audio), or silent in a pause (also counted in `concealed` or `silent`).
   */
  readonly expanded: number;
  /** Pitch periods removed (accelerate) and inserted (preemptive expand), with `timeStretch`. */
  readonly accelerated: number;
  readonly stretchExpanded: number;
  /** Their total length, ms. */
  readonly acceleratedMs: number;
  readonly stretchExpandedMs: number;
}

function isQuiet(pcm: Int16Array, n: number): boolean {
  for (let i = 0; i < n; i++) {
    const v = pcm[i]!;
    if (v > QUIET_PEAK || v < -QUIET_PEAK) return false;
  }
  return true;
}

/**
 * One received Opus stream, from packets to frames: the one decode / FEC / conceal / drain
 * implementation the server (per member) and the client (its playout) share.
 *
 * Packets go into a JitterBuffer keyed by frame index (`insertTimestamp` unwraps header timestamps
 * with the shared TimestampUnwrapper); `next()` is pull-driven (NetEq's GetAudio): each call
 * produces exactly one frame into the caller's array. Rules:
 * - a packet is decoded; a packet of another frame size than the stream's is an ERROR (zeros);
 * - a hole with a newer packet buffered is rebuilt from that packet's in-band FEC when it carries
 *   LBRR data and the decoder can decode it (counted in `fecRecovered`), otherwise concealed;
 * - a dry buffer right after audio conceals `drainConcealFrames` frames, then plays silence;
 * - once a loss is seen on a stream that carries FEC, one frame of look-ahead is kept for
 *   `fecHoldMs`, so the next lost frame finds its successor buffered;
 * - a single frame of excess delay is dropped only after a quiet frame (see JitterBuffer.quiet).
 * Nothing is allocated per frame.
 */
export class FramePlayout {
  readonly frameSamples: number;
  readonly frameMs: number;
  readonly jitter: JitterBuffer;
  readonly decoder: OpusDecoder;
  readonly #unwrap = new TimestampUnwrapper();
  readonly #drainConceal: number;
  readonly #fecHoldMs: number;
  /** Frames concealed since the buffer ran dry; -1 while not right after audio. */
  #drained = -1;
  /** Frame index of the last packet played (decoded), -1 before any. */
  #lastSeq = -1;
  #lastLossAt = Number.NEGATIVE_INFINITY;
  #fecSeen = false;
  /** The stream carries redundant copies (RED): after a loss, look ahead one frame as for FEC. */
  #redSeen = false;
  /**
   * When the last redundant copy arrived. A stream that carries RED keeps the look-ahead while
   * copies keep coming (for `fecHoldMs` after the last): a sender sends RED because its link loses
   * packets, and the look-ahead already in place when the next talkspurt starts costs nothing,
   * where growing it at the first loss inserts a concealed frame mid-word (a slip).
   */
  #redAt = Number.NEGATIVE_INFINITY;
  #red = 0;
  #jbLost = 0;
  /**
   * The look-ahead was just turned on: grow the buffer by one concealed frame after the next quiet
   * frame (or at `#expandSince` + GROW_DEADLINE_MS): a frame inserted mid-word is a slip.
   */
  #expandPending = false;
  #expandSince = 0;
  #expanded = 0;
  #closed = false;
  readonly #stretch: TimeStretch | null;
  readonly #growByStretch: boolean;
  readonly #growQuiet: boolean;
  /** Decoded audio not played yet (with timeStretch): what the splices work on. */
  readonly #sync: Int16Array;
  #syncLen = 0;
  readonly #scratch: Int16Array;
  /** Samples still to insert by preemptive expand (the look-ahead's growth). */
  #growSamples = 0;
  #lastKind: PlayoutFrameKind = PlayoutFrame.SILENT;
  /**
   * Frames produced (decoded, rebuilt, concealed or silent) by the last `next()`: always 1 without
   * timeStretch. With it, 0 when the sync buffer already held a frame (after a preemptive expand:
   * the frame returned is audio decoded earlier, and `next()` repeats the kind it last produced),
   * or 2 or more when acceleration brought the next packets' turn forward (all but the last
   * DECODED; `packet` is the last one's).
   */
  produced = 0;
  /**
   * Where the audio of the last decoded packet starts, in samples after the start of the frame
   * `next()` returned when it was decoded: 0 without timeStretch; with it, what the sync buffer
   * held before it (past the frame's end when acceleration decoded it ahead).
   */
  packetOffset = 0;
  #decoded = 0;
  #fec = 0;
  #concealed = 0;
  #drainConcealed = 0;
  #silent = 0;
  #underruns = 0;
  #errors = 0;
  #lost = 0;
  #skipped = 0;
  #warmed = 0;
  /** The last skipped packets, oldest first (a ring of `warmFrames`), to warm the decoder with. */
  readonly #history: Uint8Array[];
  readonly #historyLen: Int32Array;
  #historyN = 0;
  #historyAt = 0;
  /** Frames were skipped since the last decode: the decoder's state is stale. */
  #stale = false;
  /** Where warming (and skip) put the audio nobody plays. */
  readonly #warmOut: Int16Array;

  constructor(options: FramePlayoutOptions) {
    const { frameSamples, decoder, drainConcealFrames = 2, fecHoldMs = 10_000 } = options;
    if (!Number.isInteger(frameSamples) || frameSamples < 120 || frameSamples > 2880)
      throw new TypeError('frameSamples must be an Opus frame size (120..2880)');
    if (!Number.isInteger(drainConcealFrames) || drainConcealFrames < 0)
      throw new TypeError('drainConcealFrames must be an integer >= 0');
    if (!(fecHoldMs >= 0)) throw new TypeError('fecHoldMs must be >= 0');
    this.frameSamples = frameSamples;
    this.frameMs = frameSamples / 48;
    this.decoder = decoder;
    this.#drainConceal = drainConcealFrames;
    this.#fecHoldMs = fecHoldMs;
    const timeStretch = options.timeStretch ?? false;
    this.jitter = new JitterBuffer({ ...options.jitter, frameMs: this.frameMs, timeStretch });
    // Periods up to 15 ms, or the frame at 10 ms frames (two periods must fit the region).
    this.#stretch = timeStretch ? new TimeStretch({ maxPeriod: Math.min(720, frameSamples) }) : null;
    this.#growByStretch = options.growLookAheadByStretch === true;
    this.#growQuiet = options.growLookAheadWhenQuiet === true;
    this.#sync = new Int16Array(timeStretch ? 3 * frameSamples + 720 : 0);
    this.#scratch = new Int16Array(timeStretch ? frameSamples : 0);
    const warm = options.warmFrames ?? 2;
    if (!Number.isInteger(warm) || warm < 0 || warm > 8) throw new TypeError('warmFrames must be 0..8');
    this.#history = Array.from({ length: warm }, () => new Uint8Array(this.jitter.maxPacketBytes));
    this.#historyLen = new Int32Array(warm);
    this.#warmOut = new Int16Array(frameSamples);
  }

  /**
   * Plays the next frame without decoding it (nobody hears this stream's audio now): the buffer,
   * its delay, loss and drain bookkeeping advance exactly as `next()` would, and the kind returned
   * is the one `next()` would have produced. Allocates nothing. Not with timeStretch (its splices
   * need the audio): TypeError.
   */
  skip(nowMs: number, lateMs = 0): PlayoutFrameKind {
    if (this.#stretch) throw new TypeError('skip() needs a playout without timeStretch');
    this.produced = 1;
    return this.#produce(nowMs, this.#warmOut, lateMs, false);
  }

  /** Whether the decoder missed frames (`skip()`): the next `next()` warms it first. */
  get stale(): boolean {
    return this.#stale;
  }

  /** Decodes the remembered skipped packets (output discarded) before decoding resumes. */
  #warm(): void {
    this.#stale = false;
    const dec = this.decoder;
    // From a clean state: what it held is frames old and would not match the history either.
    dec.reset();
    const n = this.#historyN;
    const size = this.#history.length;
    for (let i = 0; i < n; i++) {
      const slot = (this.#historyAt - n + i + size) % size;
      try {
        dec.decode(this.#history[slot]!, this.#warmOut, this.#historyLen[slot]);
        this.#warmed++;
      } catch {
        break; // a corrupt packet: the decode that follows reports its own error
      }
    }
    this.#historyN = 0;
  }

  #remember(packet: Uint8Array, length: number): void {
    const size = this.#history.length;
    if (size === 0) return;
    const slot = this.#historyAt;
    const dst = this.#history[slot]!;
    const n = Math.min(length, dst.length);
    for (let i = 0; i < n; i++) dst[i] = packet[i]!;
    this.#historyLen[slot] = n;
    this.#historyAt = (slot + 1) % size;
    if (this.#historyN < size) this.#historyN++;
  }

  /** Stores a packet whose header timestamp (uint32 sample position) is `timestamp`. */
  insertTimestamp(timestamp: number, payload: Uint8Array, length: number, nowMs: number): JitterInsertResult {
    return this.insert(this.#unwrap.frameIndex(timestamp, this.frameSamples), payload, length, nowMs);
  }

  /**
   * Stores a RED packet's two frames (protocol README 9.1) whose header timestamp is `timestamp`, as
   * `block` (readRedBlock) locates them in `payload`: the primary under it, then the redundant copy
   * under the frame before, where that frame is missing and not yet played
   * (JitterBuffer.insertRedundant). Returns the primary's result. Allocates nothing.
   */
  insertRedTimestamp(
    timestamp: number,
    payload: Uint8Array,
    block: Readonly<RedBlock>,
    nowMs: number,
  ): JitterInsertResult {
    const k = this.#unwrap.frameIndex(timestamp, this.frameSamples);
    const r = this.insert(k, payload, block.primaryLength, nowMs, block.primaryOffset);
    this.insertRedundant((k - 1) >>> 0, payload, block.redLength, nowMs, block.redOffset);
    return r;
  }

  /** Stores a packet under its frame index (uint32, wraps), read from `payload[offset..+length)`. */
  insert(
    frameIndex: number,
    payload: Uint8Array,
    length: number,
    nowMs: number,
    offset = 0,
  ): JitterInsertResult {
    const r = this.jitter.insert(frameIndex, payload, nowMs, length, offset);
    // (At an offset the packet is checked when it plays instead: a view here would allocate.)
    if (r === JitterInsert.ACCEPTED && !this.#fecSeen && this.decoder.supportsFec && offset === 0)
      this.#fecSeen = opusPacketHasLbrr(payload, length);
    return r;
  }

  /**
   * Stores a redundant copy (RED) of frame `frameIndex` where that frame is missing and not yet
   * played; a no-op otherwise (not late, not a duplicate). Returns whether it was stored. `nowMs`
   * is the packet's arrival (the clock `insert` gets): copies arriving keep the look-ahead on.
   */
  insertRedundant(
    frameIndex: number,
    payload: Uint8Array,
    length: number,
    nowMs: number,
    offset = 0,
  ): boolean {
    this.#redSeen = true;
    if (nowMs > this.#redAt) this.#redAt = nowMs;
    return this.jitter.insertRedundant(frameIndex, payload, length, offset);
  }

  /** The time-stretcher's counts (null without timeStretch): read without allocating. */
  get stretch(): StretchCounts | null {
    return this.#stretch;
  }

  /** The packet the last DECODED frame came from (valid until the next insert). */
  get packet(): Uint8Array {
    return this.jitter.packet;
  }
  get packetLength(): number {
    return this.jitter.packetLength;
  }
  /** Its frame index. */
  get packetSeq(): number {
    return this.jitter.packetSeq;
  }

  /**
   * Produces the next frame into `out[0..frameSamples)` at `nowMs`; `lateMs` is how long after its
   * play time this runs (see JitterBuffer.pop).
   */
  next(nowMs: number, out: Int16Array, lateMs = 0): PlayoutFrameKind {
    if (out.length < this.frameSamples) throw new TypeError('out must hold one frame');
    if (!this.#stretch) {
      this.produced = 1;
      return this.#produce(nowMs, out, lateMs);
    }
    const n = this.frameSamples;
    const sync = this.#sync;
    const ts = this.#stretch;
    const jb = this.jitter;
    this.produced = 0;
    // Decode until a frame's worth is ready; each packet is popped at the time it will play (after
    // what the sync buffer holds), so the jitter buffer judges the delay as heard.
    while (this.#syncLen < n) {
      if (this.#append(nowMs, lateMs) !== PlayoutFrame.DECODED) continue;
      // At most the excess asked for plus the cushion the buffer keeps, rounded: a period may pass
      // the excess by up to the shortest period (2.5 ms; a server's margin and the fact that a
      // packet is popped at its tick, not at its virtual play time, absorb it), else a residue of up
      // to a period would stay. Without the next frame buffered, at most what the sync buffer holds
      // beyond this call's frame: further would bring the next packet's turn before it is here.
      let most =
        jb.shrinkMs * 48 >= ts.minPeriod
          ? Math.floor((jb.shrinkMs + jb.stretchKeepMs) * 48) + ts.minPeriod
          : 0;
      if (most > 0 && !jb.headReady) most = Math.min(most, this.#syncLen - n);
      if (most >= ts.minPeriod) {
        // Two of the longest periods must fit the region, or a low voice's period is not found (at
        // 10 ms frames a frame holds two 5 ms periods, and voices go down to 15 ms): with the next
        // packet buffered, decode it now, as accelerating brings its turn forward anyway.
        if (
          this.#syncLen < 2 * ts.maxPeriod &&
          jb.headReady &&
          this.#append(nowMs, lateMs) !== PlayoutFrame.DECODED
        )
          continue;
        const removed = ts.accelerate(sync, 0, this.#syncLen, most);
        this.#syncLen -= removed;
        // The splice is at the region's start: what follows it, this packet too, moves up.
        this.packetOffset = Math.max(0, this.packetOffset - removed);
        jb.shrinkMs = Math.max(0, jb.shrinkMs - removed / 48);
      } else if (this.#growSamples > 0) {
        const added = ts.expand(sync, 0, this.#syncLen, sync.length);
        this.#syncLen += added;
        this.#growSamples -= added;
      }
    }
    for (let i = 0; i < n; i++) out[i] = sync[i]!; // (a subarray view would allocate per frame)
    sync.copyWithin(0, n, this.#syncLen);
    this.#syncLen -= n;
    return this.#lastKind;
  }

  /** Produces one frame at the sync buffer's end (timeStretch): popped when it will play. */
  #append(nowMs: number, lateMs: number): PlayoutFrameKind {
    const kind = this.#produce(nowMs + this.#syncLen / 48, this.#scratch, lateMs);
    this.#lastKind = kind;
    this.produced++;
    this.#sync.set(this.#scratch, this.#syncLen);
    if (kind === PlayoutFrame.DECODED) this.packetOffset = this.#syncLen;
    this.#syncLen += this.frameSamples;
    return kind;
  }

  /** One frame; `run` false (skip()): the same bookkeeping, no decoder call. */
  #produce(nowMs: number, out: Int16Array, lateMs: number, run = true): PlayoutFrameKind {
    const n = this.frameSamples;
    const jb = this.jitter;
    const dec = this.decoder;
    this.#updateLookAhead(nowMs);
    if (run && this.#stale) this.#warm();
    // NetEq's preemptive expand, by a whole frame: one concealed frame between two packets (the
    // decoder continues across it) makes room for the look-ahead the next loss needs. With
    // time-stretching the growth is a few inserted pitch periods instead (next()), at once.
    const byStretch = this.#stretch !== null && this.#growByStretch;
    if (this.#expandPending && (byStretch || this.#growNow(nowMs))) {
      this.#expandPending = false;
      if (byStretch) this.#growSamples = n;
      else if (this.#drained < 0 && this.#growQuiet) {
        // In a pause: one more frame of silence, the pop (the next talkspurt's start) one frame later.
        out.fill(0, 0, n);
        this.#silent++;
        this.#expanded++;
        return PlayoutFrame.SILENT;
      } else if (jb.delayAt(nowMs) < jb.targetDelayMs) {
        try {
          if (run && dec.conceal(out) !== n) return this.#error(out);
        } catch {
          return this.#error(out);
        }
        this.#concealed++;
        this.#expanded++;
        return PlayoutFrame.CONCEALED;
      }
    }
    let r = jb.pop(nowMs, lateMs);
    try {
      // The redundant copy of a frame the dry buffer already concealed came a frame late: playing it
      // now would put every later frame one frame late (a slip mid-word). With the next frame here,
      // it is left unplayed (that frame stays concealed, a loss) and the next one plays on time; the
      // look-ahead then grows where it is not heard (#growNow).
      if (
        this.#growQuiet &&
        r === JitterPop.PACKET &&
        jb.packetRedundant &&
        this.#drained > 0 &&
        this.#lastSeq >= 0 &&
        (jb.packetSeq - this.#lastSeq - 1) >>> 0 < this.#drained &&
        jb.peekNext()
      ) {
        this.#lost += (jb.packetSeq - this.#lastSeq) >>> 0;
        this.#lookAheadAfterLoss(nowMs);
        if (!run) this.#historyN = 0; // the history must stay contiguous up to the next decode
        r = jb.pop(nowMs, lateMs);
        this.#lastSeq = (jb.packetSeq - 1) >>> 0;
        this.#drained = 0;
      }
      if (r === JitterPop.PACKET) {
        const seq = jb.packetSeq;
        // Frames skipped between the last packet and this one while concealing a dry buffer were lost.
        if (this.#drained > 0 && this.#lastSeq >= 0) {
          const gap = (seq - this.#lastSeq - 1) >>> 0;
          if (gap > 0 && gap <= this.#drained) this.#loss(nowMs, gap);
        }
        // A talkspurt after silence starts from a fresh decoder: its audio then does not depend on
        // what was concealed before the pause (the old state has faded out anyway).
        const fresh = this.#drained < 0 && this.#lastSeq >= 0;
        if (jb.packetRedundant) {
          this.#red++;
          // Its copy came a frame after it was due: the buffer ran dry meanwhile, and that concealed
          // frame already grew it by one. Keep that frame of look-ahead, so the next lost frame's copy
          // is here in time (as for FEC).
          if (this.#drained > 0) this.#lookAheadAfterLoss(nowMs, true);
        }
        if (!this.#fecSeen && dec.supportsFec) this.#fecSeen = opusPacketHasLbrr(jb.packet, jb.packetLength);
        this.#lastSeq = seq;
        this.#drained = 0;
        if (!run) {
          // Nobody hears this playout now: catch-up may drop a frame wherever it likes.
          if (fresh) this.#historyN = 0;
          this.#remember(jb.packet, jb.packetLength);
          this.#stale = true;
          this.#skipped++;
          jb.quiet = true;
          return PlayoutFrame.DECODED;
        }
        if (fresh) dec.reset();
        if (dec.decode(jb.packet, out, jb.packetLength) !== n) return this.#error(out);
        this.#decoded++;
        jb.quiet = isQuiet(out, n);
        return PlayoutFrame.DECODED;
      }
      if (r === JitterPop.MISSING) {
        this.#loss(nowMs, 0);
        this.#drained = 0;
        if (this.#lastSeq >= 0) this.#lastSeq = (this.#lastSeq + 1) >>> 0;
        // A skipped gap: the history must stay contiguous up to the packet decoded next.
        if (!run) this.#historyN = 0;
        if (dec.supportsFec && jb.peekNext() && opusPacketHasLbrr(jb.next, jb.nextLength)) {
          if (run && dec.decodeFec(jb.next, out, jb.nextLength) !== n) return this.#error(out);
          this.#fec++;
          return PlayoutFrame.FEC;
        }
        if (run && dec.conceal(out) !== n) return this.#error(out);
        this.#concealed++;
        return PlayoutFrame.CONCEALED;
      }
    } catch {
      return this.#error(out);
    }
    // EMPTY
    if (this.#drained >= 0 && this.#drained < this.#drainConceal) {
      if (this.#drained === 0) this.#underruns++;
      this.#drained++;
      try {
        if (run && dec.conceal(out) !== n) return this.#error(out);
      } catch {
        return this.#error(out);
      }
      this.#concealed++;
      this.#drainConcealed++;
      return PlayoutFrame.CONCEALED;
    }
    if (this.#drained === 0) this.#underruns++;
    this.#drained = -1;
    out.fill(0, 0, n);
    this.#silent++;
    return PlayoutFrame.SILENT;
  }

  #error(out: Int16Array): PlayoutFrameKind {
    this.jitter.quiet = true;
    this.#errors++;
    out.fill(0, 0, this.frameSamples);
    return PlayoutFrame.ERROR;
  }

  /** A loss in a talkspurt: the jitter buffer's holes, or `extra` frames found after a dry buffer. */
  #loss(nowMs: number, extra: number): void {
    const jbLost = this.jitter.stats().lost;
    this.#lost += extra + (jbLost - this.#jbLost);
    this.#jbLost = jbLost;
    this.#lookAheadAfterLoss(nowMs);
  }

  /**
   * After a loss on a stream with FEC or RED: one frame of look-ahead for `fecHoldMs`, grown by one
   * concealed frame unless the buffer already `grown` by one (a drain).
   */
  #lookAheadAfterLoss(nowMs: number, grown = false): void {
    this.#lastLossAt = nowMs;
    if ((this.#fecSeen || this.#redSeen) && this.#fecHoldMs > 0 && this.jitter.lookAhead === 0) {
      this.jitter.lookAhead = 1;
      this.#expandPending = !grown;
      this.#expandSince = nowMs;
    }
  }

  /**
   * Whether the pending growth happens now, where it is not heard: in a pause (the next talkspurt
   * starts a frame later), or after a quiet frame; or, loud all along, once it waited
   * GROW_DEADLINE_MS (the look-ahead matters more). Not while a dry buffer waits for its packets.
   */
  #growNow(nowMs: number): boolean {
    if (!this.#growQuiet) return true;
    if (this.#drained < 0) return true;
    if (!this.jitter.playing) return false;
    return this.jitter.quiet || nowMs - this.#expandSince >= GROW_DEADLINE_MS;
  }

  #updateLookAhead(nowMs: number): void {
    const jb = this.jitter;
    const red = this.#fecHoldMs > 0 && nowMs - this.#redAt <= this.#fecHoldMs;
    if (jb.lookAhead > 0) {
      if (!red && nowMs - this.#lastLossAt > this.#fecHoldMs) jb.lookAhead = 0;
    } else if (red) {
      // Copies are coming: between talkspurts the larger target starts the next one a frame later
      // (nothing heard); in one (RED just began), grow by a frame as after a loss.
      jb.lookAhead = 1;
      this.#expandPending = jb.playing;
      this.#expandSince = nowMs;
    }
  }

  stats(): FramePlayoutStats {
    return {
      decoded: this.#decoded,
      fecRecovered: this.#fec,
      redRecovered: this.#red,
      concealed: this.#concealed,
      drainConcealed: this.#drainConcealed,
      silent: this.#silent,
      underruns: this.#underruns,
      decodeErrors: this.#errors,
      lost: this.#lost,
      skipped: this.#skipped,
      warmed: this.#warmed,
      lookAhead: this.jitter.lookAhead,
      expanded: this.#expanded,
      accelerated: this.#stretch?.accelerated ?? 0,
      stretchExpanded: this.#stretch?.expanded ?? 0,
      acceleratedMs: (this.#stretch?.samplesRemoved ?? 0) / 48,
      stretchExpandedMs: (this.#stretch?.samplesAdded ?? 0) / 48,
    };
  }

  /** Forgets the stream (buffer, timestamps, decoder state); counters are kept. */
  reset(): void {
    this.jitter.reset();
    this.#unwrap.reset();
    this.decoder.reset();
    this.#drained = -1;
    this.#lastSeq = -1;
    this.#expandPending = false;
    this.#syncLen = 0;
    this.#growSamples = 0;
    this.#historyN = 0;
    this.#stale = false;
  }

  /** Idempotent: frees the decoder. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.decoder.destroy();
  }
}
