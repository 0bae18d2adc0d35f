import {
  VoiceFlags,
  createRedBlock,
  readRedBlock,
  type ChannelId,
  type VoiceSettings,
} from '@voice/protocol';
import {
  Histogram,
  JitterInsert,
  PlayoutFrame,
  VadEvent,
  int16ToFloat,
  type OpusFactory,
} from '@voice/media';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import { PacketInbox } from './inbox.js';
import { StretchTotals } from './stretch-totals.js';
import { OveruseDetector } from './overuse.js';
import { VoiceMember } from './member.js';
import { StreamForwarder } from './stream-forward.js';
import { routeTick } from './stream-routing.js';
import { createChannelStats, type ChannelStats } from './channel-stats.js';
import { ChannelTimeline } from './channel-timeline.js';
import { ChannelRoster } from './channel-roster.js';
import { ListenerSender } from './listener-send.js';
import { RedDownSources } from './red-down.js';
import { MixEncoders } from './mix-encoders.js';
import { ForwardRuns } from './forward-runs.js';
import { ChannelMix } from './channel-mix.js';

export type { ChannelStats } from './channel-stats.js';

export const SAMPLE_RATE = 48_000;
/** Most members whose audio is mixed in one tick; louder channels are a moderation problem. */
export const MAX_SPEAKERS = 32;
/** Most frames one tick plays to make up for ticks that did not run. */
const MAX_MAKEUP_FRAMES = 4;
/**
 * A channel whose members have been silent this long (no packet, every buffer played out, nobody
 * speaking) lets its clock sleep until the next packet: a home server's channel of people who
 * listen wakes the process for nothing (50 ticks a second at 20 ms), ms.
 */
export const SLEEP_AFTER_MS = 2_000;
/** A retiring member (its binding handed over) stops speaking at the latest after this many ticks. */
const RETIRE_MAX_TICKS = 25;
/** An Opus packet this short is DTX or silence (a TOC byte and at most two more). */
const SILENT_PACKET_BYTES = 3;
/** The level an undecoded frame of audio counts as for voice activity, dBFS. */
const UNDECODED_SPEECH_DBFS = 0;

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
 * Packets also leave as they arrive (`forwardOnArrival`): STREAM packets to listeners that mix
 * themselves (stream-forward.ts), a lone speaker's own packets to those who hear only it
 * (forward-runs.ts).
 */
export class ChannelCore {
  readonly frameSamples: number;
  readonly inbox: PacketInbox<VoiceMember>;
  readonly #roster = new ChannelRoster();
  readonly members: VoiceMember[] = this.#roster.list;
  readonly #timeline: ChannelTimeline;
  readonly #mix: ChannelMix;
  readonly #encoders: MixEncoders;
  readonly #sender: ListenerSender;
  readonly #runs: ForwardRuns;
  /** Members whose audio plays or is buffered, judged before a tick pops (stream-routing.ts). */
  readonly #senders: VoiceMember[] = [];
  readonly #streams: StreamForwarder;
  /** Speakers mixed in the previous tick (0: the mix's talkspurts have ended). */
  #lastMixed = 0;
  /** A RED block being read into a member's jitter buffer (README 9.1). */
  readonly #red = createRedBlock();
  /** Summed when read (a metrics scrape), from the members' own counts: nothing per tick. */
  readonly #stretch = new StretchTotals(this.members);
  readonly stats: ChannelStats;
  readonly #overuse: OveruseDetector;
  /** Hold times since the last phase decision (see ServerVoicePlane's alignment). */
  readonly alignHold = new Histogram({ bucketWidth: 0.25, buckets: 200 });
  readonly #timeStretch: boolean;
  readonly #minBufferFrames: number;
  /**
   * Called (from `forwardOnArrival`) when the last frame the next tick will mix has arrived: the
   * owner may run that tick now rather than at its phase (mixOnReady). Null: not watched.
   */
  onReady: (() => void) | null = null;
  /** Speakers of the last mix whose next frame is not in yet (-1: the next tick is not watched). */
  #waiting = -1;
  /** Frame periods in a row in which nothing arrived, nothing played and nobody spoke. */
  #idleFrames = 0;
  #asleep = false;
  /**
   * Called by `wake` with the frame periods slept through: the owner puts the tick back on its
   * clock (its phase kept), the tick after plays one frame.
   */
  onWake: ((frames: number) => void) | null = null;

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
    this.stats = createChannelStats(this.#stretch, settings.complexity);
    this.#encoders = new MixEncoders(opus, this.frameSamples, settings.bitrate, settings.complexity);
    this.#timeline = new ChannelTimeline(settings.frameMs);
    this.#sender = new ListenerSender(
      this.frameSamples,
      (ep, p, n) => io.send(ep, p, n),
      io.counters,
      this.stats,
    );
    this.#runs = new ForwardRuns(this.#roster, this.#timeline, this.#sender, this.stats, io.counters);
    this.#mix = new ChannelMix(
      this.frameSamples,
      MAX_SPEAKERS,
      this.#roster,
      this.#timeline,
      this.#encoders,
      this.#sender,
      this.#runs,
      this.stats,
    );
    this.#timeStretch = options.timeStretch ?? true;
    this.#streams = new StreamForwarder(io.counters, (ep, packet, length) => io.send(ep, packet, length));
    this.#minBufferFrames = options.minBufferFrames ?? 1;
  }

  addMember(ep: VoiceEndpoint): VoiceMember {
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
    this.#roster.add(m);
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
    // The mixer knows a person by user id: its twin still listens under it.
    if (!this.#roster.remove(m)) this.#mix.removeListener(m.userId);
    this.#runs.remove(m);
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
    if (m.deaf) this.#mix.removeListener(m.userId);
    else this.#mix.setListener(m.userId, m.gains);
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
    this.#encoders.setBitrate(settings.bitrate);
    this.#encoders.setComplexity(settings.complexity);
  }

  #adaptComplexity(tickMs: number): void {
    const before = this.#overuse.complexity;
    if (!this.#overuse.record(tickMs)) return;
    const c = this.#overuse.complexity;
    this.#encoders.setComplexity(c);
    this.stats.complexity = c;
    this.stats.cpuAdaptations = this.#overuse.adaptedDown;
    this.io.adapted?.(this.id, c, c < before ? 'down' : 'up');
  }

  /**
   * One frame. `frames` is how many frame periods passed since the previous tick (more than 1 after
   * a stall or a skipped tick): the outgoing media clock follows time, so the gap is a timestamp
   * jump the clients conceal rather than audio silently running late. `lateMs`: how late this tick
   * runs after it was due (the jitter buffers judge their delay at the due time); negative for a
   * tick run before it was due, once its frames were all in (`onReady`).
   */
  tick(now: number, frames = 1, lateMs = 0): void {
    const t0 = performance.now();
    // Ticks that did not run (the actor was still busy, or the process stalled) are made up: each
    // member's buffer plays one frame per frame period, else it would grow by a frame per skipped
    // tick and catch-up would later drop one (a slip). Beyond MAX_MAKEUP_FRAMES the media clock
    // jumps instead (a gap the clients conceal).
    const passes = Math.min(Math.max(1, frames), MAX_MAKEUP_FRAMES);
    this.#timeline.mediaFrame += Math.max(1, frames) - passes;
    const arrived = this.inbox.count > 0;
    this.#drain();
    for (let p = passes - 1; p >= 0; p--) this.#tickBody(now, lateMs + p * this.settings.frameMs);
    this.#timeline.dueAt = now - lateMs;
    this.#idleFrames = !arrived && this.#quiet() ? this.#idleFrames + Math.max(1, frames) : 0;
    const ms = performance.now() - t0;
    this.stats.tickUs.record(ms * 1000);
    this.#adaptComplexity(ms);
  }

  /** Nothing left to play or to end: no mix in progress, every buffer empty, nobody speaking. */
  #quiet(): boolean {
    if (this.#lastMixed !== 0) return false;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      if (m.jitter.depth > 0 || m.speaking || m.retiring) return false;
    }
    return true;
  }

  /** Silent for SLEEP_AFTER_MS: the owner may stop ticking it until `wake`. */
  get sleepy(): boolean {
    return this.#idleFrames * this.settings.frameMs >= SLEEP_AFTER_MS;
  }

  get asleep(): boolean {
    return this.#asleep;
  }

  /** The owner stopped ticking it (it was `sleepy`); the next packet's `wake` starts it again. */
  sleep(): void {
    if (this.#asleep) return;
    this.#asleep = true;
    this.stats.sleeps++;
  }

  /**
   * A packet arrived for a sleeping channel (the ingress calls this first): its media clock moves
   * on by the frame periods slept through, as if it had ticked them (a packet forwarded now is
   * stamped with the frame of now), and the owner's clock takes it back (`onWake`).
   */
  wake(now: number): void {
    if (!this.#asleep) return;
    this.#asleep = false;
    this.#idleFrames = 0;
    this.stats.wakes++;
    const t = this.#timeline;
    const frames = t.tick === 0 ? 0 : Math.max(0, Math.floor((now - t.dueAt) / this.settings.frameMs));
    t.tick += frames;
    t.mediaFrame += frames;
    t.dueAt += frames * this.settings.frameMs;
    this.onWake?.(frames);
  }

  #tickBody(now: number, lateMs: number): void {
    const tick = ++this.#timeline.tick;
    this.#timeline.mediaFrame++;
    this.stats.ticks++;
    routeTick(this.members, this.#senders, tick, MAX_SPEAKERS);
    this.#runs.dropStreamingSolos();
    // Downstream RED (README 9.1): judged once a tick, not per packet.
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      m.redDown = m.red && now < m.redDownUntil;
      // Its STREAM frames kept only while RED is on: made at the switch, not per packet.
      if (!m.redDown || m.streams < 2) m.redStreams = null;
      else m.redStreams ??= new RedDownSources(m.streams);
    }
    this.#mix.begin();
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
      m.pcmTick = tick;
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
        // Against the time the tick was due: a tick run early (mixOnReady, negative lateness) holds
        // its last frame for no time, but the phase the alignment and the advance move is the
        // schedule's (they line the arrivals up before it; the early run takes off what is left).
        const toDue = lateMs < 0 ? hold - lateMs : hold;
        // The tick's phase against the arrivals is the hold less the whole frames buffered ahead of
        // it (FEC look-ahead, a grown target): judged on the full hold, alignment moved the tick
        // a frame too early, the packets then came after it and the buffer re-grew by one (a slip).
        const phase = toDue % this.settings.frameMs;
        // Only a frame someone hears in a mix waits for the tick: a streamed one is not advanced.
        // (The timing advance's phases wait for the sends: see #recordHolds.)
        if (m.inMix) this.alignHold.record(phase);
        m.tickArrivalHold = toDue;
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
      if (this.#mix.add(m)) m.spokeTick = tick;
    }
    this.stats.bufferFramesMax = depthMax;
    this.stats.speakers = heardCount;
    // Silence, or only streamed speakers: no mix to send. Clients play silence when their buffer runs dry.
    const count = this.#mix.count;
    if (count > 0) this.#mix.send();
    else if (this.#lastMixed > 0) this.#runs.endAll();
    else this.#runs.restoreCuts();
    this.#lastMixed = count;
    this.#runs.lastSpeakers = heardCount;
    this.#watchNext(tick);
    if ((tick & 127) === 0) {
      this.#encoders.freeIdle(tick);
      this.stats.encoders = this.#encoders.size;
    }
  }

  /**
   * After a tick that sent a mix: which of its speakers' next frames are still to come (each one's
   * arrival counts down `#waiting`; the last calls `onReady`). Not watched when a speaker's frame was
   * concealed or held (its next one is not judged by one packet), or when all are in already (the
   * buffers hold them on purpose: the scheduled tick plays them).
   */
  #watchNext(tick: number): void {
    this.#waiting = -1;
    if (this.onReady === null || this.#lastMixed === 0 || !this.#mix.sent) return;
    let waiting = 0;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      if (m.spokeTick !== tick) continue;
      if (m.rawLen === 0 || m.rawHeld) return;
      if (!m.jitter.headReady) waiting++;
    }
    if (waiting === 0) return;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      m.awaitFrame = m.spokeTick === tick && !m.jitter.headReady ? (m.rawSeq + 1) >>> 0 : -1;
    }
    this.#waiting = waiting;
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
    m.pcmTick = this.#timeline.tick;
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
        if (isRed) m.stream.insertRedundant((seq - 1) >>> 0, view, red.redLength, arrival, red.redOffset);
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

  /**
   * A speaker's packet, as it arrives (called by the ingress for every accepted AUDIO packet): sent
   * at once as STREAM packets to the listeners that mix themselves, and to those who hear only this
   * speaker as its own packet (ForwardRuns), so the server adds no tick wait to either. The tick
   * still decodes it for voice activity and for the mixes of the others.
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
        !m.wasReceived((frameIndex - 1) >>> 0),
      ) > 0
    ) {
      this.stats.streamed = this.#streams.sent;
      // Held 0: sent in the handler of its arrival, out with the egress's flush in the same turn.
      // (Reading the clock here would cost an allocation a packet: a double crossing a call.)
      this.stats.holdMs.record(0);
    }
    this.#runs.onArrival(m, frameIndex, payload, length, arrival, flags);
    if (this.#waiting > 0 && m.awaitFrame === frameIndex >>> 0) {
      m.awaitFrame = -1;
      if (--this.#waiting === 0) {
        this.#waiting = -1;
        this.onReady?.();
      }
    }
  }

  #setSpeaking(m: VoiceMember, speaking: boolean): void {
    if (m.speaking === speaking) return;
    m.speaking = speaking;
    // One person, two bindings during a handover: still speaking while the other one is.
    if (!speaking && this.#roster.twinOf(m)?.speaking) return;
    this.io.speaking(m.endpoint, speaking);
  }

  close(): void {
    for (const m of [...this.members]) this.removeMember(m);
    this.#encoders.close();
    this.stats.encoders = 0;
    this.inbox.clear();
  }
}
