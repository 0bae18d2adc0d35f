import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceFlags,
  VoicePacketType,
  createRedBlock,
  readRedBlock,
  writeRedBlock,
  type ChannelId,
  type VoiceHeader,
  type VoiceSettings,
} from '@voice/protocol';
import {
  Histogram,
  JitterInsert,
  MixGroups,
  PlayoutFrame,
  VadEvent,
  int16ToFloat,
  mixToInt16,
  type OpusFactory,
} from '@voice/media';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import { PacketInbox } from './inbox.js';
import { StretchTotals, readStretchFigures, type StretchFigures } from './stretch-totals.js';
import { OveruseDetector } from './overuse.js';
import { VoiceMember, type EncoderSlot } from './member.js';
import { StreamForwarder } from './stream-forward.js';
import { routeTick } from './stream-routing.js';

export const SAMPLE_RATE = 48_000;
/** Most members whose audio is mixed in one tick; louder channels are a moderation problem. */
export const MAX_SPEAKERS = 32;
const UINT32 = 0x1_0000_0000;
/** Most frames one tick plays to make up for ticks that did not run. */
const MAX_MAKEUP_FRAMES = 4;
/**
 * How far ahead of the channel media clock a packet may be forwarded on arrival, in frames. A real
 * speaker's next frame goes out as the next tick's (1); one more absorbs an early arrival. A packet
 * further ahead is not due: it waits in the speaker's jitter buffer and the tick forwards it when it
 * plays, so a sender faster than real time (a flood) reaches a listener at one frame per period.
 */
const FORWARD_AHEAD_FRAMES = 2;
/** A run that broke off this recently resumes its offset when its speaker catches up (ms). */
const RESUME_RUN_MS = 500;
/** An encoder unused for this many ticks is freed (its stream ended). */
const ENCODER_IDLE_TICKS = 100;
/** A retiring member (its binding handed over) stops speaking at the latest after this many ticks. */
const RETIRE_MAX_TICKS = 25;
/** An Opus packet this short is DTX or silence (a TOC byte and at most two more). */
const SILENT_PACKET_BYTES = 3;
/** The level an undecoded frame of audio counts as for voice activity, dBFS. */
const UNDECODED_SPEECH_DBFS = 0;

/** `#soloSource` result for a listener who hears no one this tick. */
const NOBODY = Symbol('nobody');

/** What the channel needs from the outside world, passed in so the core stays testable. */
export interface ChannelIo {
  /** Sends a sealed packet to a member over its current transport. */
  send(ep: VoiceEndpoint, packet: Uint8Array, length: number): void;
  /** Voice activity changed (already hysteresis-filtered by the VAD). */
  speaking(ep: VoiceEndpoint, speaking: boolean): void;
  /** The channel changed its encoder complexity for CPU: lowered for overuse, or raised back. */
  adapted?(channel: ChannelId, complexity: number, direction: 'down' | 'up'): void;
  counters: VoiceCounters;
}

export interface ChannelStats extends StretchFigures {
  members: number;
  speakers: number;
  ticks: number;
  packetsIn: number;
  packetsOut: number;
  late: number;
  concealed: number;
  /** Of the concealed frames, those rebuilt from the next packet's in-band FEC. */
  fecRecovered: number;
  /** Frames lost upstream and played from the RED copy the next packet carried (not concealed). */
  redRecovered: number;
  inboxOverflows: number;
  /** Packets refused because their member already had its quota waiting in the inbox. */
  inboxOverQuota: number;
  encodes: number;
  /** Members' packets decoded (a speaker nobody hears in a mix is not: its listeners stream it). */
  decodes: number;
  /** STREAM packets sent: speakers' packets forwarded on arrival to listeners that mix themselves. */
  streamed: number;
  /** Opus encoders alive (one per distinct mix stream; freed after ENCODER_IDLE_TICKS unused). */
  encoders: number;
  /** Listener-frames sent as the lone speaker's own packet, without re-encoding. */
  forwarded: number;
  /** Listener-frames not sent because the lone speaker's frame was lost (the client conceals). */
  soloGaps: number;
  /** Mix encoders primed with the frame a listener was sent last tick before their first frame (a switch). */
  encoderPrimes: number;
  /** Packets of a lone speaker not forwarded on arrival because they were ahead of real time. */
  forwardDeferred: number;
  bufferFramesMax: number;
  decodeUs: Histogram;
  encodeUs: Histogram;
  holdMs: Histogram;
  /** Whole tick, inbox to last send. */
  tickUs: Histogram;
  /** Encoder complexity in use: below the channel's setting while it is over its CPU budget. */
  complexity: number;
  /** Times the complexity was lowered for CPU overuse. */
  cpuAdaptations: number;
}

export interface ChannelCoreOptions {
  /** Bounded inbox (default 512 packets; the oldest is dropped when full). */
  readonly inboxCapacity?: number;
  /** Packets one member may have waiting in the inbox (default 64; more are refused and counted). */
  readonly inboxQuota?: number;
  /** Mean tick time above which encoder complexity steps down (default: a tenth of the frame). */
  readonly tickBudgetMs?: number;
  /**
   * Time-stretch the members' playouts (FramePlayoutOptions.timeStretch; default true): a buffer a
   * late burst grew shrinks back by pitch periods in loud audio, not only in a quiet moment.
   */
  readonly timeStretch?: boolean;
  /** The fewest frames the members' jitter buffers target (default 1: the phase margin alone). */
  readonly minBufferFrames?: number;
}

/**
 * The state a channel actor owns: its members' jitter buffers and decoders, the mixer and the
 * encoders. `tick()` runs once per frame: drain the inbox into jitter buffers, pop and decode one
 * frame per member, detect voice activity, mix (mix-minus for speakers, one shared mix for silent
 * listeners with default volumes), encode each distinct mix once, seal and send per listener.
 */
export class ChannelCore {
  readonly frameSamples: number;
  readonly inbox: PacketInbox<VoiceMember>;
  readonly members: VoiceMember[] = [];
  #mixer: MixGroups;
  readonly #speakerIds: string[] = [];
  readonly #speakerFrames: Float32Array[] = [];
  readonly #speakerMembers: VoiceMember[] = [];
  /** Members whose audio plays or is buffered, judged before a tick pops (stream-routing.ts). */
  readonly #senders: VoiceMember[] = [];
  readonly #streams: StreamForwarder;
  /** Speakers mixed in the previous tick (0: the mix's talkspurts have ended). */
  #lastMixed = 0;
  readonly #encoders = new Map<string, EncoderSlot>();
  /** A RED block being split (README 9.1), and the redundant frame copied out to send on its own. */
  readonly #red = createRedBlock();
  readonly #redCopy = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** The primary frame of a RED packet, for listeners without RED. */
  readonly #primary = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** A RED block built for a listener on a lossy downlink. */
  readonly #redOut = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** Distinct mix buffer -> its encoded packet, for this tick only. */
  readonly #encodedBy = new Map<Float32Array, EncoderSlot>();
  readonly #header: VoiceHeader = {
    type: VoicePacketType.AUDIO,
    flags: 0,
    voiceId: 0,
    sequence: 0,
    timestamp: 0,
  };
  readonly #sendBuf = new Uint8Array(MAX_PACKET_BYTES);
  #tick = 0;
  /** Outgoing media clock, in frames: advances with time, not with ticks run. */
  #mediaFrame = 0;
  /** When the latest tick was due (performance clock, ms): the media clock between ticks. */
  #dueAt = 0;
  /** How long after a forwarding run ends a new one may resume its offset (`#resumes`), frames. */
  readonly #resumeFrames: number;
  #lastSpeakers = 0;
  /**
   * Members whose session has another member here too: a binding handed over (protocol README
   * 8.4) keeps the old one until the new one carries audio. Both are the same person: neither
   * hears the other, and the old one leaves once its buffer has played out.
   */
  #twins = 0;
  /** Summed when read (a metrics scrape), from the members' own counts: nothing per tick. */
  readonly #stretch = new StretchTotals(this.members);
  readonly stats: ChannelStats = readStretchFigures(
    {
      members: 0,
      speakers: 0,
      ticks: 0,
      packetsIn: 0,
      packetsOut: 0,
      late: 0,
      concealed: 0,
      fecRecovered: 0,
      redRecovered: 0,
      inboxOverflows: 0,
      inboxOverQuota: 0,
      encodes: 0,
      decodes: 0,
      streamed: 0,
      encoders: 0,
      forwarded: 0,
      soloGaps: 0,
      encoderPrimes: 0,
      forwardDeferred: 0,
      bufferFramesMax: 0,
      decodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
      encodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
      holdMs: new Histogram({ bucketWidth: 0.5, buckets: 800, window: 4096 }),
      tickUs: new Histogram({ bucketWidth: 20, buckets: 1000, window: 4096 }),
      complexity: 0,
      cpuAdaptations: 0,
    },
    this.#stretch,
  );
  readonly #overuse: OveruseDetector;
  /** Hold times since the last phase decision (see ServerVoicePlane's alignment). */
  readonly alignHold = new Histogram({ bucketWidth: 0.25, buckets: 200 });
  readonly #timeStretch: boolean;
  readonly #minBufferFrames: number;

  constructor(
    readonly id: ChannelId,
    public settings: VoiceSettings,
    private readonly opus: OpusFactory,
    private readonly io: ChannelIo,
    options: ChannelCoreOptions = {},
  ) {
    this.frameSamples = (SAMPLE_RATE / 1000) * settings.frameMs;
    const capacity = options.inboxCapacity ?? 512;
    this.inbox = new PacketInbox(capacity, options.inboxQuota ?? Math.min(64, capacity));
    this.#overuse = new OveruseDetector(settings.complexity, {
      budgetMs: options.tickBudgetMs ?? settings.frameMs / 10,
    });
    this.stats.complexity = settings.complexity;
    this.#mixer = new MixGroups(this.frameSamples, MAX_SPEAKERS);
    this.#timeStretch = options.timeStretch ?? true;
    this.#streams = new StreamForwarder(io.counters, (ep, packet, length) => io.send(ep, packet, length));
    this.#minBufferFrames = options.minBufferFrames ?? 1;
    this.#resumeFrames = Math.round(RESUME_RUN_MS / settings.frameMs);
  }

  addMember(ep: VoiceEndpoint): VoiceMember {
    if (this.#sibling(ep.session.userId, null)) this.#twins++;
    const m = new VoiceMember(
      ep,
      ep.session.userId,
      this.frameSamples,
      this.settings.frameMs,
      this.opus.createDecoder({ frameSamples: this.frameSamples }),
      this.#timeStretch,
      this.#minBufferFrames,
    );
    ep.member = m;
    this.members.push(m);
    this.updateMember(m);
    // Until its first tick routes it, a listener granted streams counts as streaming (what it will
    // most likely do): a packet arriving before that tick must not start a forwarding run to it,
    // or it would get the speaker twice, as AUDIO and as STREAM packets, and play both.
    m.streamMode = m.streams >= 2 && !m.deaf && m.gains === undefined;
    this.stats.members = this.members.length;
    return m;
  }

  removeMember(m: VoiceMember): void {
    if (!m.active) return;
    m.active = false;
    // A rekey replaces the member while the session stays in the channel: clear its indicator
    // (unless the session's other member speaks: then it is still speaking).
    if (m.speaking) this.#setSpeaking(m, false);
    const i = this.members.indexOf(m);
    if (i >= 0) this.members.splice(i, 1);
    const twin = this.#sibling(m.userId, m);
    if (twin) this.#twins--;
    // The mixer knows a person by user id: its twin still listens under it.
    else this.#mixer.removeListener(m.userId);
    for (const l of this.members) if (l.soloFrom === m) l.soloFrom = null;
    m.soloFrom = null;
    m.endForwarding();
    const ts = m.stream.stretch;
    if (ts) this.#stretch.retire(ts);
    m.stream.close();
    this.stats.members = this.members.length;
  }

  /**
   * The session's binding was handed over (protocol README 8.4): this member takes no more packets
   * and stops being a speaker once its buffer has played out, so the speaker's last frames on the
   * old binding are heard before its first on the new one; it leaves when the plane removes it.
   */
  retireMember(m: VoiceMember): void {
    if (m.active) m.retiring = true;
  }

  /** Another active member of the same user than `not`, or null. */
  #sibling(userId: string, not: VoiceMember | null): VoiceMember | null {
    for (let i = 0; i < this.members.length; i++) {
      const o = this.members[i]!;
      if (o !== not && o.userId === userId) return o;
    }
    return null;
  }

  /** Copies mute, deafen and volumes from the session. Deafened members are not heard either (as on Discord). */
  updateMember(m: VoiceMember): void {
    const s = m.endpoint.session;
    m.streams = s.streams;
    m.red = s.red;
    m.heard = !s.selfMute && !s.serverMute && !s.selfDeaf;
    m.deaf = s.selfDeaf;
    if (s.volumes.size === 0) m.gains = undefined;
    else {
      m.gains = new Map();
      for (const [uid, pct] of s.volumes) m.gains.set(uid, pct / 100);
    }
    if (m.deaf) this.#mixer.removeListener(m.userId);
    else this.#mixer.setListener(m.userId, m.gains);
    if (!m.heard) {
      // Not heard: no longer speaking, and the detector starts afresh, else it stays "in speech"
      // through the mute and never says START again when the member is heard once more.
      m.vad.reset();
      this.#setSpeaking(m, false);
    }
  }

  /**
   * Live codec changes: bitrate and complexity apply at once. The frame size is fixed for the life
   * of the channel actor (clients were bound to it); a change applies when the channel next starts.
   */
  updateSettings(settings: VoiceSettings): void {
    this.settings = { ...settings, frameMs: this.settings.frameMs };
    this.#overuse.configure(settings.complexity);
    this.stats.complexity = settings.complexity;
    for (const slot of this.#encoders.values()) {
      slot.encoder.setBitrate(settings.bitrate);
      slot.encoder.setComplexity(settings.complexity);
    }
  }

  #adaptComplexity(tickMs: number): void {
    const before = this.#overuse.complexity;
    if (!this.#overuse.record(tickMs)) return;
    const c = this.#overuse.complexity;
    for (const slot of this.#encoders.values()) slot.encoder.setComplexity(c);
    this.stats.complexity = c;
    this.stats.cpuAdaptations = this.#overuse.adaptedDown;
    this.io.adapted?.(this.id, c, c < before ? 'down' : 'up');
  }

  /**
   * One frame. `frames` is how many frame periods passed since the previous tick (more than 1 after
   * a stall or a skipped tick): the outgoing media clock follows time, so the gap is a timestamp
   * jump the clients conceal rather than audio silently running late. `lateMs`: how late this tick
   * runs after it was due (the jitter buffers judge their delay at the due time).
   */
  tick(now: number, frames = 1, lateMs = 0): void {
    const t0 = performance.now();
    // Ticks that did not run (the actor was still busy, or the process stalled) are made up: each
    // member's buffer plays one frame per frame period, else it would grow by a frame per skipped
    // tick and catch-up would later drop one (a slip). Beyond MAX_MAKEUP_FRAMES the media clock
    // jumps instead (a gap the clients conceal).
    const passes = Math.min(Math.max(1, frames), MAX_MAKEUP_FRAMES);
    this.#mediaFrame += Math.max(1, frames) - passes;
    this.#drain();
    for (let p = passes - 1; p >= 0; p--) this.#tickBody(now, lateMs + p * this.settings.frameMs);
    this.#dueAt = now - lateMs;
    const ms = performance.now() - t0;
    this.stats.tickUs.record(ms * 1000);
    this.#adaptComplexity(ms);
  }

  #tickBody(now: number, lateMs: number): void {
    this.#tick++;
    this.#mediaFrame++;
    this.stats.ticks++;
    routeTick(this.members, this.#senders, this.#tick, MAX_SPEAKERS);
    this.#dropStreamingSolos();
    // Downstream RED (README 9.1): judged once a tick, not per packet.
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      m.redDown = m.red && now < m.redDownUntil;
    }
    let count = 0;
    let heardCount = 0;
    let depthMax = 0;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      // Played out (or taking too long): no longer a speaker; it still listens until it leaves.
      if (m.retiring && (m.jitter.depth === 0 || ++m.retiredTicks > RETIRE_MAX_TICKS)) continue;
      const t0 = performance.now();
      const held = m.prevPcm;
      m.prevPcm = m.pcm;
      m.prevPcmTick = m.pcmTick;
      m.pcm = held;
      // Nobody hears this member in a mix (its listeners stream it, or it is silent): its playout
      // advances without decoding, and decodes its last packets first when a mix needs it again.
      if (!m.inMix && !this.#timeStretch) {
        if (this.#skipFrame(m, now, lateMs)) heardCount++;
        continue;
      }
      const kind = m.stream.next(now, m.pcm, lateMs);
      // With time-stretching a tick may produce no new frame (the playout held one, decoded
      // earlier, after a preemptive expand): its audio is mixed, nothing is counted twice.
      const fresh = m.stream.produced > 0;
      if (kind === PlayoutFrame.SILENT) {
        if (m.speaking && m.vad.update(-120) === VadEvent.STOP) this.#setSpeaking(m, false);
        continue;
      }
      if (kind === PlayoutFrame.ERROR) {
        // Corrupt, or another frame size than the channel's: refuse rather than garble.
        if (fresh) this.io.counters.drops.decode_error++;
        continue;
      }
      if (fresh) {
        this.stats.decodeUs.record((performance.now() - t0) * 1000);
        this.stats.decodes++;
      }
      m.pcmTick = this.#tick;
      m.rawHeld = !fresh;
      if (!fresh) {
        // No packet of its own this tick: a lone listener is sent nothing (the packets were all
        // forwarded), others hear it in the mix.
        m.rawLen = 0;
      } else if (kind === PlayoutFrame.DECODED) {
        if (m.jitter.packetRedundant) this.#redRecovered();
        const len = (m.rawLen = m.stream.packetLength);
        const src = m.stream.packet;
        for (let b = 0; b < len; b++) m.raw[b] = src[b]!;
        m.rawSeq = m.stream.packetSeq;
        m.rawForwarded = m.wasForwarded(m.rawSeq);
        const hold = now - m.arrivals[m.rawSeq & 63]!;
        // The tick's phase against the arrivals is the hold less the whole frames buffered ahead of
        // it (FEC look-ahead, a grown target): judged on the full hold, alignment moved the tick
        // a frame too early, the packets then came after it and the buffer re-grew by one (a slip).
        const phase = hold % this.settings.frameMs;
        // Only a frame someone hears in a mix waits for the tick: a streamed one is not advanced.
        // (The timing advance's phases wait for the sends: see #recordHolds.)
        if (m.inMix) this.alignHold.record(phase);
        m.tickArrivalHold = hold;
        // Recorded once this tick's sends are known (#recordHolds). The delay heard also counts
        // the audio a stretched playout played before this packet's (0 when nothing was stretched).
        m.tickHold = hold + m.stream.packetOffset / (SAMPLE_RATE / 1000);
        m.tickPhase = phase;
      } else {
        m.rawLen = 0;
        this.stats.concealed++;
        m.missedInRound++;
        if (kind === PlayoutFrame.FEC) this.stats.fecRecovered++;
      }
      if (m.jitter.depth > depthMax) depthMax = m.jitter.depth;
      if (!m.heard) continue;
      heardCount++;
      int16ToFloat(m.pcm, m.frame);
      const ev = m.vad.process(m.frame);
      if (ev === VadEvent.START) this.#setSpeaking(m, true);
      else if (ev === VadEvent.STOP) this.#setSpeaking(m, false);
      if (count < MAX_SPEAKERS) {
        this.#speakerIds[count] = m.userId;
        this.#speakerFrames[count] = m.frame;
        this.#speakerMembers[count] = m;
        m.spokeTick = this.#tick;
        count++;
      }
    }
    this.stats.bufferFramesMax = depthMax;
    this.stats.speakers = heardCount;
    // Silence, or only streamed speakers: no mix to send. Clients play silence when their buffer runs dry.
    if (count > 0) this.#mixAndSend(count);
    else if (this.#lastMixed > 0) this.#endTalkspurts();
    this.#lastMixed = count;
    this.#lastSpeakers = heardCount;
    if ((this.#tick & 127) === 0) this.#freeIdleEncoders();
  }

  /**
   * A listener that streams takes its speakers as STREAM packets only: any forwarding run it was
   * part of (started before it was routed, or before it streamed) ends for it now. The mix path
   * resets these when it runs; a tick that mixes nothing (everyone streams) does not reach it.
   */
  #dropStreamingSolos(): void {
    const members = this.members;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      const sp = l.soloFrom;
      if (!l.streamMode || sp === null) continue;
      l.soloFrom = null;
      if (--sp.soloListeners <= 0) sp.endForwarding();
    }
  }

  /**
   * A member's frame popped without decoding (no mix needs it). Voice activity is judged from the
   * packet (audio longer than DTX counts as speech), not its level: nothing was decoded to measure.
   * Returns whether the member is heard this tick.
   */
  #skipFrame(m: VoiceMember, now: number, lateMs: number): boolean {
    const kind = m.stream.skip(now, lateMs);
    m.rawLen = 0;
    m.rawHeld = false;
    if (kind === PlayoutFrame.SILENT) {
      if (m.speaking && m.vad.update(-120) === VadEvent.STOP) this.#setSpeaking(m, false);
      return false;
    }
    m.pcmTick = this.#tick;
    if (kind === PlayoutFrame.DECODED && m.jitter.packetRedundant) this.#redRecovered();
    if (kind !== PlayoutFrame.DECODED) {
      this.stats.concealed++;
      m.missedInRound++;
      if (kind === PlayoutFrame.FEC) this.stats.fecRecovered++;
    }
    if (!m.heard) return false;
    const speech =
      kind === PlayoutFrame.FEC ||
      (kind === PlayoutFrame.DECODED && m.stream.packetLength > SILENT_PACKET_BYTES);
    const ev = m.vad.update(speech ? UNDECODED_SPEECH_DBFS : -120);
    if (ev === VadEvent.START) this.#setSpeaking(m, true);
    else if (ev === VadEvent.STOP) this.#setSpeaking(m, false);
    return true;
  }

  #redRecovered(): void {
    this.stats.redRecovered++;
    this.io.counters.redRecovered++;
  }

  #drain(): void {
    const inbox = this.inbox;
    this.stats.inboxOverflows = inbox.overflows;
    this.stats.inboxOverQuota = inbox.overQuota;
    for (let i = inbox.peekIndex(); i >= 0; i = inbox.peekIndex()) {
      const m = inbox.owner[i];
      if (m?.active) {
        const seq = inbox.seq[i]!;
        const arrival = inbox.arrival[i]!;
        const view = inbox.views[i]!;
        const red = this.#red;
        // A RED packet (checked at the ingress): the primary as any packet, then its copy of the
        // frame before where that one is missing and not yet played.
        const isRed =
          (inbox.flags[i]! & VoiceFlags.RED) !== 0 && readRedBlock(view, 0, inbox.length[i]!, red);
        const r = isRed
          ? m.stream.insert(seq, view, red.primaryLength, arrival, red.primaryOffset)
          : m.stream.insert(seq, view, inbox.length[i]!, arrival);
        if (isRed) m.stream.insertRedundant((seq - 1) >>> 0, view, red.redLength, red.redOffset);
        if (r === JitterInsert.ACCEPTED) {
          m.arrivals[seq & 63] = arrival;
          m.packetsIn++;
          this.stats.packetsIn++;
        } else if (r === JitterInsert.LATE) {
          this.stats.late++;
          m.missedInRound++;
          this.io.counters.drops.late++;
        } else if (r === JitterInsert.DUPLICATE) this.io.counters.drops.duplicate++;
        else this.io.counters.drops.invalid++;
      }
      inbox.shift();
    }
  }

  #mixAndSend(count: number): void {
    this.#mixer.mix(this.#speakerIds, this.#speakerFrames, count);
    this.#encodedBy.clear();
    let mixed = false;
    // Speakers not yet in a mix sent to someone this tick (the timing advance is only for those that are).
    let unmixed = count;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      const wasSolo = m.soloFrom;
      m.soloFrom = null;
      if (m.deaf || m.endpoint.transport === 'none') continue;
      if (m.streamMode) {
        // Took this tick's speakers as STREAM packets on arrival; its next mix starts a talkspurt.
        m.outStarted = false;
        continue;
      }
      const solo = this.#soloSource(m, count);
      if (solo === NOBODY) continue; // hears no one this tick (e.g. the lone speaker): send nothing
      if (solo && !this.#lagsBehind(m, solo, wasSolo)) {
        // Hears exactly one speaker at unity gain: forward that packet, no decode-mix-encode, and
        // from now on each of its packets as it arrives (forwardOnArrival). When that speaker's frame
        // was lost, send nothing: the listener's decoder rebuilds it from FEC or conceals it in the
        // speaker's own stream, which a server-encoded frame in between would break.
        m.soloFrom = solo;
        if (solo.rawLen === 0) {
          if (!solo.rawHeld) this.stats.soloGaps++;
          continue;
        }
        if (!solo.fwdActive) solo.fwdOffset = this.#mediaFrame - solo.rawSeq;
        else if (((solo.rawSeq + solo.fwdOffset - this.#mediaFrame) | 0) > FORWARD_AHEAD_FRAMES)
          // Its stream skipped ahead (its buffer dropped frames of a sender faster than real time):
          // go on right after the newest frame sent, not ahead of the channel clock.
          solo.fwdOffset = solo.fwdTop + solo.fwdOffset + 1 - solo.rawSeq;
        // Sent already when it arrived, to a listener that was forwarded this speaker then.
        if (wasSolo === solo && solo.rawForwarded) continue;
        this.#forward(m, solo, solo.raw, solo.rawLen, solo.rawSeq);
        continue;
      }
      const buf = this.#mixer.output(m.userId);
      if (!buf) continue;
      let slot = this.#encodedBy.get(buf);
      if (!slot) {
        slot = this.#encoderFor(this.#streamKey(m));
        // An encoder that did not run last tick starts from a state the listener's decoder never saw:
        // that decoder holds the last frame of another stream (a forwarded speaker, another mix),
        // and the new encoder's first frame does not overlap-add with it (a broadband click up to
        // 33 dB over the codec's floor: cluster/bench/switch-clicks.ts). Encoding that frame
        // first, output discarded, gives the encoder the history the decoder has. One encode per
        // switch.
        if (slot.lastTick !== this.#tick - 1) {
          const prime = this.#heardLastTick(m, wasSolo, slot);
          if (prime) {
            // A new encoder's first frame is coded as a start (no inter-frame prediction): spend it
            // on the priming too, so the frame the listener hears is coded as a continuation.
            if (slot.lastTick === -2) slot.encoder.encode(prime, slot.out);
            slot.encoder.encode(prime, slot.out);
            this.stats.encoderPrimes++;
          }
        }
        const t0 = performance.now();
        const last = slot.prevPcm;
        slot.prevPcm = slot.pcm;
        slot.prevTick = slot.lastTick;
        slot.pcm = last;
        // Exact while the sum fits; the soft limiter only for a frame that would clip.
        mixToInt16(buf, slot.pcm);
        slot.len = slot.encoder.encode(slot.pcm, slot.out);
        this.stats.encodeUs.record((performance.now() - t0) * 1000);
        this.stats.encodes++;
        slot.lastTick = this.#tick;
        this.#encodedBy.set(buf, slot);
      }
      this.#sendTo(m, slot.out, slot.len, m.outStarted ? 0 : VoiceFlags.MARKER, this.#mediaFrame);
      m.outStarted = true;
      if (unmixed > 0) unmixed = this.#markMixed(m, count, unmixed);
      mixed = true;
      m.heardSlot = slot;
      m.heardTick = this.#tick;
    }
    this.#recordHolds(count, mixed);
    // Who is forwarded to whom from now until the next tick.
    const members = this.members;
    for (let i = 0; i < members.length; i++) members[i]!.soloListeners = 0;
    for (let i = 0; i < members.length; i++) {
      const from = members[i]!.soloFrom;
      if (from) from.soloListeners++;
    }
    for (let i = 0; i < members.length; i++) {
      const sp = members[i]!;
      if (sp.soloListeners === 0) {
        if (sp.fwdActive) sp.endForwarding();
      } else if (sp.rawLen > 0 && sp.spokeTick === this.#tick) sp.markForwarded(sp.rawSeq);
    }
  }

  /**
   * Marks the speakers whose frames are in the mix listener `m` was just sent (every one it hears
   * but itself); returns how many of the tick's `count` speakers are still unmarked (`unmixed`).
   */
  #markMixed(m: VoiceMember, count: number, unmixed: number): number {
    for (let s = 0; s < count && unmixed > 0; s++) {
      const sp = this.#speakerMembers[s]!;
      if (sp.mixedTick === this.#tick || sp.userId === m.userId || (m.gains?.get(sp.userId) ?? 1) === 0)
        continue;
      sp.mixedTick = this.#tick;
      unmixed--;
    }
    return unmixed;
  }

  /**
   * Server-added delay of this tick's frames: a frame that went out in a mix (or forwarded at the
   * tick) waited for the tick; one forwarded on arrival to every listener who got it was not held
   * (forwardOnArrival records that). With two speakers and a listener, each speaker's frame is
   * forwarded to the other on arrival and mixed for the listener: the mix's wait is the delay.
   */
  #recordHolds(count: number, mixed: boolean): void {
    for (let s = 0; s < count; s++) {
      const sp = this.#speakerMembers[s]!;
      // The timing advance moves a speaker's frames to the tick: only one some listener got in a
      // mix waits for it (not one every listener is forwarded as it arrives, or streams).
      if (sp.rawLen > 0 && sp.mixedTick === this.#tick) sp.recordPhase(sp.tickArrivalHold);
      if (sp.rawLen === 0 || (sp.rawForwarded && !mixed)) continue;
      this.stats.holdMs.record(sp.tickHold);
      sp.tickHoldMs.record(sp.tickHold);
      sp.tickPhaseMs.record(sp.tickPhase);
    }
  }

  /**
   * A lone speaker's packet, as it arrives (called by the ingress for every accepted AUDIO packet):
   * sent at once to the listeners who hear only that speaker, so the server adds no tick wait and
   * no jitter-buffer timing to a forwarded stream (every packet in is a packet out). The tick still
   * decodes it for voice activity and for the mixes of the others.
   */
  forwardOnArrival(
    m: VoiceMember,
    frameIndex: number,
    payload: Uint8Array,
    length: number,
    arrival: number,
    timestamp: number,
    flags: number,
  ): void {
    if (!m.active) return;
    const before = (frameIndex - 1) >>> 0;
    // Listeners that mix themselves: the packet as sent, now (README 8.8), whatever else happens.
    if (
      this.#streams.forward(
        m,
        this.members,
        payload,
        length,
        timestamp,
        flags,
        arrival,
        !m.wasReceived(before),
      ) > 0
    ) {
      this.stats.streamed = this.#streams.sent;
      // Held 0: sent in the handler of its arrival, out with the egress's flush in the same turn.
      // (Reading the clock here would cost an allocation a packet: a double crossing a call.)
      this.stats.holdMs.record(0);
    }
    const clock = this.#clockAt(arrival);
    if (!m.fwdActive && !this.#takeOverRun(m, frameIndex) && !this.#startSoloRun(m, frameIndex, clock))
      return;
    if (m.soloListeners === 0 || m.wasForwarded(frameIndex)) return;
    // Not due yet (the sender runs ahead of real time): the tick forwards it when it plays.
    if (((frameIndex + m.fwdOffset - clock) | 0) > FORWARD_AHEAD_FRAMES) {
      this.stats.forwardDeferred++;
      return;
    }
    m.markForwarded(frameIndex);
    // RED (README 9.1): a listener that reads it gets the block as received; any other the primary,
    // preceded by the copy of the frame before when that frame never reached the server.
    const red =
      (flags & VoiceFlags.RED) !== 0 && readRedBlock(payload, 0, length, this.#red) ? this.#red : null;
    const gap = red !== null && !m.wasReceived(before);
    if (red) {
      for (let b = 0; b < red.primaryLength; b++) this.#primary[b] = payload[red.primaryOffset + b]!;
      if (gap) {
        for (let b = 0; b < red.redLength; b++) this.#redCopy[b] = payload[red.redOffset + b]!;
        m.markForwarded(before); // the tick must not send it again when the buffer plays the copy
      }
    }
    for (let i = 0; i < this.members.length; i++) {
      const l = this.members[i]!;
      if (l.soloFrom !== m || l.streamMode || l.deaf || l.endpoint.transport === 'none') continue;
      if (!red) this.#forward(l, m, payload, length, frameIndex);
      else if (l.red) this.#forward(l, m, payload, length, frameIndex, VoiceFlags.RED);
      else {
        if (gap) {
          this.#forward(l, m, this.#redCopy, red.redLength, before);
          this.io.counters.redCopiesSent++;
        }
        this.#forward(l, m, this.#primary, red.primaryLength, frameIndex);
      }
    }
    // Held 0 for the same reason as a STREAM packet: sent in the handler of its arrival (the
    // microseconds since fall in the histogram's first bucket, and reading the clock boxes a double).
    this.stats.holdMs.record(0);
  }

  /**
   * The channel media frame at time `t` (performance clock): the latest tick's, plus the whole frame
   * periods since that tick was due. After a stall the tick runs late, but the packets that arrive
   * before it are due by the clock, not ahead of it.
   */
  #clockAt(t: number): number {
    if (this.#tick === 0) return this.#mediaFrame;
    const since = (t - this.#dueAt) / this.settings.frameMs;
    return since >= 1 ? (this.#mediaFrame + Math.floor(since)) | 0 : this.#mediaFrame;
  }

  /**
   * The first packet of a session's new binding (a handover, protocol README 8.4) while its old one
   * is forwarded: the new member continues that forwarding run, its first frame going out right
   * after the last one the listeners got (no gap, no jump), instead of waiting for its own jitter
   * buffer to start at a tick while the old one's runs dry.
   */
  #takeOverRun(m: VoiceMember, k: number): boolean {
    if (this.#twins === 0) return false;
    const old = this.#sibling(m.userId, m);
    if (!old?.endpoint.retiring || !old.fwdActive) return false;
    m.fwdOffset = old.fwdTop + old.fwdOffset + 1 - k;
    m.soloListeners = old.soloListeners;
    m.markForwarded((k - 1) >>> 0); // opens the run; frame k itself is sent by the caller
    for (let i = 0; i < this.members.length; i++) {
      const l = this.members[i]!;
      if (l.soloFrom === old) l.soloFrom = m;
    }
    old.endForwarding();
    return true;
  }

  /**
   * The first packet of a talkspurt makes its speaker the lone one at once for every listener at
   * unity gain who hears nobody else (in a silent channel, all of them; while one member talks, that
   * member): they get it now rather than after the next tick, their stream arrives evenly from the
   * first packet on, and no frame waits in the speaker's jitter buffer first (a run that started
   * at a tick would carry that backlog for good). The tick confirms or changes this a frame later.
   */
  #startSoloRun(m: VoiceMember, k: number, clock: number): boolean {
    if (!m.heard) return false;
    const members = this.members;
    const tick = this.#tick;
    // During a handover (two bindings of one person) only in a silent channel, as ever.
    if (this.#twins > 0) {
      if (this.#lastSpeakers !== 0) return false;
      for (let i = 0; i < members.length; i++) if (members[i]!.fwdActive) return false;
    }
    // The others who spoke at the last tick: a listener who heard one of them is not m's alone.
    let spoke = 0;
    for (let i = 0; i < members.length; i++) {
      const x = members[i]!;
      if (x !== m && tick > 0 && x.spokeTick === tick) spoke++;
    }
    let n = 0;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (
        l.userId === m.userId ||
        l.streamMode ||
        l.deaf ||
        l.endpoint.transport === 'none' ||
        (l.gains?.get(m.userId) ?? 1) !== 1 ||
        l.soloFrom !== null ||
        spoke - (tick > 0 && l.spokeTick === tick ? 1 : 0) > 0
      )
        continue;
      l.soloFrom = m;
      n++;
    }
    if (n === 0) return false;
    m.soloListeners = n;
    m.fwdOffset = this.#resumes(m, k, clock) ? m.resumeOffset : clock + 1 - k;
    m.markForwarded((k - 1) >>> 0); // opens the run; frame k itself is sent by the caller
    return true;
  }

  /**
   * Whether `m`'s new run (its listeners chosen) goes on with the offset of its run that ended
   * shortly before: its packets stopped for a while (a stall: its buffer ran dry and the run broke
   * off) and now come as the sender catches up, a burst. Anchored on the burst's first packet, the
   * rest of it would be "ahead" of the channel clock and every later packet would wait in the
   * speaker's buffer for good; on the old timeline the burst is due, and goes out as it arrives.
   * Only when that timeline does not run ahead of the clock, follows the last frame it sent, and
   * none of the listeners was sent anything since (no timestamp repeats for them).
   */
  #resumes(m: VoiceMember, k: number, clock: number): boolean {
    if (((clock - m.resumeTop) | 0) > this.#resumeFrames) return false;
    const at = (k + m.resumeOffset) | 0;
    if (((at - m.resumeTop) | 0) <= 0 || ((at - clock) | 0) > 1) return false;
    const members = this.members;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (l.soloFrom === m && ((l.lastOutFrame - m.resumeTop) | 0) > 0) return false;
    }
    return true;
  }

  /**
   * Whether listener `l`, not forwarded `sp` last tick, would step back if it joined `sp`'s running
   * forwarding run now: the run's offset was fixed when it started and `sp`'s jitter buffer has
   * grown since (its frames play later than the channel clock), so the frame would carry a
   * timestamp the listener already had (and drop). Such a listener gets mixes (that speaker's frame,
   * re-encoded) until the run ends.
   */
  #lagsBehind(l: VoiceMember, sp: VoiceMember, wasSolo: VoiceMember | null): boolean {
    if (wasSolo === sp || !sp.fwdActive || !l.outStarted) return false;
    return sp.rawLen === 0 || ((sp.rawSeq + sp.fwdOffset - this.#mediaFrame) | 0) < 0;
  }

  /**
   * The frame listener `m` was sent last tick, when it came from another stream than `slot`: the
   * forwarded speaker's decoded frame, or the other mix encoder's input. Null when it heard nothing
   * last tick (its decoder restarts at a talkspurt anyway).
   */
  #heardLastTick(m: VoiceMember, wasSolo: VoiceMember | null, slot: EncoderSlot): Int16Array | null {
    const prev = this.#tick - 1;
    if (wasSolo) return wasSolo.prevPcmTick === prev ? wasSolo.prevPcm : null;
    const heard = m.heardSlot;
    if (!heard || heard === slot || m.heardTick !== prev) return null;
    if (heard.lastTick === prev) return heard.pcm; // not encoded yet this tick
    return heard.lastTick === this.#tick && heard.prevTick === prev ? heard.prevPcm : null;
  }

  /** Sends speaker `sp`'s packet for frame `k` to listener `l`, on the channel's media clock. */
  #forward(l: VoiceMember, sp: VoiceMember, payload: Uint8Array, length: number, k: number, flags = 0): void {
    this.stats.forwarded++;
    this.#sendTo(l, payload, length, flags | (l.outStarted ? 0 : VoiceFlags.MARKER), k + sp.fwdOffset);
    l.outStarted = true;
  }

  /**
   * The one speaker this listener hears, when its mix would be exactly that speaker's frame (one
   * audible speaker besides itself, at gain 1); else null.
   */
  #soloSource(m: VoiceMember, count: number): VoiceMember | null | typeof NOBODY {
    let only: VoiceMember | null = null;
    for (let s = 0; s < count; s++) {
      const sp = this.#speakerMembers[s]!;
      if (sp.userId === m.userId) continue; // itself, or its other binding during a handover
      const g = m.gains?.get(sp.userId) ?? 1;
      if (g === 0) continue;
      if (only !== null && sp.userId === only.userId) {
        // One speaker on two bindings (a handover): the new one carries it on.
        if (only.endpoint.retiring) only = sp;
        continue;
      }
      if (only !== null || g !== 1) return null;
      only = sp;
    }
    if (only === null) {
      // Nobody audible, or only speakers at custom gains other than 1 (then a mix is needed).
      for (let s = 0; s < count; s++) {
        const sp = this.#speakerMembers[s]!;
        if (sp.userId !== m.userId && (m.gains?.get(sp.userId) ?? 1) !== 0) return null;
      }
      return NOBODY;
    }
    return only;
  }

  /** Which encoder stream a listener's mix belongs to: stable while its role does not change. */
  #streamKey(m: VoiceMember): string {
    if (m.spokeTick === this.#tick) return m.gains ? m.ownKey : m.minusKey;
    // Its other binding spoke (a handover): the mixer gave it that one's mix-minus.
    if (this.#twins > 0 && this.#sibling(m.userId, m)?.spokeTick === this.#tick)
      return m.gains ? m.ownKey : m.minusKey;
    const key = this.#mixer.groupKey(m.userId) ?? '';
    return key === '' ? 'all' : `group:${key}`;
  }

  #encoderFor(key: string): EncoderSlot {
    let slot = this.#encoders.get(key);
    if (!slot) {
      slot = {
        encoder: this.opus.createEncoder({
          frameSamples: this.frameSamples,
          bitrate: this.settings.bitrate,
          complexity: this.#overuse.complexity,
          // FEC would put every mix encoder in hybrid mode, about 4x the encode time per tick; the
          // downstream leg is one hop and clients conceal. Upstream FEC (clients') is decoded.
          fec: false,
        }),
        pcm: new Int16Array(this.frameSamples),
        prevPcm: new Int16Array(this.frameSamples),
        out: new Uint8Array(1000),
        len: 0,
        // Not run yet: primed before its first frame when a listener switches onto it.
        lastTick: -2,
        prevTick: -2,
      };
      this.#encoders.set(key, slot);
      this.stats.encoders = this.#encoders.size;
    }
    return slot;
  }

  /** Seals and sends; `mediaFrame` is the channel media clock frame the packet plays at. */
  #sendTo(m: VoiceMember, payload: Uint8Array, len: number, flags: number, mediaFrame: number): void {
    const ep = m.endpoint;
    const h = this.#header;
    h.type = VoicePacketType.AUDIO;
    // Downstream RED (README 9.1): a listener whose heartbeats report loss gets the frame it was sent
    // just before repeated in this packet (not at a talkspurt start, a media-clock gap, or in a
    // packet that already carries a speaker's RED block).
    // The frame is kept only while RED is on for this listener: no per-packet copy otherwise.
    if (!m.redDown || (flags & VoiceFlags.RED) !== 0) {
      m.lastSentLen = 0; // off, or a speaker's block (its primary is not kept)
    } else {
      let n = 0;
      if ((flags & VoiceFlags.MARKER) === 0 && m.lastSentLen > 0 && m.lastSentFrame === mediaFrame - 1)
        n = writeRedBlock(this.#redOut, 0, m.lastSent, 0, m.lastSentLen, payload, 0, len);
      for (let b = 0; b < len; b++) m.lastSent[b] = payload[b]!;
      m.lastSentLen = len;
      m.lastSentFrame = mediaFrame;
      if (n > 0) {
        payload = this.#redOut;
        len = n;
        flags |= VoiceFlags.RED;
        this.io.counters.redDownSent++;
      }
    }
    h.flags = flags;
    h.voiceId = ep.voiceId;
    h.sequence = ep.cipher.nextSequence;
    // One media clock per channel: a skipped frame is a timestamp gap the client conceals.
    const ts = (mediaFrame * this.frameSamples) % UINT32;
    h.timestamp = ts < 0 ? ts + UINT32 : ts;
    const n = ep.cipher.seal(h, payload, this.#sendBuf, len);
    this.io.send(ep, this.#sendBuf, n);
    m.packetsOut++;
    m.lastOutFrame = mediaFrame | 0;
    this.stats.packetsOut++;
  }

  #endTalkspurts(): void {
    for (const m of this.members) {
      m.outStarted = false;
      m.soloFrom = null;
      m.endForwarding();
    }
  }

  #setSpeaking(m: VoiceMember, speaking: boolean): void {
    if (m.speaking === speaking) return;
    m.speaking = speaking;
    // One person, two bindings during a handover: still speaking while the other one is.
    if (!speaking && this.#twins > 0 && this.#sibling(m.userId, m)?.speaking) return;
    this.io.speaking(m.endpoint, speaking);
  }

  #freeIdleEncoders(): void {
    for (const [key, slot] of this.#encoders) {
      if (this.#tick - slot.lastTick > ENCODER_IDLE_TICKS) {
        slot.encoder.destroy();
        this.#encoders.delete(key);
      }
    }
    this.stats.encoders = this.#encoders.size;
  }

  close(): void {
    for (const m of [...this.members]) this.removeMember(m);
    for (const slot of this.#encoders.values()) slot.encoder.destroy();
    this.#encoders.clear();
    this.stats.encoders = 0;
    this.inbox.clear();
  }
}
