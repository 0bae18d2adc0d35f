import {
  MAX_PACKET_BYTES,
  VoiceFlags,
  VoicePacketType,
  type ChannelId,
  type UserId,
  type VoiceHeader,
  type VoiceSettings,
} from '@voice/protocol';
import {
  Histogram,
  JitterBuffer,
  JitterInsert,
  JitterPop,
  MixGroups,
  VadEvent,
  VoiceActivityDetector,
  int16ToFloat,
  limitToInt16,
  type OpusDecoder,
  type OpusEncoder,
  type OpusFactory,
} from '@voice/media';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import { PacketInbox } from './inbox.js';
import { OveruseDetector } from './overuse.js';

export const SAMPLE_RATE = 48_000;
/** Most members whose audio is mixed in one tick; louder channels are a moderation problem. */
export const MAX_SPEAKERS = 32;
/** Frames concealed when a member's buffer runs dry right after audio. */
const DRAIN_CONCEAL_FRAMES = 2;
/** An encoder unused for this many ticks is freed (its stream ended). */
const ENCODER_IDLE_TICKS = 100;

/** `#soloSource` result for a listener who hears no one this tick. */
const NOBODY = Symbol('nobody');

/** One member of a channel, as the actor sees it. Owned by the actor. */
export class VoiceMember {
  readonly jitter: JitterBuffer;
  decoder: OpusDecoder | null = null;
  readonly pcm: Int16Array;
  readonly frame: Float32Array;
  readonly vad: VoiceActivityDetector;
  /** Arrival time by sequence (low bits), to measure how long the server held each frame. */
  readonly arrivals = new Float64Array(64);
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
  /** Tick in which this member last produced a frame (packet or concealment). */
  lastAudioTick = -2;
  /** Frames concealed since its buffer ran dry. */
  drainConcealed = 0;
  /** This tick's Opus packet as received (forwarded as is to a listener who hears only this speaker). */
  readonly raw = new Uint8Array(1000);
  rawLen = 0;
  /** Encoder stream keys of this member's own mixes, built once rather than per tick. */
  readonly minusKey: string;
  readonly ownKey: string;
  active = true;
  /** Packets of this member waiting in the channel inbox (its per-member quota). */
  inboxQueued = 0;

  constructor(
    readonly endpoint: VoiceEndpoint,
    readonly userId: UserId,
    frameSamples: number,
    frameMs: number,
  ) {
    this.jitter = new JitterBuffer({ frameMs });
    this.pcm = new Int16Array(frameSamples);
    this.frame = new Float32Array(frameSamples);
    this.vad = new VoiceActivityDetector({ frameMs });
    this.minusKey = `minus:${userId}`;
    this.ownKey = `own:${userId}`;
  }
}

interface EncoderSlot {
  encoder: OpusEncoder;
  pcm: Int16Array;
  out: Uint8Array;
  len: number;
  lastTick: number;
}

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

export interface ChannelStats {
  members: number;
  speakers: number;
  ticks: number;
  packetsIn: number;
  packetsOut: number;
  late: number;
  concealed: number;
  /** Of the concealed frames, those rebuilt from the next packet's in-band FEC. */
  fecRecovered: number;
  inboxOverflows: number;
  /** Packets refused because their member already had its quota waiting in the inbox. */
  inboxOverQuota: number;
  encodes: number;
  /** Listener-frames sent as the lone speaker's own packet, without re-encoding. */
  forwarded: number;
  /** Listener-frames not sent because the lone speaker's frame was lost (the client conceals). */
  soloGaps: number;
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
  readonly #encoders = new Map<string, EncoderSlot>();
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
  #lastSpeakers = 0;
  readonly stats: ChannelStats = {
    members: 0,
    speakers: 0,
    ticks: 0,
    packetsIn: 0,
    packetsOut: 0,
    late: 0,
    concealed: 0,
    fecRecovered: 0,
    inboxOverflows: 0,
    inboxOverQuota: 0,
    encodes: 0,
    forwarded: 0,
    soloGaps: 0,
    bufferFramesMax: 0,
    decodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
    encodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
    holdMs: new Histogram({ bucketWidth: 0.5, buckets: 800, window: 4096 }),
    tickUs: new Histogram({ bucketWidth: 20, buckets: 1000, window: 4096 }),
    complexity: 0,
    cpuAdaptations: 0,
  };
  readonly #overuse: OveruseDetector;
  /** Hold times since the last phase decision (see ServerVoicePlane's alignment). */
  readonly alignHold = new Histogram({ bucketWidth: 0.25, buckets: 200 });

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
  }

  addMember(ep: VoiceEndpoint): VoiceMember {
    const m = new VoiceMember(ep, ep.session.userId, this.frameSamples, this.settings.frameMs);
    ep.member = m;
    this.members.push(m);
    this.updateMember(m);
    this.stats.members = this.members.length;
    return m;
  }

  removeMember(m: VoiceMember): void {
    m.active = false;
    // A rekey replaces the member while the session stays in the channel: clear its indicator.
    if (m.speaking) this.#setSpeaking(m, false);
    const i = this.members.indexOf(m);
    if (i >= 0) this.members.splice(i, 1);
    this.#mixer.removeListener(m.userId);
    m.decoder?.destroy();
    m.decoder = null;
    this.stats.members = this.members.length;
  }

  /** Copies mute, deafen and volumes from the session. Deafened members are not heard either (as on Discord). */
  updateMember(m: VoiceMember): void {
    const s = m.endpoint.session;
    m.heard = !s.selfMute && !s.serverMute && !s.selfDeaf;
    m.deaf = s.selfDeaf;
    if (s.volumes.size === 0) m.gains = undefined;
    else {
      m.gains = new Map();
      for (const [uid, pct] of s.volumes) m.gains.set(uid, pct / 100);
    }
    if (m.deaf) this.#mixer.removeListener(m.userId);
    else this.#mixer.setListener(m.userId, m.gains);
    if (!m.heard) this.#setSpeaking(m, false);
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
   * jump the clients conceal rather than audio silently running late.
   */
  tick(now: number, frames = 1): void {
    const t0 = performance.now();
    this.#tickBody(now, frames);
    const ms = performance.now() - t0;
    this.stats.tickUs.record(ms * 1000);
    this.#adaptComplexity(ms);
  }

  #tickBody(now: number, frames: number): void {
    this.#tick++;
    this.#mediaFrame += frames;
    this.stats.ticks++;
    this.#drain();
    let count = 0;
    let depthMax = 0;
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      let r = m.jitter.pop(now);
      if (r === JitterPop.EMPTY) {
        // A buffer that runs dry right after audio is most often a lost or late packet, not the end
        // of speech: conceal up to DRAIN_CONCEAL_FRAMES (a real end only adds a fading tail).
        if (
          m.drainConcealed < DRAIN_CONCEAL_FRAMES &&
          m.decoder !== null &&
          m.lastAudioTick === this.#tick - 1
        ) {
          m.drainConcealed++;
          r = JitterPop.MISSING;
        } else {
          if (m.speaking && m.vad.update(-120) === VadEvent.STOP) this.#setSpeaking(m, false);
          continue;
        }
      } else if (r === JitterPop.PACKET) m.drainConcealed = 0;
      m.lastAudioTick = this.#tick;
      const t0 = performance.now();
      let n: number;
      const dec = (m.decoder ??= this.opus.createDecoder({ frameSamples: this.frameSamples }));
      try {
        if (r === JitterPop.PACKET) {
          const len = (m.rawLen = m.jitter.packetLength);
          const src = m.jitter.packet;
          for (let b = 0; b < len; b++) m.raw[b] = src[b]!;
          n = dec.decode(m.jitter.packet, m.pcm, m.jitter.packetLength);
          const hold = now - m.arrivals[m.jitter.packetSeq & 63]!;
          this.stats.holdMs.record(hold);
          this.alignHold.record(hold);
        } else {
          m.rawLen = 0;
          this.stats.concealed++;
          if (m.jitter.playing && m.jitter.peekNext()) {
            n = dec.decodeFec(m.jitter.next, m.pcm, m.jitter.nextLength);
            if (dec.supportsFec) this.stats.fecRecovered++;
          } else n = dec.conceal(m.pcm);
        }
      } catch {
        this.io.counters.drops.decode_error++;
        continue;
      }
      this.stats.decodeUs.record((performance.now() - t0) * 1000);
      if (n !== this.frameSamples) {
        // The client encodes with another frame size than the channel's: refuse rather than garble.
        this.io.counters.drops.decode_error++;
        continue;
      }
      if (m.jitter.depth > depthMax) depthMax = m.jitter.depth;
      if (!m.heard) continue;
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
    this.stats.speakers = count;
    // Silence: send nothing. Clients play silence when their buffer runs dry.
    if (count > 0) this.#mixAndSend(count);
    else if (this.#lastSpeakers > 0) this.#endTalkspurts();
    this.#lastSpeakers = count;
    if ((this.#tick & 127) === 0) this.#freeIdleEncoders();
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
        const r = m.jitter.insert(seq, inbox.views[i]!, arrival, inbox.length[i]);
        if (r === JitterInsert.ACCEPTED) {
          m.arrivals[seq & 63] = arrival;
          m.packetsIn++;
          this.stats.packetsIn++;
        } else if (r === JitterInsert.LATE) {
          this.stats.late++;
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
    for (let i = 0; i < this.members.length; i++) {
      const m = this.members[i]!;
      if (m.deaf || m.endpoint.transport === 'none') continue;
      const solo = this.#soloSource(m, count);
      if (solo === NOBODY) continue; // hears no one this tick (e.g. the lone speaker): send nothing
      if (solo) {
        // Hears exactly one speaker at unity gain: forward that packet, no decode-mix-encode. When
        // that speaker's frame was lost, send nothing: the listener's decoder conceals it in the
        // speaker's own stream, which a server-encoded frame in between would break.
        if (solo.rawLen === 0) {
          this.stats.soloGaps++;
          continue;
        }
        this.stats.forwarded++;
        this.#sendTo(m, solo.raw, solo.rawLen, m.outStarted ? 0 : VoiceFlags.MARKER);
        m.outStarted = true;
        continue;
      }
      const buf = this.#mixer.output(m.userId);
      if (!buf) continue;
      let slot = this.#encodedBy.get(buf);
      if (!slot) {
        slot = this.#encoderFor(this.#streamKey(m));
        const t0 = performance.now();
        limitToInt16(buf, slot.pcm);
        slot.len = slot.encoder.encode(slot.pcm, slot.out);
        this.stats.encodeUs.record((performance.now() - t0) * 1000);
        this.stats.encodes++;
        slot.lastTick = this.#tick;
        this.#encodedBy.set(buf, slot);
      }
      this.#sendTo(m, slot.out, slot.len, m.outStarted ? 0 : VoiceFlags.MARKER);
      m.outStarted = true;
    }
  }

  /**
   * The one speaker this listener hears, when its mix would be exactly that speaker's frame (one
   * audible speaker besides itself, at gain 1); else null.
   */
  #soloSource(m: VoiceMember, count: number): VoiceMember | null | typeof NOBODY {
    let only: VoiceMember | null = null;
    for (let s = 0; s < count; s++) {
      const sp = this.#speakerMembers[s]!;
      if (sp === m) continue;
      const g = m.gains?.get(sp.userId) ?? 1;
      if (g === 0) continue;
      if (only !== null || g !== 1) return null;
      only = sp;
    }
    if (only === null) {
      // Nobody audible, or only speakers at custom gains other than 1 (then a mix is needed).
      for (let s = 0; s < count; s++) {
        const sp = this.#speakerMembers[s]!;
        if (sp !== m && (m.gains?.get(sp.userId) ?? 1) !== 0) return null;
      }
      return NOBODY;
    }
    return only;
  }

  /** Which encoder stream a listener's mix belongs to: stable while its role does not change. */
  #streamKey(m: VoiceMember): string {
    if (m.spokeTick === this.#tick) return m.gains ? m.ownKey : m.minusKey;
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
        out: new Uint8Array(1000),
        len: 0,
        lastTick: this.#tick,
      };
      this.#encoders.set(key, slot);
    }
    return slot;
  }

  #sendTo(m: VoiceMember, payload: Uint8Array, len: number, flags: number): void {
    const ep = m.endpoint;
    const h = this.#header;
    h.type = VoicePacketType.AUDIO;
    h.flags = flags;
    h.voiceId = ep.voiceId;
    h.sequence = ep.cipher.nextSequence;
    // One media clock per channel: a skipped frame is a timestamp gap the client conceals.
    h.timestamp = (this.#mediaFrame * this.frameSamples) % 4_294_967_296;
    const n = ep.cipher.seal(h, payload.subarray(0, len), this.#sendBuf);
    this.io.send(ep, this.#sendBuf, n);
    m.packetsOut++;
    this.stats.packetsOut++;
  }

  #endTalkspurts(): void {
    for (const m of this.members) m.outStarted = false;
  }

  #setSpeaking(m: VoiceMember, speaking: boolean): void {
    if (m.speaking === speaking) return;
    m.speaking = speaking;
    this.io.speaking(m.endpoint, speaking);
  }

  #freeIdleEncoders(): void {
    for (const [key, slot] of this.#encoders) {
      if (this.#tick - slot.lastTick > ENCODER_IDLE_TICKS) {
        slot.encoder.destroy();
        this.#encoders.delete(key);
      }
    }
  }

  close(): void {
    for (const m of [...this.members]) this.removeMember(m);
    for (const slot of this.#encoders.values()) slot.encoder.destroy();
    this.#encoders.clear();
    this.inbox.clear();
  }
}
