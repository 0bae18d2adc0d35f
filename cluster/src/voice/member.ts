import { MAX_PAYLOAD_BYTES, STREAM_SOURCE_BYTES, writeStreamSource, type UserId } from '@voice/protocol';
import {
  FramePlayout,
  Histogram,
  VoiceActivityDetector,
  type JitterBuffer,
  type OpusDecoder,
  type OpusEncoder,
} from '@voice/media';
import type { TokenBucket } from '../ratelimit.js';
import { streamForwardBudget } from './stream-budget.js';
import type { VoiceEndpoint } from './endpoint.js';
import { ArrivalPhases } from './arrival-phases.js';
import { FrameWindow } from './frame-window.js';
import { RedDownFrame, type RedDownSources } from './red-down.js';

/** Phase margin of the members' jitter buffers, ms (JitterBufferOptions.marginMs). */
export const SERVER_MARGIN_MS = 2;

/** One mix encoder of a channel (a stream key: the shared mix, or one member's mix-minus). */
export interface EncoderSlot {
  encoder: OpusEncoder;
  /** The frame it encoded at `lastTick`, and the one before (swapped, not copied). */
  pcm: Int16Array;
  prevPcm: Int16Array;
  out: Uint8Array;
  len: number;
  lastTick: number;
  prevTick: number;
}

/** One member of a channel, as the actor sees it. Owned by the actor. */
export class VoiceMember {
  /** Its packets to frames: jitter buffer, decode, FEC, concealment (shared with the client). */
  readonly stream: FramePlayout;
  /** This tick's frame, and the previous tick's (the two swap every tick: nothing is copied). */
  pcm: Int16Array;
  prevPcm: Int16Array;
  /** Tick whose audio `pcm` holds (decoded, FEC or concealed), and the same for `prevPcm`. */
  pcmTick = -1;
  prevPcmTick = -1;
  readonly frame: Float32Array;
  readonly vad: VoiceActivityDetector;
  /** Arrival time by sequence (low bits), to measure how long the server held each frame. */
  readonly arrivals = new Float64Array(64);
  /**
   * Arrival phase of its frames since the last phase round (advance.ts): the hold less the whole
   * frames its buffer means to hold, on a line.
   */
  readonly phase: ArrivalPhases;
  /**
   * This tick's hold of its frame, ms: arrival to the tick, plus where the frame's audio starts in
   * the tick's output (after audio a time-stretched playout still held).
   */
  tickHold = 0;
  /** The same without that offset, modulo a frame: the tick's phase against its arrival. */
  tickPhase = 0;
  /** This tick's hold of its frame, arrival to the tick, ms (what `recordPhase` takes). */
  tickArrivalHold = 0;
  /** The last tick whose mix, sent to some listener, had this member's frame in it. */
  mixedTick = -1;
  /**
   * Server-added delay of this member's frames that waited for a tick (mixed, or forwarded at the
   * tick), the last 128 (2.5 s of 20 ms frames; small, as every member has one): what the channel's
   * phase and the timing advance shorten.
   */
  readonly tickHoldMs = new Histogram({ bucketWidth: 0.5, buckets: 200, window: 128 });
  /** The same holds modulo a frame: the tick's phase against this member's arrivals. */
  readonly tickPhaseMs: Histogram;
  /** Its frames concealed or packets too late since the last phase round (advance.ts). */
  missedInRound = 0;
  /** Timing advances sent to this member (its binding): the last `seq`, and when (ms). */
  advanceSeq = 0;
  advancedAt = Number.NEGATIVE_INFINITY;
  /** What the mixer honours, copied from the session on every update. */
  heard = true;
  deaf = false;
  gains: Map<string, number> | undefined = undefined;
  speaking = false;
  outStarted = false;
  packetsIn = 0;
  packetsOut = 0;
  /** Tick in which this member was last mixed as a speaker. */
  spokeTick = -1;
  /** The frame the next tick's mix waits for from this speaker, not yet in (-1: none; mixOnReady). */
  awaitFrame = -1;
  /** The tick that fixed `fwdOffset` for a run starting at a tick (its listeners share it). */
  fwdOffsetTick = -1;
  /** This tick's Opus packet as received (forwarded as is to a listener who hears only this speaker). */
  readonly raw = new Uint8Array(MAX_PAYLOAD_BYTES);
  rawLen = 0;
  /** Frame index of `raw`. */
  rawSeq = 0;
  /** This tick's frame is audio its playout held (time-stretch), not a packet: no gap to count. */
  rawHeld = false;
  /** As a listener: the lone speaker whose packets it gets as they arrive, or null. */
  soloFrom: VoiceMember | null = null;
  /**
   * As a listener: the run it left before this tick, when a new speaker's first packet came before
   * that run's frame for the tick (it hears both in the tick's mix; null otherwise).
   */
  cutFrom: VoiceMember | null = null;
  /** As a listener: the mix encoder it was last sent, and when. */
  heardSlot: EncoderSlot | null = null;
  heardTick = -1;
  /** As a speaker: listeners whose soloFrom is this member, as of the last tick. */
  soloListeners = 0;
  /** As a forwarded speaker: its frame index + fwdOffset = the channel media frame it goes out as. */
  fwdOffset = 0;
  /** Frames already forwarded in the current run (inactive: no run). */
  readonly #forwarded = new FrameWindow();
  /**
   * As a speaker whose forwarding run ended: its offset, and the media frame of the newest packet
   * it sent (a run that breaks off in a stall resumes on it: ForwardRuns#startSoloRun).
   */
  resumeOffset = 0;
  resumeTop = -0x4000_0000;
  /** As a listener: the media frame of the newest packet it was sent. */
  lastOutFrame = -0x4000_0000;
  /** As a listener: the media frames it was sent in this talkspurt (the newest and the 32 before). */
  readonly sentOut = new FrameWindow();
  /** Whether this tick's `raw` frame had already been forwarded when the tick began. */
  rawForwarded = false;
  /** Encoder stream keys of this member's own mixes, built once rather than per tick. */
  readonly minusKey: string;
  readonly ownKey: string;
  active = true;
  /** Its binding was handed over: it plays out what it holds, then only listens (ChannelCore.retireMember). */
  retiring = false;
  retiredTicks = 0;
  /** Packets of this member waiting in the channel inbox (its per-member quota). */
  inboxQueued = 0;
  /** As a listener: speakers it may take as STREAM packets (the session's grant; 1: mixes only). */
  streams = 1;
  /** As a listener: reads RED packets (the session's grant, README 9.1): forwards keep their RED block. */
  red = false;
  /**
   * As a listener granted RED: its HEARTBEATs' downstream counts (README 8.3), the last ones read,
   * and until when (performance.now() ms) the server adds RED to what it sends it (over 1 % loss).
   */
  downReceived = -1;
  downLost = 0;
  redDownUntil = Number.NEGATIVE_INFINITY;
  /** RED on what it is sent, judged at each tick from `redDownUntil`. */
  redDown = false;
  /** The last AUDIO frame it was sent (on the media clock), repeated in the next with `redDown`. */
  readonly lastSent = new RedDownFrame(MAX_PAYLOAD_BYTES);
  /** With `redDown` and streams granted: the last STREAM frame it was sent of each speaker. */
  redStreams: RedDownSources | null = null;
  /**
   * As a speaker: frames whose own packet reached the server (a RED copy of a frame not among them
   * rebuilds upstream loss for every listener).
   */
  readonly received = new FrameWindow();
  /** As a listener: takes every speaker it hears as STREAM packets until the next tick (stream-routing.ts). */
  streamMode = false;
  /** As a speaker: it sent audio its playout still plays (judged before the tick pops it). */
  sending = false;
  /** As a speaker: some listener hears it in a mix this tick (so it is decoded, and advanced). */
  inMix = false;
  /** As a speaker: its source bytes in a STREAM payload, written once. */
  readonly source = new Uint8Array(STREAM_SOURCE_BYTES);
  /** As a speaker: STREAM forwards, one frame per frame period on average, bursts of a few frames. */
  readonly forwardBudget: TokenBucket;

  constructor(
    readonly endpoint: VoiceEndpoint,
    readonly userId: UserId,
    frameSamples: number,
    readonly frameMs: number,
    decoder: OpusDecoder,
    timeStretch: boolean,
    minBufferFrames = 1,
  ) {
    // A small phase margin: the tick's own lateness must not turn an on-time packet into an underrun.
    // Time-stretching gives back a frame a late burst added, by pitch periods in loud audio, all of
    // it (stretchKeepMs 0): the tick pops at a fixed phase, so no cushion is needed beyond the margin.
    // Only what a re-buffer added (stretchGrowthOnly): a clean link's mixes stay sample-exact, and
    // its phase is the timing advance's to move.
    // Only a packet a frame later than the target is a delay peak (NetEq asks twice the target, or
    // 78 ms more): with a target of a few ms, scheduling noise would otherwise put the buffer in
    // peak mode, and the next real burst's delay would be held for seconds, not given back. (With
    // time-stretching off, the buffer is as it was: a burst's frame stays anyway.)
    this.stream = new FramePlayout({
      frameSamples,
      decoder,
      timeStretch,
      jitter: {
        marginMs: SERVER_MARGIN_MS,
        minTargetFrames: minBufferFrames,
        stretchKeepMs: 0,
        stretchGrowthOnly: true,
        peakMinMs: timeStretch ? frameMs : 0,
      },
    });
    this.pcm = new Int16Array(frameSamples);
    this.prevPcm = new Int16Array(frameSamples);
    this.frame = new Float32Array(frameSamples);
    this.vad = new VoiceActivityDetector({ frameMs });
    // About 2 s of arrivals (a phase round): 128 frames of 20 ms, the latest 128 of 10 ms.
    this.phase = new ArrivalPhases(frameMs, 128, false);
    this.tickPhaseMs = new Histogram({ bucketWidth: 0.1, buckets: Math.ceil(frameMs / 0.1), window: 128 });
    writeStreamSource(this.source, 0, userId);
    this.forwardBudget = streamForwardBudget(frameMs);
    this.minusKey = `minus:${userId}`;
    this.ownKey = `own:${userId}`;
  }

  get jitter(): JitterBuffer {
    return this.stream.jitter;
  }

  /**
   * Records a mixed frame's hold for the timing advance: less the whole frames its buffer means to
   * hold (look-ahead, a grown target), on a line. A hold of a frame plus 1 ms where the buffer needs
   * 3 ms is 21 ms of phase (send later by 18), not 1 (modulo a frame), which an earlier send would
   * only lengthen by a frame.
   */
  recordPhase(holdMs: number): void {
    const f = this.frameMs;
    this.phase.record(holdMs - f * Math.floor(Math.max(0, this.jitter.targetDelayMs - SERVER_MARGIN_MS) / f));
  }

  /** Whether a forwarding run is open. */
  get fwdActive(): boolean {
    return this.#forwarded.active;
  }

  /** The newest frame forwarded in the current run. */
  get fwdTop(): number {
    return this.#forwarded.top;
  }

  /** Whether frame `k` of this speaker went out already in the current forwarding run. */
  wasForwarded(k: number): boolean {
    return this.#forwarded.has(k);
  }

  /** Marks frame `k` forwarded; the first mark opens a run. */
  markForwarded(k: number): void {
    this.#forwarded.add(k);
  }

  /** Whether frame `k`'s own packet arrived (frames older than the 32 tracked count as arrived). */
  wasReceived(k: number): boolean {
    return this.received.has(k);
  }

  noteReceived(k: number): void {
    this.received.add(k);
  }

  /** Ends a forwarding run: the next one starts with a new media-clock offset. */
  endForwarding(): void {
    if (this.#forwarded.active) {
      this.resumeOffset = this.fwdOffset;
      this.resumeTop = (this.#forwarded.top + this.fwdOffset) | 0;
    }
    this.#forwarded.clear();
    this.soloListeners = 0;
  }
}
