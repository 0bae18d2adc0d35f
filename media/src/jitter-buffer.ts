import { Histogram } from './histogram.js';

/** What `pop()` returns. */
export const JitterPop = {
  /** A packet is ready: `packet` / `packetLength` / `packetSeq` hold it until the next `insert()`. */
  PACKET: 0,
  /** A frame is missing inside a talkspurt: conceal it (or FEC from `peekNext()`). */
  MISSING: 1,
  /** Nothing to play (not started, buffering, or drained): play silence, nothing to conceal. */
  EMPTY: 2,
} as const;
export type JitterPopResult = (typeof JitterPop)[keyof typeof JitterPop];

/** What `insert()` returns. */
export const JitterInsert = {
  ACCEPTED: 0,
  /** The same sequence number is already buffered. */
  DUPLICATE: 1,
  /** Its turn has passed (already played, concealed or skipped). */
  LATE: 2,
  /** Empty or larger than `maxPacketBytes`. */
  INVALID: 3,
} as const;
export type JitterInsertResult = (typeof JitterInsert)[keyof typeof JitterInsert];

export interface JitterBufferOptions {
  /** Duration of one packet (one frame per packet), ms. Default 20. */
  readonly frameMs?: number;
  /** Slots in the ring, a power of two (default 64: 1.28 s of 20 ms frames). Bounds memory. */
  readonly capacity?: number;
  /** Largest packet stored; larger ones are dropped as invalid. Default 1000 bytes. */
  readonly maxPacketBytes?: number;
  /** Target depth bounds, in frames. Defaults 1 and 10 (200 ms at 20 ms frames). */
  readonly minTargetFrames?: number;
  readonly maxTargetFrames?: number;
  /** Sliding window for the arrival-delay percentile, ms (default 1500: a burst is forgotten in 2 s). */
  readonly delayWindowMs?: number;
  /** Which percentile of relative arrival delay the target follows (default 95, as NetEq). */
  readonly delayPercentile?: number;
  /** False pins the target at `minTargetFrames` (the delay is still measured). Default true. */
  readonly adaptive?: boolean;
  /**
   * Phase margin, ms, added to the target delay: how long before its turn a packet on time must be
   * buffered. A packet that arrives just before its pop underruns on the next scheduling hiccup
   * (sender clock, server tick and playout tick drift in phase); NetEq's target includes this too.
   * Default 0.
   */
  readonly marginMs?: number;
  /**
   * The largest relative delay seen over this window (ms, default 1000) also bounds the target from
   * below before the buffer shrinks: a burst of late packets keeps the delay it needed this long,
   * then catch-up gives it back.
   */
  readonly peakWindowMs?: number;
  /**
   * A late packet counts as a delay peak (see notePeak) only when its relative delay passes the
   * target by more than this, ms (default 0). A server whose target is a few ms sets it, so that
   * scheduling noise of a few ms is not taken for a recurring stall: else one real burst after it
   * is held in peak mode for seconds instead of being given back.
   */
  readonly peakMinMs?: number;
  /**
   * Catch-up: when the delay stayed a frame or more above target for this long (ms), the excess
   * frames are dropped (at most `maxCatchUpFrames` at once, default 8). Default 300 ms; 0 disables
   * catch-up (and the dropping of a stalled sender's backlog).
   */
  readonly catchUpMs?: number;
  readonly maxCatchUpFrames?: number;
  /**
   * The caller time-stretches decoded audio (TimeStretch): besides the drops of catch-up (in quiet
   * audio, or past 60 ms of excess), it asks the caller to accelerate by `shrinkMs` (the excess
   * left, once it reaches a frame, less `stretchKeepMs`) rather than wait for a quiet moment.
   * Default false.
   */
  readonly timeStretch?: boolean;
  /**
   * With `timeStretch`: excess delay (ms) left after stretching, a cushion against the estimate's
   * noise (default half a frame). A server that pops at its tick, not at a device's pace, gives all
   * of it back (0): its callers then remove no more than `shrinkMs`.
   */
  readonly stretchKeepMs?: number;
  /**
   * With `timeStretch`: stretch only what a re-buffer added to the playout schedule in this
   * talkspurt (a burst's growth), never a frame of excess from any other cause (default false).
   * A server mixing at its tick sets it: its mixes must then be sample-exact on a clean link,
   * where the timing advance, not the stretch, moves the phase.
   */
  readonly stretchGrowthOnly?: boolean;
  /**
   * After two packets lost in a row drained the buffer, resume at the packet that carried the
   * second one's RED copy, dropping the copy, when the copy's turn on the schedule has passed
   * (default false: resume with the copy, a frame later). A listener sets it: it pops a frame
   * ahead of its play time while time-stretching, so that packet comes after the copy's turn, and
   * resuming a frame later is a slip it hears (catch-up drops a frame later). A server mixing at
   * its tick keeps the copy (measured: at 5 % loss with jitter, dropping it cost its mixes PESQ).
   */
  readonly dropLateCopies?: boolean;
  /** A packet this many frames away from the newest one restarts the stream. Default 4 * capacity. */
  readonly resetGapFrames?: number;
}

export interface JitterStats {
  /** Packets accepted into the buffer. */
  readonly received: number;
  /**
   * Redundant copies (RED) stored in a missing frame's slot (not in `received`; a frame's own packet
   * that comes after its copy replaces it and counts in `received` too).
   */
  readonly redundant: number;
  /** Packets that arrived after their turn (dropped). */
  readonly late: number;
  readonly duplicates: number;
  /** Packets dropped because they were empty or too large. */
  readonly invalid: number;
  /** Sequence numbers played as missing or skipped without ever having arrived in time. */
  readonly lost: number;
  /** `pop()` results that asked the caller to conceal. */
  readonly concealed: number;
  /** Buffered packets dropped to catch up with the target or because the ring was full. */
  readonly overflowDrops: number;
  /** Buffered packets dropped when playout resumed, because their turn had passed (a sender stall). */
  readonly staleDrops: number;
  /** Times the buffer ran dry while playing (talkspurt ends and underruns), then re-buffered. */
  readonly drains: number;
  /**
   * Stream restarts: the sequence jumped by more than `resetGapFrames` (a new sender, or a long pause
   * when sequence numbers follow the sender's clock).
   */
  readonly resets: number;
  /** Frames buffered now (span from the next to play to the newest). */
  readonly depth: number;
  /** Target depth, frames. */
  readonly target: number;
  /** Target playout delay beyond the earliest arrival, ms (percentile + margin + look-ahead). */
  readonly targetDelayMs: number;
  /** Playout delay beyond the earliest arrival at the last pop, ms. */
  readonly delayMs: number;
  /** RFC 3550 interarrival jitter estimate, ms. */
  readonly jitterMs: number;
  /** The tracked percentile (default p95) of relative arrival delay over the window, ms. */
  readonly delayPercentileMs: number;
}

/** Delay peaks remembered (a power of two), how close late packets merge into one, longest hold. */
const PEAKS = 8;
const PEAK_GROUP_MS = 100;
const PEAK_HOLD_MS = 20_000;

/**
 * A resume after running dry this close (ms of media) to the frame then due continues the
 * talkspurt; further is a new one (senders stop for a pause only after their voice detector's
 * hangover, hundreds of ms).
 */
const RESUME_GAP_MS = 100;

/** A pause longer than this (ms of media) starts the next talkspurt at the target, not the last schedule. */
const RESUME_SCHEDULE_MS = 10_000;

/** Excess delay (ms) that catch-up removes even in loud audio. */
const LOUD_EXCESS_MS = 60;

const IDLE = 0;
const BUFFERING = 1;
const PLAYING = 2;

/**
 * Adaptive jitter buffer for one speaker's packets (one Opus frame per packet).
 *
 * Storage is a ring of `capacity` slots indexed by sequence number; packets are copied into
 * preallocated slot memory, so insert/pop allocate nothing. Sequence numbers are uint32 and may wrap;
 * internally they are unwrapped to a monotone integer.
 *
 * Target delay (NetEq-like, in ms, not whole frames): for each packet, its transit time (arrival -
 * seq * frameMs) minus the smallest transit in the window is its relative arrival delay; the target
 * delay is that delay's p95 over the window plus `marginMs` (plus one frame of FEC look-ahead while
 * `lookAhead` is set), clamped to [(min - 1), max] frames. A packet's expected arrival is the window's
 * smallest transit plus seq * frameMs; the delay at a pop is how long after its expected arrival the
 * packet at the head is played. Measured (media/test/jitter-buffer.test.ts): uniform 0..60 ms jitter
 * plays without loss at about 60 ms of delay; a clean link with arrivals right before the pops, at
 * `marginMs` (no underrun from phase noise).
 *
 * Playout: the buffer starts (and restarts after draining) at the first pop at least the target delay
 * after the oldest buffered packet's expected arrival: the start phase is chosen, not inherited from
 * whenever the first packet came. A new talkspurt (after a pause, not an underrun) may also start at
 * the schedule the last one played at, whichever comes first: a phase that held through a talkspurt
 * is not given up for a frame more delay because the target asks a margin the arrivals never needed. A hole with newer packets behind it is MISSING (conceal); running
 * dry is EMPTY and re-buffers, which is how a talkspurt ends and how the delay grows after an
 * underrun. When the delay stayed a frame or more above max(target, the peak relative delay of the
 * last `peakWindowMs`) for `catchUpMs`, the excess frames are dropped.
 */
export class JitterBuffer {
  readonly frameMs: number;
  readonly capacity: number;
  readonly maxPacketBytes: number;

  /**
   * The packet returned by the last PACKET pop: a view of its slot (read `packetLength` bytes). Valid
   * until the next `insert()`, which may reuse the slot: decode it first.
   */
  packet: Uint8Array;
  packetLength = 0;
  packetSeq = 0;
  /** Whether that packet was a redundant copy (RED, `insertRedundant`), not the frame's own packet. */
  packetRedundant = false;
  /** Filled by `peekNext()` when it returns true. */
  next: Uint8Array;
  nextLength = 0;
  nextSeq = 0;

  private readonly mask: number;
  private readonly data: Uint8Array;
  private readonly views: Uint8Array[];
  private readonly slotLen: Int32Array;
  /** 1 where the slot holds a redundant copy (insertRedundant). */
  private readonly slotRed: Uint8Array;

  private readonly minTarget: number;
  private readonly maxTarget: number;
  private readonly adaptive: boolean;
  private readonly percentile: number;
  private readonly catchUpPops: number;
  private readonly maxCatchUp: number;
  private readonly timeStretch: boolean;
  /** Excess delay kept after stretching, ms (`stretchKeepMs`). */
  readonly stretchKeepMs: number;
  private readonly stretchGrowthOnly: boolean;
  private readonly dropLateCopies: boolean;
  private readonly resetGap: number;
  private readonly marginMs: number;
  private readonly peakMinMs: number;
  private readonly frameMsInv: number;
  /** Extra frames of target while the caller wants FEC look-ahead. */
  private lookAheadFrames = 0;
  private targetDelay: number;
  private lastDelay = 0;
  private lastArrivalMs = Number.NEGATIVE_INFINITY;
  private readonly peaks: Histogram;
  private readonly peakAt = new Float64Array(PEAKS);
  private readonly peakHeight = new Float64Array(PEAKS);
  private peakCount = 0;

  private state = IDLE;
  private started = false;
  private head = 0;
  private newest = 0;
  private newestRaw = 0;
  private stored = 0;
  private minStored = Number.POSITIVE_INFINITY;
  private targetFrames: number;

  // Arrival delay: sliding-window minimum of transit (monotonic deque) and a windowed histogram.
  private readonly window: number;
  private readonly dqVal: Float64Array;
  private readonly dqIdx: Float64Array;
  private dqStart = 0;
  private dqLen = 0;
  private arrivals = 0;
  private readonly delays: Histogram;
  private sinceRetarget = 0;
  private rebaseline = true;
  private prevTransit = 0;
  private jitter = 0;

  // Catch-up window: the smallest playout delay seen over it.
  private windowPops = 0;
  private windowMinDelay = Number.POSITIVE_INFINITY;
  /**
   * With timeStretch, the playout schedule: when a frame plays less its media time (pop time -
   * frame index * frameMs), which only a re-buffer, a drop or a stretch moves (not the arrivals, not
   * the delay baseline); its smallest over the window, and over this talkspurt (the floor growth is
   * judged against).
   */
  private windowMinSchedule = Number.POSITIVE_INFINITY;
  private floorSchedule = Number.POSITIVE_INFINITY;
  /** The frame due when the buffer last ran dry (-1: not since the stream started). */
  private drainedHead = -1;
  /** When the last packet played, less its media time (NaN: none since the stream started). */
  private lastSchedule = Number.NaN;

  private nReceived = 0;
  private nLate = 0;
  private nDuplicates = 0;
  private nInvalid = 0;
  private nLost = 0;
  private nConcealed = 0;
  private nOverflow = 0;
  private nDrains = 0;
  private nResets = 0;
  private nStale = 0;
  private nRedundant = 0;

  constructor(options: JitterBufferOptions = {}) {
    const {
      frameMs = 20,
      capacity = 64,
      maxPacketBytes = 1000,
      minTargetFrames = 1,
      maxTargetFrames = 10,
      delayWindowMs = 1500,
      delayPercentile = 95,
      adaptive = true,
      catchUpMs = 300,
      maxCatchUpFrames = 8,
      resetGapFrames = capacity * 4,
      marginMs = 0,
      peakWindowMs = 1000,
      peakMinMs = 0,
      timeStretch = false,
      stretchKeepMs = frameMs / 2,
      stretchGrowthOnly = false,
      dropLateCopies = false,
    } = options;
    if (!(frameMs > 0)) throw new TypeError('frameMs must be > 0');
    if (
      !Number.isInteger(capacity) ||
      capacity < 4 ||
      capacity > 1 << 16 ||
      (capacity & (capacity - 1)) !== 0
    ) {
      throw new TypeError('capacity must be a power of two in 4..65536');
    }
    if (!Number.isInteger(maxPacketBytes) || maxPacketBytes < 1 || maxPacketBytes > 65_535) {
      throw new TypeError('maxPacketBytes must be an integer in 1..65535');
    }
    if (!Number.isInteger(minTargetFrames) || minTargetFrames < 1)
      throw new TypeError('minTargetFrames must be >= 1');
    if (
      !Number.isInteger(maxTargetFrames) ||
      maxTargetFrames < minTargetFrames ||
      maxTargetFrames >= capacity
    ) {
      throw new TypeError('maxTargetFrames must be an integer in minTargetFrames..capacity-1');
    }
    if (!(delayPercentile > 0 && delayPercentile <= 100))
      throw new TypeError('delayPercentile must be in (0, 100]');
    if (!(marginMs >= 0 && marginMs < 1000)) throw new TypeError('marginMs must be in [0, 1000)');
    if (!(peakWindowMs >= frameMs)) throw new TypeError('peakWindowMs must be >= frameMs');
    if (!(peakMinMs >= 0 && peakMinMs < 1000)) throw new TypeError('peakMinMs must be in [0, 1000)');
    if (!(stretchKeepMs >= 0 && stretchKeepMs <= frameMs))
      throw new TypeError('stretchKeepMs must be in [0, frameMs]');
    this.frameMs = frameMs;
    this.capacity = capacity;
    this.maxPacketBytes = maxPacketBytes;
    this.mask = capacity - 1;
    this.data = new Uint8Array(capacity * maxPacketBytes);
    this.views = [];
    for (let i = 0; i < capacity; i++) {
      this.views.push(this.data.subarray(i * maxPacketBytes, (i + 1) * maxPacketBytes));
    }
    this.packet = this.views[0]!;
    this.next = this.views[0]!;
    this.slotLen = new Int32Array(capacity);
    this.slotRed = new Uint8Array(capacity);
    this.minTarget = minTargetFrames;
    this.maxTarget = maxTargetFrames;
    this.adaptive = adaptive;
    this.percentile = delayPercentile;
    this.catchUpPops = catchUpMs > 0 ? Math.max(1, Math.round(catchUpMs / frameMs)) : 0;
    this.maxCatchUp = maxCatchUpFrames;
    this.timeStretch = timeStretch;
    this.stretchKeepMs = stretchKeepMs;
    this.stretchGrowthOnly = stretchGrowthOnly;
    this.dropLateCopies = dropLateCopies;
    this.resetGap = resetGapFrames;
    this.targetFrames = minTargetFrames;
    this.marginMs = marginMs;
    this.peakMinMs = peakMinMs;
    this.frameMsInv = 1 / frameMs;
    this.targetDelay = (minTargetFrames - 1) * frameMs + marginMs;
    this.window = Math.max(8, Math.round(delayWindowMs / frameMs));
    this.peaks = new Histogram({
      bucketWidth: 1,
      buckets: 1000,
      window: Math.max(4, Math.round(peakWindowMs / frameMs)),
    });
    this.dqVal = new Float64Array(this.window + 1);
    this.dqIdx = new Float64Array(this.window + 1);
    this.delays = new Histogram({ bucketWidth: 1, buckets: 1000, window: this.window });
  }

  /** Current target depth in frames. */
  get target(): number {
    return this.targetFrames;
  }

  /** Frames buffered: from the next to play (or the oldest buffered, while buffering) to the newest. */
  get depth(): number {
    if (this.stored === 0) return 0;
    return this.newest - (this.state === PLAYING ? this.head : this.minStored) + 1;
  }

  /** Packets stored now (at most `capacity`). */
  get buffered(): number {
    return this.stored;
  }

  /** Bytes of typed-array storage this buffer holds; fixed at construction. */
  get memoryBytes(): number {
    return (
      this.data.byteLength +
      this.slotLen.byteLength +
      this.slotRed.byteLength +
      this.dqVal.byteLength +
      this.dqIdx.byteLength +
      this.delays.memoryBytes +
      this.peaks.memoryBytes
    );
  }

  /** Target playout delay beyond the earliest arrival, ms. */
  get targetDelayMs(): number {
    return this.targetDelay;
  }

  /** How long after its expected arrival the next frame would play at `nowMs` (NaN unless playing). */
  delayAt(nowMs: number): number {
    return this.state === PLAYING ? nowMs - this.expectedArrival(this.head) : Number.NaN;
  }

  /** Whether the frame due next is buffered (playing, or ready to start): a pop now would not underrun. */
  get headReady(): boolean {
    if (this.state === PLAYING) return this.slotLen[this.head & this.mask] !== 0;
    return false;
  }

  /**
   * Whether a pop at `playAt` would play a frame, once the packet for frame `seq` arriving at `nowMs`
   * (not inserted yet) is in: a playing buffer whose next frame is in or is this one, or a buffer
   * not playing that this pop would start (the start rule of `pop`, this packet's arrival counted
   * in the baseline). Errs towards false: packets not yet inserted other than this one are not
   * counted. The server asks it before moving a listener from one speaker's packets to a mix.
   */
  wouldPlay(seq: number, nowMs: number, playAt: number): boolean {
    seq = seq >>> 0;
    if (this.state === PLAYING) return this.headReady || this.head >>> 0 === seq;
    let ext = seq;
    let fresh = this.state === IDLE;
    if (!fresh) {
      ext = this.newest + ((seq - this.newestRaw) | 0);
      fresh = ext - this.newest > this.resetGap || this.newest - ext > this.resetGap;
      if (fresh) ext = seq;
    }
    const start = fresh || this.stored === 0 || ext < this.minStored ? ext : this.minStored;
    if (!fresh && start < this.head && this.started) return false;
    // The baseline after this packet is measured: its own transit alone after a restart or a pause
    // longer than the window (measure's rebaseline), else the smaller of the two.
    const transit = nowMs - ext * this.frameMs;
    const stale =
      fresh || this.rebaseline || this.dqLen === 0 || nowMs - this.lastArrivalMs > this.window * this.frameMs;
    const base = stale ? transit : Math.min(this.dqVal[this.dqStart]!, transit);
    if (playAt >= base + start * this.frameMs + this.targetDelay) return true;
    return !fresh && start === this.minStored && this.resumesSchedule(playAt);
  }

  /** True between the first packet and a drain: the speaker's frames are flowing. */
  get playing(): boolean {
    return this.state === PLAYING;
  }

  /**
   * Excess delay (ms) the caller should remove by time-stretching (with `timeStretch`): set by
   * catch-up once per window, lowered by the caller as it accelerates.
   */
  shrinkMs = 0;

  /**
   * Whether the audio now playing is quiet (set by a caller that decodes; default true): catch-up
   * drops a single frame of excess delay only while it is, where the drop cannot be heard.
   */
  quiet = true;

  /**
   * Frames of look-ahead wanted on top of the target (0 or more): while a link loses packets, one
   * frame lets the packet after a lost one be buffered when the lost one is due, so its in-band FEC
   * can rebuild it. The buffer grows by re-buffering (the caller conceals) and shrinks by catch-up.
   */
  get lookAhead(): number {
    return this.lookAheadFrames;
  }
  set lookAhead(frames: number) {
    if (!Number.isInteger(frames) || frames < 0 || frames >= this.capacity)
      throw new TypeError('lookAhead must be an integer in 0..capacity-1');
    if (frames === this.lookAheadFrames) return;
    this.lookAheadFrames = frames;
    this.retarget();
  }

  /**
   * Stores `packet[offset..offset+length)` under sequence number `seq` (uint32, wraps), arrived at
   * `nowMs` (any monotonic millisecond clock, the same one `pop()` gets).
   */
  insert(
    seq: number,
    packet: Uint8Array,
    nowMs: number,
    length: number = packet.length,
    offset = 0,
  ): JitterInsertResult {
    if (length <= 0 || length > this.maxPacketBytes || offset < 0 || offset + length > packet.length) {
      this.nInvalid++;
      return JitterInsert.INVALID;
    }
    seq = seq >>> 0;
    let ext: number;
    if (this.state === IDLE) {
      ext = seq;
      this.restart(ext, seq);
    } else {
      ext = this.newest + ((seq - this.newestRaw) | 0);
      if (ext - this.newest > this.resetGap || this.newest - ext > this.resetGap) {
        this.nResets++;
        this.clearSlots();
        ext = seq;
        this.restart(ext, seq);
      }
    }

    if (ext < this.head) {
      if (!this.started && this.newest - ext < this.capacity) {
        this.head = ext; // reordered before the first playout: start earlier
      } else {
        this.measure(ext, nowMs);
        this.nLate++;
        return JitterInsert.LATE;
      }
    }
    if (ext - this.head >= this.capacity) {
      this.skipTo(ext - this.capacity + 1);
    }
    const slot = ext & this.mask;
    // A redundant copy holds the slot: the frame's own packet, reordered behind the next one, takes
    // it over (the same bytes from the same encoder; now it counts as arrived, with its timing).
    const overRed = this.slotRed[slot] === 1 && this.slotLen[slot] !== 0;
    if (this.slotLen[slot] !== 0 && !overRed) {
      this.nDuplicates++;
      return JitterInsert.DUPLICATE;
    }
    this.measure(ext, nowMs);
    if (overRed) this.stored--;

    const off = slot * this.maxPacketBytes;
    if (offset === 0 && length === packet.length) this.data.set(packet, off);
    else for (let i = 0; i < length; i++) this.data[off + i] = packet[offset + i]!;
    this.slotLen[slot] = length;
    this.slotRed[slot] = 0;
    this.stored++;
    if (ext > this.newest) {
      this.newest = ext;
      this.newestRaw = seq;
    }
    if (ext < this.minStored) this.minStored = ext;
    this.nReceived++;
    return JitterInsert.ACCEPTED;
  }

  /**
   * Stores a redundant copy (RED) of frame `seq`, `packet[offset..offset+length)`, when that frame is
   * missing and its turn has not come: a lost packet rebuilt, byte for byte, before it plays. Call it
   * after inserting the primary it came with. Otherwise (the frame is buffered, or was played,
   * concealed or skipped, or lies outside the ring or after the newest) a no-op, counted nowhere: it
   * is neither late nor a duplicate, the primary was counted. Its arrival time is not a sample of the
   * link's delay for that frame (it rides one frame later), so the delay statistics ignore it.
   * Returns whether it was stored.
   */
  insertRedundant(seq: number, packet: Uint8Array, length: number, offset = 0): boolean {
    if (this.state === IDLE || length <= 0 || length > this.maxPacketBytes) return false;
    if (offset < 0 || offset + length > packet.length) return false;
    const ext = this.newest + (((seq >>> 0) - this.newestRaw) | 0);
    if (ext > this.newest || this.newest - ext >= this.capacity) return false;
    if (ext < this.head) {
      if (this.started) return false;
      this.head = ext; // before the first playout: start earlier, as insert() does
    }
    const slot = ext & this.mask;
    if (this.slotLen[slot] !== 0) return false;
    const off = slot * this.maxPacketBytes;
    for (let i = 0; i < length; i++) this.data[off + i] = packet[offset + i]!;
    this.slotLen[slot] = length;
    this.slotRed[slot] = 1;
    this.stored++;
    if (ext < this.minStored) this.minStored = ext;
    this.nRedundant++;
    return true;
  }

  /**
   * Next frame to play at `nowMs` (call once per frame tick). `lateMs`: how late this pop runs
   * after the frame's play time (a stalled caller catching up); the delay that catch-up judges is
   * the one at play time, so a late pop does not look like excess to drop.
   */
  pop(nowMs: number, lateMs = 0): JitterPopResult {
    if (this.state === IDLE) return JitterPop.EMPTY;
    if (this.state === BUFFERING) {
      if (this.stored === 0) return JitterPop.EMPTY;
      // Start once the oldest packet's expected arrival is the target delay before this pop's play
      // time (a packet that came late counts from when it was expected, so the phase is restored
      // after an underrun), or a new talkspurt at the schedule the last one played at. Judged at the
      // play time, not when a late pop runs: a packet that came after the play time would set a
      // schedule its successors, coming as late, miss.
      const playAt = nowMs - lateMs;
      if (playAt < this.expectedArrival(this.minStored) + this.targetDelay && !this.resumesSchedule(playAt))
        return JitterPop.EMPTY;
      // Start (or resume after a drain) at the oldest buffered packet; a gap before it is a pause.
      const resumed = this.started;
      this.head = this.minStored;
      // Resuming after a stall, the backlog comes in a burst: frames whose turn passed more than a
      // frame ago are dropped now rather than played late and caught up slowly. (Part of catch-up:
      // off when catchUpMs is 0. Not at the first start: nothing was expected yet.)
      const due =
        Math.floor((nowMs - lateMs - this.targetDelay - this.expectedArrival(0)) * this.frameMsInv) - 1;
      // Resuming within RESUME_GAP_MS of media after the frame that was due when the buffer ran dry
      // continues the talkspurt (a stall, a burst of late packets, a loss among them): the floor
      // from before stays. Anything else (the first start, a talkspurt after a pause: its frame
      // indices jumped further) has a new phase, and a new floor.
      if (this.drainedHead < 0 || (this.head - this.drainedHead) * this.frameMs > RESUME_GAP_MS)
        this.floorSchedule = Number.POSITIVE_INFINITY;
      if (this.catchUpPops > 0 && resumed && due > this.head) {
        const to = due < this.newest ? due : this.newest;
        const before = this.nOverflow;
        this.skipTo(to);
        this.nStale += this.nOverflow - before;
        this.nOverflow = before;
      }
      // Two packets lost in a row drain a buffer with one frame of look-ahead; the packet after
      // them brings the second one's copy (RED), which rode on it and so comes a frame after its
      // turn. Resuming with the copy would put every later frame a frame behind the schedule (and
      // catch-up would later drop one: a slip). Within the talkspurt, when the copy's turn on that
      // schedule has passed and the packet that carried it is here, the copy is dropped instead.
      if (
        this.dropLateCopies &&
        resumed &&
        this.drainedHead >= 0 &&
        this.slotRed[this.head & this.mask] === 1
      ) {
        const turn = this.lastSchedule + this.head * this.frameMs;
        if (playAt - turn >= this.frameMs / 2 && this.slotLen[(this.head + 1) & this.mask] !== 0) {
          const before = this.nOverflow;
          this.skipTo(this.head + 1);
          this.nStale += this.nOverflow - before;
          this.nOverflow = before;
        }
      }
      this.state = PLAYING;
      this.started = true;
      this.windowPops = 0;
      this.windowMinDelay = Number.POSITIVE_INFINITY;
      this.windowMinSchedule = Number.POSITIVE_INFINITY;
    }

    this.lastDelay = nowMs - lateMs - this.expectedArrival(this.head);
    if (this.catchUpPops > 0) this.catchUp();

    const slot = this.head & this.mask;
    const len = this.slotLen[slot]!;
    if (len !== 0) {
      this.lastSchedule = nowMs - lateMs - this.head * this.frameMs;
      this.packet = this.views[slot]!;
      this.packetLength = len;
      this.packetSeq = this.head >>> 0;
      this.packetRedundant = this.slotRed[slot] === 1;
      this.slotLen[slot] = 0;
      this.stored--;
      this.head++;
      return JitterPop.PACKET;
    }
    if (this.stored > 0) {
      this.nLost++;
      this.nConcealed++;
      this.head++;
      return JitterPop.MISSING;
    }
    // Drained: the talkspurt ended or the next packet is late. Re-buffer. The transit baseline is
    // kept: both users key packets by a timestamp that follows the sender's clock through pauses
    // (a pause longer than the delay window starts a new baseline, see measure()).
    this.nDrains++;
    this.shrinkMs = 0; // a restart takes the right phase
    this.drainedHead = this.head;
    this.state = BUFFERING;
    this.minStored = Number.POSITIVE_INFINITY;
    return JitterPop.EMPTY;
  }

  /**
   * After a MISSING pop: whether the packet following the missing frame is buffered (its in-band FEC
   * can rebuild the lost frame). Fills `next` / `nextLength` / `nextSeq`; the packet stays buffered.
   */
  peekNext(): boolean {
    if (this.state !== PLAYING) return false;
    const slot = this.head & this.mask;
    const len = this.slotLen[slot]!;
    if (len === 0) return false;
    this.next = this.views[slot]!;
    this.nextLength = len;
    this.nextSeq = this.head >>> 0;
    return true;
  }

  /** Forgets the stream (buffered packets and delay history); counters are kept. */
  reset(): void {
    this.clearSlots();
    this.shrinkMs = 0;
    this.floorSchedule = Number.POSITIVE_INFINITY;
    this.state = IDLE;
    this.started = false;
    this.targetFrames = this.minTarget;
    this.delays.reset();
    this.peaks.reset();
    this.peakCount = 0;
    this.dqLen = 0;
    this.retarget();
    this.rebaseline = true;
    this.jitter = 0;
  }

  stats(): JitterStats {
    return {
      received: this.nReceived,
      redundant: this.nRedundant,
      late: this.nLate,
      duplicates: this.nDuplicates,
      invalid: this.nInvalid,
      lost: this.nLost,
      concealed: this.nConcealed,
      overflowDrops: this.nOverflow,
      staleDrops: this.nStale,
      drains: this.nDrains,
      resets: this.nResets,
      depth: this.depth,
      target: this.targetFrames,
      targetDelayMs: this.targetDelay,
      delayMs: this.lastDelay,
      jitterMs: this.jitter,
      delayPercentileMs: this.delays.percentile(this.percentile),
    };
  }

  private restart(ext: number, raw: number): void {
    this.state = BUFFERING;
    this.drainedHead = -1;
    this.lastSchedule = Number.NaN;
    this.started = false;
    this.head = ext;
    this.newest = ext;
    this.newestRaw = raw;
    this.minStored = Number.POSITIVE_INFINITY;
    this.rebaseline = true;
  }

  private clearSlots(): void {
    this.slotLen.fill(0);
    this.stored = 0;
  }

  /** Moves the play position forward to `to`, dropping what is buffered before it. */
  private skipTo(to: number): void {
    const playing = this.state === PLAYING;
    if (to - this.head >= this.capacity) {
      this.nOverflow += this.stored;
      if (playing) this.nLost += to - this.head - this.stored;
      this.clearSlots();
    } else {
      for (let e = this.head; e < to; e++) {
        const slot = e & this.mask;
        if (this.slotLen[slot] !== 0) {
          this.slotLen[slot] = 0;
          this.stored--;
          this.nOverflow++;
        } else if (playing) {
          this.nLost++;
        }
      }
    }
    this.head = to;
    if (this.minStored < to)
      this.minStored = this.stored === 0 ? Number.POSITIVE_INFINITY : this.firstStoredFrom(to);
  }

  private firstStoredFrom(from: number): number {
    for (let e = from; e <= this.newest; e++) if (this.slotLen[e & this.mask] !== 0) return e;
    return Number.POSITIVE_INFINITY;
  }

  /** Expected arrival of frame `ext`: the window's smallest transit plus its media time (NaN before any). */
  private expectedArrival(ext: number): number {
    return this.dqLen === 0 ? Number.NaN : this.dqVal[this.dqStart]! + ext * this.frameMs;
  }

  /**
   * Whether a new talkspurt may start now (`playAt`: this pop's play time) at the playout schedule
   * the last one ended on: its oldest frame is buffered, its frame indices jumped past
   * RESUME_GAP_MS (a pause, not an underrun: an underrun re-buffers to the target, which is how the
   * delay grows), the pause was under RESUME_SCHEDULE_MS (sender and receiver clocks drift), and
   * this pop plays it at that schedule or later (ticks come a frame apart: half a frame tells the
   * tick on that schedule from the one before it). A schedule that worked through a talkspurt
   * works for the next one on the same link: the target alone would pick the next tick whenever
   * the arrivals' lead before the tick is under its margin, a whole frame more, and keep it
   * through loud speech. If the arrivals did move later, the next frame underruns and re-buffers.
   */
  private resumesSchedule(playAt: number): boolean {
    const k = this.minStored;
    if (this.drainedHead < 0 || Number.isNaN(this.lastSchedule)) return false;
    const gapMs = (k - this.drainedHead) * this.frameMs;
    if (gapMs <= RESUME_GAP_MS || gapMs > RESUME_SCHEDULE_MS) return false;
    return playAt - k * this.frameMs >= this.lastSchedule - this.frameMs / 2;
  }

  private catchUp(): void {
    if (this.lastDelay < this.windowMinDelay) this.windowMinDelay = this.lastDelay;
    // (The delay plus the baseline it is measured from: pop time less the frame's media time.)
    const schedule = this.lastDelay + this.dqVal[this.dqStart]!;
    if (schedule < this.windowMinSchedule) this.windowMinSchedule = schedule;
    if (++this.windowPops < this.catchUpPops) return;
    const need = Math.max(this.targetDelay, this.peaks.percentile(100) + this.marginMs);
    const excessMs = this.windowMinDelay - need;
    const excess = Math.floor(excessMs * this.frameMsInv);
    const minSchedule = this.windowMinSchedule;
    this.windowPops = 0;
    this.windowMinDelay = Number.POSITIVE_INFINITY;
    this.windowMinSchedule = Number.POSITIVE_INFINITY;
    // Excess is dropped where it cannot be heard (the caller says the audio is quiet, as NetEq
    // accelerates in low-energy audio); in loud audio it waits for a quiet moment or the talkspurt's
    // end (a restart takes the right phase), unless it reaches LOUD_EXCESS_MS (then one frame stays).
    const drop = this.quiet ? excess : excess * this.frameMs >= LOUD_EXCESS_MS ? excess - 1 : 0;
    const n = drop > 0 ? Math.min(drop, this.maxCatchUp) : 0;
    if (n > 0) {
      this.skipTo(this.head + n);
      this.lastDelay -= n * this.frameMs;
    }
    // A caller that time-stretches removes what is left in loud audio by pitch periods (a few ms
    // each, inaudible in voiced speech) instead of waiting: all of the excess over `need` but
    // `stretchKeepMs`, once it is a frame or more, or once the playout schedule moved half a frame
    // later than the earliest it ran at in this talkspurt (a burst's re-buffer grew the buffer;
    // given back down to that floor). The schedule tells growth from phase and from a moved
    // baseline: on a clean link it never moves, whatever the tick's phase against the arrivals
    // (up to a frame, which time-stretching must leave alone) and wherever the arrivals go (a
    // timing advance, an early packet that lowers the transit baseline and so raises every delay),
    // while a buffer grown by one frame after a burst can have less than a frame over `need`.
    // The drop above remains for audio it cannot splice (loud and aperiodic).
    if (this.timeStretch) {
      const f = this.frameMs;
      const left = excessMs - n * f;
      const sched = minSchedule - n * f;
      const grown = sched - this.floorSchedule;
      const give = left >= f && !this.stretchGrowthOnly ? left : grown >= f / 2 ? Math.min(left, grown) : 0;
      this.shrinkMs = give > this.stretchKeepMs ? give - this.stretchKeepMs : 0;
      if (sched < this.floorSchedule) this.floorSchedule = sched;
    }
  }

  private measure(ext: number, nowMs: number): void {
    const transit = nowMs - ext * this.frameMs;
    const w = this.window;
    const cap = w + 1;
    // After a pause longer than the window the baseline is stale (clock drift, a new route).
    if (nowMs - this.lastArrivalMs > this.window * this.frameMs) this.rebaseline = true;
    this.lastArrivalMs = nowMs;
    if (this.rebaseline) {
      this.rebaseline = false;
      this.dqLen = 0;
      this.prevTransit = transit;
    }
    const d = transit - this.prevTransit;
    this.jitter += ((d < 0 ? -d : d) - this.jitter) / 16;
    this.prevTransit = transit;

    const idx = this.arrivals++;
    // Monotonic deque: values increase from front to back; the front is the window's minimum.
    while (this.dqLen > 0) {
      const back = (this.dqStart + this.dqLen - 1) % cap;
      if (this.dqVal[back]! < transit) break;
      this.dqLen--;
    }
    const at = (this.dqStart + this.dqLen) % cap;
    this.dqVal[at] = transit;
    this.dqIdx[at] = idx;
    this.dqLen++;
    while (this.dqIdx[this.dqStart]! <= idx - w) {
      this.dqStart = (this.dqStart + 1) % cap;
      this.dqLen--;
    }
    const rel = transit - this.dqVal[this.dqStart]!;
    this.delays.record(rel);
    this.peaks.record(rel);
    if (rel > this.targetDelay + this.peakMinMs) this.notePeak(rel, nowMs);
    if (++this.sinceRetarget >= 16) {
      this.sinceRetarget = 0;
      this.retarget();
    }
  }

  /**
   * NetEq's delay peak detector: a packet later than the target is a peak (late packets within
   * PEAK_GROUP_MS are one peak). While peaks recur, the target covers the highest of them, so a
   * machine or link that stalls now and then stops underrunning after the second stall; peak mode
   * ends when no peak came for twice the longest interval between the recent ones (at most
   * PEAK_HOLD_MS), so a single burst is forgotten quickly.
   */
  private notePeak(height: number, nowMs: number): void {
    const last =
      this.peakCount > 0 ? this.peakAt[(this.peakCount - 1) & (PEAKS - 1)]! : Number.NEGATIVE_INFINITY;
    if (nowMs - last < PEAK_GROUP_MS) {
      const i = (this.peakCount - 1) & (PEAKS - 1);
      if (height > this.peakHeight[i]!) this.peakHeight[i] = height;
    } else {
      const i = this.peakCount & (PEAKS - 1);
      this.peakAt[i] = nowMs;
      this.peakHeight[i] = height;
      this.peakCount++;
    }
    this.retarget(nowMs);
  }

  /** The peak height the target must cover now (0 outside peak mode). */
  private peakNeed(nowMs: number): number {
    const n = Math.min(this.peakCount, PEAKS);
    const newest = (this.peakCount - 1) & (PEAKS - 1);
    let longest = 0;
    let highest = this.peakHeight[newest]!;
    let used = 1;
    for (let k = 1; k < n; k++) {
      const i = (this.peakCount - 1 - k) & (PEAKS - 1);
      const at = this.peakAt[i]!;
      if (nowMs - at > PEAK_HOLD_MS) break;
      longest = Math.max(longest, this.peakAt[(i + 1) & (PEAKS - 1)]! - at);
      highest = Math.max(highest, this.peakHeight[i]!);
      used++;
    }
    if (used < 2 || nowMs - this.peakAt[newest]! > 2 * longest) return 0;
    return highest;
  }

  private retarget(nowMs: number = this.lastArrivalMs): void {
    const f = this.frameMs;
    let ms: number;
    if (this.adaptive) {
      const p = this.delays.count === 0 ? 0 : this.delays.percentile(this.percentile);
      ms = Math.min(Math.max(p, (this.minTarget - 1) * f), (this.maxTarget - 1) * f) + this.marginMs;
    } else ms = (this.minTarget - 1) * f + this.marginMs;
    if (this.adaptive) {
      const peak = this.peakNeed(nowMs);
      if (peak > 0) ms = Math.max(ms, Math.min(peak, (this.maxTarget - 1) * f) + this.marginMs);
    }
    ms += this.lookAheadFrames * f;
    this.targetDelay = ms;
    // In frames: how many are buffered at a pop when packets come at their expected time.
    this.targetFrames = 1 + Math.floor(ms / f);
  }
}
