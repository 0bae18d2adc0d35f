import {
  MAX_PAYLOAD_BYTES,
  STREAM_SOURCE_BYTES,
  VoiceFlags,
  createRedBlock,
  readRedBlock,
  readStreamSource,
  streamSourceEquals,
} from '@voice/protocol';
import {
  FramePlayout,
  JitterInsert,
  PlayoutFrame,
  mixToInt16,
  type FramePlayoutStats,
  type JitterBuffer,
  type JitterBufferOptions,
  type OpusFactory,
  type PlayoutFrameKind,
  SenderTimeline,
} from '@voice/media';

/** A source's playout is freed this long after its last packet (protocol README 8.8), ms. */
export const SOURCE_FREE_AFTER_MS = 2000;

/** Per-source figures (protocol README 8.8), since the source got its playout. */
export interface SourceStats {
  /** The speaker's UserId. */
  source: string;
  accepted: number;
  late: number;
  duplicates: number;
  framesPlayed: number;
  /** Concealed frames, FEC-rebuilt ones included (as PlayoutStats.framesConcealed). */
  framesConcealed: number;
  fecRecovered: number;
  /** Lost frames played from the copy the next packet carried (RED). */
  redRecovered: number;
  underruns: number;
  /** Timeline restarts: a timestamp jump, or MARKER on a timestamp not after the last one. */
  restarts: number;
  jitterMs: number;
  bufferMs: number;
  targetMs: number;
}

export interface SourcePlayoutsStats {
  /** Most sources played at once: the granted `streams`. */
  max: number;
  /** Sources with a playout now. */
  active: number;
  /** STREAM packets of a new source refused because every playout was busy playing. */
  dropped: number;
  /** Playouts handed to a new source while the one they played was idle (least recently heard). */
  replaced: number;
  /** Playouts freed SOURCE_FREE_AFTER_MS after their source's last packet. */
  freed: number;
  /** STREAM payloads without a valid source or without Opus data. */
  invalid: number;
  sources: SourceStats[];
}

/** Sums of the playouts' counters over every source ever played (for the session's totals). */
export interface SourceTotals {
  accepted: number;
  late: number;
  duplicates: number;
  invalid: number;
  decoded: number;
  concealed: number;
  fecRecovered: number;
  redRecovered: number;
  /** RED packets dropped because their block was malformed (in `invalid`). */
  redMalformed: number;
  expanded: number;
  underruns: number;
  decodeErrors: number;
}

export interface SourcePlayoutsOptions {
  /** Sources played at once (the granted `streams`), 1-8. */
  readonly max: number;
  readonly frameSamples: number;
  readonly opus: OpusFactory;
  readonly jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  readonly timeStretch?: boolean;
  readonly drainConcealFrames?: number;
  /** RED negotiated: a STREAM packet with the RED flag carries the frame before too (README 9.1). */
  readonly red?: boolean;
}

/** One playout (FramePlayout with its decoder), reused by source after source. */
class SourceSlot {
  /** The UserId played, '' while free. */
  source = '';
  /** The source's timestamps on one continuing timeline (a restarted one moved after the last). */
  readonly timeline = new SenderTimeline();
  lastKind: PlayoutFrameKind = PlayoutFrame.SILENT;
  /**
   * The source's own frame FIFO: a source plays at its own phase (its first frame starts at the
   * pull where its jitter buffer starts it), not at the mix's frame boundaries.
   */
  readonly fifo: Int16Array;
  fifoPos: number;
  /** The playout's counters when this source got it (per-source figures are the difference). */
  base: FramePlayoutStats;
  accepted = 0;
  late = 0;
  duplicates = 0;
  invalid = 0;
  /** Counters of earlier sources on this slot, for the totals. */
  pastAccepted = 0;
  pastLate = 0;
  pastDuplicates = 0;
  pastInvalid = 0;

  constructor(readonly playout: FramePlayout) {
    this.base = playout.stats();
    this.fifo = new Int16Array(playout.frameSamples);
    this.fifoPos = playout.frameSamples; // empty
  }

  get inUse(): boolean {
    return this.source !== '';
  }

  /** Not playing: nothing buffered and its last frame was no audio (silence, or concealment). */
  get idle(): boolean {
    return (
      this.playout.jitter.buffered === 0 &&
      this.lastKind !== PlayoutFrame.DECODED &&
      this.lastKind !== PlayoutFrame.FEC
    );
  }

  assign(source: string): void {
    this.release();
    this.source = source;
    this.base = this.playout.stats();
  }

  release(): void {
    this.pastAccepted += this.accepted;
    this.pastLate += this.late;
    this.pastDuplicates += this.duplicates;
    this.pastInvalid += this.invalid;
    this.accepted = this.late = this.duplicates = this.invalid = 0;
    this.source = '';
    this.timeline.reset();
    this.lastKind = PlayoutFrame.SILENT;
    this.fifoPos = this.fifo.length;
    this.playout.reset();
  }
}

/**
 * A source sounds in a pull when a sample reaches this (-60 dBFS): below it is what Opus makes of
 * digital silence (a few LSB), which must not make a lone speaker's samples go through the limiter.
 */
const SOUNDING_PEAK = 32;

/**
 * The speakers a client receives as STREAM packets (protocol README 8.8), one FramePlayout each: the
 * same jitter buffer, decode, FEC and concealment as the AUDIO (mix) stream, keyed by the 12 source
 * bytes (compared in place: nothing is allocated per packet).
 *
 * Bounded: at most `max` playouts, created on first need and then reused (their Opus decoders with
 * them) for source after source. A source is freed SOURCE_FREE_AFTER_MS after its last packet; a
 * new source while all are taken gets the least recently heard idle one, else its packet is dropped
 * and counted (`dropped`): the server forwards at most `max` speakers, so that happens only while a
 * speaker who stopped still plays out its last frames.
 *
 * A source's timestamps are its speaker's own clock, restarted when the speaker's binding changes:
 * SenderTimeline (the rule the server applies upstream too) continues a restarted timeline after
 * the newest frame, so the playout carries on as after a pause instead of dropping frames as late.
 */
export class SourcePlayouts {
  readonly max: number;
  readonly frameSamples: number;
  private readonly slots: SourceSlot[] = [];
  private readonly o: SourcePlayoutsOptions;
  private readonly opusBuf = new Uint8Array(MAX_PAYLOAD_BYTES);
  private readonly redBlock = createRedBlock();
  private nRedMalformed = 0;
  private acc: Float32Array;
  private inUse = 0;
  private nDropped = 0;
  private nReplaced = 0;
  private nFreed = 0;
  private nInvalid = 0;
  private closed = false;
  /** Whether the last `mixInto` heard a source's audio (decoded or FEC-rebuilt). */
  audible = false;

  constructor(options: SourcePlayoutsOptions) {
    if (!Number.isInteger(options.max) || options.max < 1 || options.max > 8)
      throw new TypeError('max must be an integer in 1..8');
    this.o = options;
    this.max = options.max;
    this.frameSamples = options.frameSamples;
    this.acc = new Float32Array(options.frameSamples);
  }

  /** Sources with a playout now. */
  get active(): number {
    return this.inUse;
  }

  /**
   * Stores one opened STREAM payload (`payload[0..length)`: source, then Opus) with its header's
   * timestamp and flags. Returns the jitter buffer's verdict, or -1 when refused (invalid, or no
   * playout free).
   */
  insert(payload: Uint8Array, length: number, timestamp: number, flags: number, now: number): number {
    if (this.closed) return -1;
    if (length <= STREAM_SOURCE_BYTES || length > payload.length) {
      this.nInvalid++;
      return -1;
    }
    // A malformed RED block is dropped before it can claim a playout.
    const n = length - STREAM_SOURCE_BYTES;
    const red = this.o.red === true && (flags & VoiceFlags.RED) !== 0;
    const b = this.redBlock;
    if (red && !readRedBlock(payload, STREAM_SOURCE_BYTES, n, b)) {
      this.nRedMalformed++;
      this.nInvalid++;
      return -1;
    }
    let slot: SourceSlot | null = null;
    for (const s of this.slots) {
      if (s.inUse && streamSourceEquals(payload, 0, s.source)) {
        slot = s;
        break;
      }
    }
    if (slot === null) {
      const source = readStreamSource(payload, 0);
      if (source === null) {
        this.nInvalid++;
        return -1;
      }
      slot = this.claim(source);
      if (slot === null) {
        this.nDropped++;
        return -1;
      }
    }
    const ts = slot.timeline.map(timestamp, (flags & VoiceFlags.MARKER) !== 0, now, this.frameSamples);
    let r: number;
    if (red) {
      // Offsets into the payload: neither a copy nor a view is needed.
      r = slot.playout.insertRedTimestamp(ts, payload, b, now);
    } else {
      // A copy, not a subarray view: a view would allocate per packet.
      for (let i = 0; i < n; i++) this.opusBuf[i] = payload[STREAM_SOURCE_BYTES + i]!;
      r = slot.playout.insertTimestamp(ts, this.opusBuf, n, now);
    }
    if (r === JitterInsert.ACCEPTED) slot.accepted++;
    else if (r === JitterInsert.LATE) slot.late++;
    else if (r === JitterInsert.DUPLICATE) slot.duplicates++;
    else slot.invalid++;
    return r;
  }

  /** A playout for a new source: a free one, a new one while fewer than `max`, else the stalest idle one. */
  private claim(source: string): SourceSlot | null {
    let pick: SourceSlot | null = null;
    for (const s of this.slots) {
      if (!s.inUse) {
        pick = s;
        break;
      }
    }
    if (pick === null && this.slots.length < this.max) {
      const o = this.o;
      pick = new SourceSlot(
        new FramePlayout({
          frameSamples: this.frameSamples,
          decoder: o.opus.createDecoder({ frameSamples: this.frameSamples }),
          ...(o.jitter ? { jitter: o.jitter } : {}),
          ...(o.timeStretch !== undefined ? { timeStretch: o.timeStretch } : {}),
          ...(o.drainConcealFrames !== undefined ? { drainConcealFrames: o.drainConcealFrames } : {}),
        }),
      );
      this.slots.push(pick);
    }
    if (pick === null) {
      for (const s of this.slots) {
        if (s.idle && (pick === null || s.timeline.newestAt < pick.timeline.newestAt)) pick = s;
      }
      if (pick === null) return null;
      this.nReplaced++;
      this.inUse--;
    }
    pick.assign(source);
    this.inUse++;
    return pick;
  }

  /**
   * Adds every source's next `out.length` samples into `out`, which holds the mix stream's (`outHeard`:
   * whether any of it is sound). Each source keeps its own frame FIFO and phase: its next frame is
   * produced when its FIFO runs out, at `now`, and a source that is not playing (silence) keeps no
   * phase, so it starts at the first pull after its packet is due rather than at the next frame
   * boundary of the others. With two or more streams sounding in this pull (peaks of SOUNDING_PEAK
   * or more: a member sending digital silence does not count), they are summed as the server's
   * mixer sums (float, then to int16 exactly unless the frame would clip: media's mixToInt16); otherwise the exact sum is played (one
   * stream alone: sample for sample). Frees the sources whose packets stopped. `playTime` is when out[0] plays.
   */
  addInto(out: Int16Array, now: number, playTime: number, outHeard: boolean): void {
    this.audible = false;
    if (this.inUse === 0) return;
    const len = out.length;
    if (this.acc.length !== len) this.acc = new Float32Array(len); // once per pull size
    const acc = this.acc;
    const n = this.frameSamples;
    let heard = outHeard ? 1 : 0;
    let summing = false;
    for (const s of this.slots) {
      if (!s.inUse) continue;
      let i = 0;
      let counted = false;
      while (i < len) {
        if (s.fifoPos === n) {
          const kind = s.playout.next(now, s.fifo, Math.max(0, now - (playTime + i / 48)));
          s.lastKind = kind;
          if (kind === PlayoutFrame.DECODED || kind === PlayoutFrame.FEC) this.audible = true;
          if (kind === PlayoutFrame.SILENT) {
            // Not playing: nothing kept, the next pull asks again (the phase is set at the start).
            if (now - s.timeline.newestAt > SOURCE_FREE_AFTER_MS && s.playout.jitter.buffered === 0) {
              s.release();
              this.inUse--;
              this.nFreed++;
            }
            break;
          }
          s.fifoPos = 0;
        }
        const take = Math.min(n - s.fifoPos, len - i);
        if (!summing) {
          for (let k = 0; k < len; k++) acc[k] = out[k]! / 32768;
          summing = true;
        }
        const f = s.fifo;
        // Whether this source sounds in this pull: a member sending digital silence (which Opus
        // decodes to a few LSB, not zeros) must not send a lone speaker's peaks through the limiter.
        let peak = 0;
        for (let k = 0; k < take; k++) {
          const v = f[s.fifoPos + k]!;
          acc[i + k]! += v / 32768;
          if (v > peak) peak = v;
          else if (-v > peak) peak = -v;
        }
        if (!counted && peak >= SOUNDING_PEAK && s.lastKind !== PlayoutFrame.ERROR) {
          counted = true;
          heard++;
        }
        s.fifoPos += take;
        i += take;
      }
    }
    if (!summing) return;
    // One stream alone passes unchanged (exact: an int16 over 32768 is exact in float32).
    if (heard >= 2) mixToInt16(acc, out);
    else {
      // One stream sounding (others silent or near it): the exact sum, clamped (a near-silent
      // source's few LSB on a full-scale peak must not wrap).
      for (let k = 0; k < len; k++) {
        const v = Math.round(acc[k]! * 32768);
        out[k] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
      }
    }
  }

  /**
   * Whether a playing source whose FIFO holds fewer than `samples` has its next frame missing with
   * nothing buffered (a timer tick may wait for it).
   */
  waiting(samples: number): boolean {
    for (const s of this.slots) {
      if (!s.inUse || this.frameSamples - s.fifoPos >= samples) continue;
      const jb = s.playout.jitter;
      if (jb.playing && !jb.headReady && jb.buffered === 0) return true;
    }
    return false;
  }

  /** The in-use source buffering the most (what most delays what is heard), or null. */
  deepest(): JitterBuffer | null {
    let best: JitterBuffer | null = null;
    for (const s of this.slots) {
      if (s.inUse && (best === null || s.playout.jitter.depth > best.depth)) best = s.playout.jitter;
    }
    return best;
  }

  totals(): SourceTotals {
    const t: SourceTotals = {
      accepted: 0,
      late: 0,
      duplicates: 0,
      invalid: this.nInvalid,
      decoded: 0,
      concealed: 0,
      fecRecovered: 0,
      redRecovered: 0,
      redMalformed: this.nRedMalformed,
      expanded: 0,
      underruns: 0,
      decodeErrors: 0,
    };
    for (const s of this.slots) {
      const p = s.playout.stats();
      t.accepted += s.pastAccepted + s.accepted;
      t.late += s.pastLate + s.late;
      t.duplicates += s.pastDuplicates + s.duplicates;
      t.invalid += s.pastInvalid + s.invalid;
      t.decoded += p.decoded;
      t.concealed += p.concealed;
      t.fecRecovered += p.fecRecovered;
      t.redRecovered += p.redRecovered;
      t.expanded += p.expanded;
      t.underruns += p.underruns;
      t.decodeErrors += p.decodeErrors;
    }
    return t;
  }

  stats(): SourcePlayoutsStats {
    const frameMs = this.frameSamples / 48;
    const sources: SourceStats[] = [];
    for (const s of this.slots) {
      if (!s.inUse) continue;
      const p = s.playout.stats();
      const b = s.base;
      const j = s.playout.jitter.stats();
      sources.push({
        source: s.source,
        accepted: s.accepted,
        late: s.late,
        duplicates: s.duplicates,
        framesPlayed: p.decoded - b.decoded,
        framesConcealed: p.concealed - b.concealed + (p.fecRecovered - b.fecRecovered),
        fecRecovered: p.fecRecovered - b.fecRecovered,
        redRecovered: p.redRecovered - b.redRecovered,
        underruns: p.underruns - b.underruns,
        restarts: s.timeline.restarts,
        jitterMs: j.jitterMs,
        bufferMs: j.depth * frameMs,
        targetMs: j.target * frameMs,
      });
    }
    return {
      max: this.max,
      active: this.inUse,
      dropped: this.nDropped,
      replaced: this.nReplaced,
      freed: this.nFreed,
      invalid: this.nInvalid,
      sources,
    };
  }

  /** Idempotent: frees every decoder. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.slots) s.playout.close();
    this.inUse = 0;
  }
}
