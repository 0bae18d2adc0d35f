import {
  ACK_BODY_BYTES,
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  createVoiceHeader,
  readAckBody,
  writeAckBody,
  writeTimeBody,
  type AeadBackend,
  type VoiceBinding,
  type VoiceHeader,
  type VoiceOpenError,
} from '@voice/protocol';
import {
  Histogram,
  type JitterBufferOptions,
  type OpusEncoder,
  type OpusEncoderSettings,
  type OpusFactory,
} from '@voice/media';
import { VoiceClientError } from './errors.js';
import { Playout, type PlayoutHook, type PlayoutStats } from './playout.js';
import type { SourcePlayoutsStats } from './source-playouts.js';
import type { Recording, SentLog } from './recording.js';
import { Sender, type Redundancy, type SenderStats } from './sender.js';
import type { AudioSource } from './sources.js';
import {
  UdpTransport,
  WsTransport,
  type TransportKind,
  type TransportStats,
  type UdpAddress,
  type VoiceSignaling,
  type VoiceTransport,
} from './transport.js';

const UINT32 = 0x1_0000_0000;
/**
 * An early HEARTBEAT (protocol README 9.1, Downstream): on a connection granted RED, once this many
 * server packets were lost since the last HEARTBEAT, while no RED arrives, report at once instead of
 * at the next period (5 s by default), at most every EARLY_REPORT_MIN_MS: the server then adds RED
 * within about a second of loss starting, not up to a period later. Two, not one: a single loss in
 * a short interval would read as several percent and turn RED on where the link loses far less.
 */
const EARLY_REPORT_LOSSES = 2;
const EARLY_REPORT_MIN_MS = 500;
/** RED counts as arriving while a RED packet came within this long. */
const RED_ARRIVING_MS = 1000;

/** Unanswered HELLO/HEARTBEATs over UDP after which UDP counts as broken (protocol README 8.2). */
export const UDP_BROKEN_AFTER = 3;

export interface VoiceSessionOptions {
  readonly binding: VoiceBinding;
  /** 'udp' (default) or 'ws' (voice inside signaling frames). */
  readonly transport: TransportKind;
  /** Needed for 'ws', and for the UDP-to-WebSocket fallback. */
  readonly signaling?: VoiceSignaling;
  /** Where UDP goes (default: the binding's udpHost:udpPort). */
  readonly udpTarget: UdpAddress;
  readonly bindHost?: string;
  /** HEARTBEAT period, ms (default 5000). */
  readonly heartbeatMs?: number;
  /** HELLO retry period until a HELLO_ACK arrives, ms (default 1000). */
  readonly helloRetryMs?: number;
  /** Carry voice over the WebSocket while UDP goes unanswered (default true when `signaling` is given). */
  readonly wsFallback?: boolean;
  readonly opus: OpusFactory;
  /** AES-256-GCM backend for the cipher (default: protocol's node:crypto one). */
  readonly aead?: AeadBackend;
  /** Encoder settings; bitrate defaults to the binding's, FEC to off (no decoder we ship uses it). */
  readonly encoder?: OpusEncoderSettings;
  readonly jitter?: Omit<JitterBufferOptions, 'frameMs'>;
  /** Frames concealed when the jitter buffer runs dry right after audio (default 2; see Playout). */
  readonly drainConcealFrames?: number;
  /** Time-scale modification in the playout (default true; see Playout). */
  readonly timeStretch?: boolean;
  /** 'timer' (default): playout runs on its own clock. 'pull': the caller pulls it (`pull()`). */
  readonly playoutClock?: 'timer' | 'pull';
  /**
   * The `streams` the server granted (Welcome.streams, protocol README 8.8): with 2 or more, STREAM
   * packets of up to that many speakers are played and mixed here. Default 1: mixes only.
   */
  readonly streams?: number;
  /**
   * RED granted by the server (Welcome.red, protocol README 9.1): RED packets received are split,
   * and the sender adds redundancy as `redundancy` says. Default false: neither.
   */
  readonly red?: boolean;
  /** When to send RED, if granted (default 'auto': while upstream loss is over 1 %). */
  readonly redundancy?: Redundancy;
  readonly recording?: Recording | null;
  readonly sentLog?: SentLog | null;
  readonly onPlayout?: PlayoutHook;
  /**
   * A handover: the playout starts held (nothing recorded or handed to `onPlayout`) and this is
   * called when its first audio plays; `release()` ends the hold.
   */
  readonly onAudible?: () => void;
  readonly held?: boolean;
  /** The voice path came up: a HELLO_ACK (over UDP, or over the WebSocket), or the switch to the fallback. */
  readonly onReady?: () => void;
  /** Voice moved to another transport (UDP broken -> 'ws', UDP back -> 'udp'). */
  readonly onTransport?: (kind: TransportKind) => void;
  /** Non-fatal problems (codec errors, socket errors); everything is counted in stats() too. */
  readonly onProblem?: (err: unknown) => void;
}

export interface VoiceSessionStats {
  voiceId: number;
  frameMs: number;
  transport: TransportKind;
  ready: boolean;
  /** Packets sent of any type, and AUDIO among them. */
  packetsSent: number;
  audioSent: number;
  /** Server packets that authenticated (any type), and AUDIO and STREAM among them. */
  packetsReceived: number;
  audioReceived: number;
  streamReceived: number;
  /** Of them, packets with the RED flag (only when RED was granted: the server sends none otherwise). */
  redReceived: number;
  /** HEARTBEATs sent early to report loss (EARLY_REPORT_LOSSES), beside the periodic ones. */
  earlyReports: number;
  /** Server sequence numbers never received (any type), from the replay window. */
  lost: number;
  /** Rejected before use: replays/duplicates, failed authentication, bad framing, wrong voiceId. */
  duplicates: number;
  rejected: number;
  rtt: {
    lastMs: number | null;
    meanMs: number | null;
    p50Ms: number | null;
    minMs: number | null;
    samples: number;
  };
  /** The server's counts of our packets, from the latest ACK, and the loss fraction over the last ACK interval. */
  upstream: { packetsReceived: number; packetsLost: number; lossFraction: number | null; acks: number };
  heartbeatsUnanswered: number;
  udp: TransportStats | null;
  ws: TransportStats | null;
  playout: PlayoutStats;
  /** Per-speaker figures of the STREAM sources (null when no streams were granted). */
  sources: SourcePlayoutsStats | null;
  sender: SenderStats | null;
}

/**
 * Voice for one VoiceBinding: owns the cipher (one per key: its sequence counter never restarts), the
 * transports, the HELLO/HEARTBEAT schedule, the playout and the sender. `close()` is idempotent and
 * closes them all.
 */
export class VoiceSession {
  readonly binding: VoiceBinding;
  readonly frameMs: 10 | 20;
  readonly frameSamples: number;
  readonly cipher: VoiceCipher;
  readonly playout: Playout;
  /** Unwrapped timestamp of the next frame a sender starts with. */
  private nextTs = 0;
  private readonly epoch = performance.now();
  /** Newest `voice.advance` seq applied under this binding. */
  private advanceSeq = 0;
  private udp: UdpTransport | null = null;
  private ws: WsTransport | null = null;
  private sender: Sender | null = null;
  private readonly encoder: OpusEncoder;
  private senderStats: SenderStats | null = null;
  private udpConfirmed = false;
  private readonly mode: TransportKind;
  private readonly fallbackAllowed: boolean;
  private usingFallback = false;
  private ready = false;
  private readonly readyWaiters = new Set<() => void>();
  private udpUnanswered = 0;
  private helloTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** The encoder has been given frames (priming applies only to a fresh one). */
  private encoderUsed = false;
  /** Called once after the next AUDIO frame is sent (a handover moves the sender then). */
  private afterFrame: (() => void) | null = null;
  /** Self-mute: frames are read and dropped. */
  muted = false;
  // Scratch memory: nothing below is allocated per packet.
  private readonly sealBuf = new Uint8Array(MAX_PACKET_BYTES);
  private readonly plain = new Uint8Array(MAX_PAYLOAD_BYTES);
  private readonly ctrlBody = new Uint8Array(8);
  private readonly hbBody = new Uint8Array(ACK_BODY_BYTES);
  private readonly header: VoiceHeader = createVoiceHeader();
  private readonly inHeader: VoiceHeader = createVoiceHeader();
  private readonly rtt = new Histogram({ bucketWidth: 0.1, buckets: 20_000, window: 64 });
  private rttLast: number | null = null;
  private rttMin = Number.POSITIVE_INFINITY;
  private upReceived = 0;
  private upLost = 0;
  private upLoss: number | null = null;
  private acks = 0;
  /** When the last HEARTBEAT went, and the server packets lost by then (the early report's base). */
  private hbAt = Number.NEGATIVE_INFINITY;
  private hbLost = 0;
  private redAt = Number.NEGATIVE_INFINITY;
  private readonly c = {
    packetsSent: 0,
    audioSent: 0,
    packetsReceived: 0,
    audioReceived: 0,
    streamReceived: 0,
    redReceived: 0,
    earlyReports: 0,
    duplicates: 0,
    rejected: 0,
  };

  private constructor(private readonly o: VoiceSessionOptions) {
    const b = o.binding;
    if (b.frameMs !== 10 && b.frameMs !== 20)
      throw new TypeError(`binding frameMs ${String(b.frameMs)} is not 10 or 20`);
    this.binding = b;
    this.frameMs = b.frameMs;
    this.frameSamples = b.frameMs * 48;
    this.mode = o.transport;
    if (this.mode === 'ws' && !o.signaling)
      throw new TypeError("transport 'ws' needs a signaling connection");
    this.fallbackAllowed = this.mode === 'udp' && o.signaling !== undefined && (o.wsFallback ?? true);
    this.cipher = new VoiceCipher(b.key, VoiceDirection.CLIENT_TO_SERVER, o.aead);
    this.encoder = o.opus.createEncoder({
      frameSamples: this.frameSamples,
      // Off by default (hybrid mode, ~4x encode CPU); `encoder: { fec: true }` lets a server with the
      // libopus addon rebuild a lost packet from the next one.
      fec: false,
      ...o.encoder,
      bitrate: o.encoder?.bitrate ?? b.bitrate,
    });
    this.playout = new Playout({
      frameMs: b.frameMs,
      opus: o.opus,
      ...(o.jitter ? { jitter: o.jitter } : {}),
      ...(o.drainConcealFrames !== undefined ? { drainConcealFrames: o.drainConcealFrames } : {}),
      ...(o.timeStretch !== undefined ? { timeStretch: o.timeStretch } : {}),
      ...(o.playoutClock ? { clock: o.playoutClock } : {}),
      ...(o.streams !== undefined ? { sources: o.streams } : {}),
      red: o.red === true,
      recording: o.recording ?? null,
      ...(o.onPlayout ? { onPlayout: o.onPlayout } : {}),
      ...(o.onAudible ? { onAudible: o.onAudible } : {}),
      onError: (err) => this.problem(err),
    });
    this.playout.held = o.held ?? false;
  }

  /** Ends a handover's hold: from the next frame on, this session's playout is what is heard. */
  release(): void {
    this.playout.held = false;
  }

  /** A handover keeps this (replaced) session only to send: its playout is no longer heard. */
  hold(): void {
    this.playout.held = true;
  }

  /** Opens the transports, says HELLO (UDP) and starts the playout clock. */
  static async open(options: VoiceSessionOptions): Promise<VoiceSession> {
    const s = new VoiceSession(options);
    try {
      await s.startTransports();
    } catch (err) {
      s.close();
      throw err;
    }
    return s;
  }

  private async startTransports(): Promise<void> {
    const o = this.o;
    const onPacket = (p: Uint8Array, via: TransportKind): void => this.receive(p, via);
    if (o.signaling) this.ws = new WsTransport(o.signaling, onPacket);
    if (this.mode === 'udp') {
      this.udp = await UdpTransport.open({
        target: o.udpTarget,
        ...(o.bindHost !== undefined ? { bindHost: o.bindHost } : {}),
        onPacket,
        onError: (err) => this.problem(err),
      });
      if (this.closed) {
        this.udp.close();
        return;
      }
      this.sendHello();
      this.helloTimer = setInterval(() => this.onHelloTimer(), o.helloRetryMs ?? 1000);
    } else {
      // A HELLO over the WebSocket tells the server where our voice goes (protocol README 8.5); its
      // HELLO_ACK makes the session ready. Repeated until answered, as over UDP.
      this.sendControl(VoicePacketType.HELLO, this.ws!);
      this.helloTimer = setInterval(() => this.onHelloTimer(), o.helloRetryMs ?? 1000);
    }
    this.heartbeatTimer = setInterval(() => this.onHeartbeatTimer(), o.heartbeatMs ?? 5000);
    this.playout.start();
  }

  /** The transport voice currently goes over. */
  get transport(): TransportKind {
    return this.mode === 'ws' || this.usingFallback ? 'ws' : 'udp';
  }

  get isReady(): boolean {
    return this.ready;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The local UDP port (null over the WebSocket). */
  get udpPort(): number | null {
    return this.udp?.localPort ?? null;
  }

  /** Resolves once voice can flow (a HELLO_ACK, or the WebSocket fallback); rejects after `timeoutMs`. */
  whenReady(timeoutMs = 5000): Promise<void> {
    if (this.ready) return Promise.resolve();
    if (this.closed) return Promise.reject(new VoiceClientError('CLOSED'));
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.readyWaiters.delete(done);
        if (this.ready) resolve();
        else reject(new VoiceClientError('CLOSED'));
      };
      const timer = setTimeout(() => {
        this.readyWaiters.delete(done);
        reject(new VoiceClientError('NOT_READY', `no HELLO_ACK within ${timeoutMs} ms`));
      }, timeoutMs);
      this.readyWaiters.add(done);
    });
  }

  /**
   * Starts (or replaces) the audio source being sent. `prime`: the frame another session sent
   * last (a handover): the new encoder encodes it first, output discarded, so its first frame
   * continues that stream for the listeners' decoders instead of starting one (a fresh encoder's
   * first frame, coded as a start, read 12-18 dB under a tone for 10 ms).
   */
  startSending(source: AudioSource, prime?: Int16Array): void {
    if (this.closed) throw new VoiceClientError('CLOSED');
    this.stopSending();
    if (prime?.length === this.frameSamples && !this.encoderUsed) {
      const scratch = new Uint8Array(MAX_PAYLOAD_BYTES);
      try {
        // Twice, as the server primes its mix encoders: the first is coded as a stream start.
        this.encoder.encode(prime, scratch);
        this.encoder.encode(prime, scratch);
      } catch (err) {
        this.problem(err);
      }
    }
    this.encoderUsed = true;
    const now = performance.now();
    // Continue the timeline: never behind what was sent, and following the wall clock across pauses.
    const byClock = Math.round(((now - this.epoch) * 48) / this.frameSamples) * this.frameSamples;
    const first = Math.max(this.nextTs, byClock);
    this.sender = new Sender({
      frameMs: this.frameMs,
      encoder: this.encoder,
      source,
      send: (flags, ts, payload, len) => this.sendAudio(flags, ts, payload, len),
      firstTimestamp: first,
      muted: () => this.muted,
      sentLog: this.o.sentLog ?? null,
      onError: (err) => this.problem(err),
      redundancy: this.o.red === true ? (this.o.redundancy ?? 'auto') : 'off',
    });
    this.sender.start();
  }

  stopSending(): void {
    if (!this.sender) return;
    this.nextTs = Math.max(this.nextTs, this.sender.nextTimestamp);
    this.senderStats = this.sender.stats();
    this.sender.close();
    this.sender = null;
  }

  get sending(): boolean {
    return this.sender !== null;
  }

  /**
   * Calls `fn` once, right after the next AUDIO frame is sent (a frame a muted sender drops is
   * not sent). A handover stops this sender there, so the new one's first frame comes one frame
   * period after this one's last, as if nothing had changed.
   */
  afterNextFrame(fn: () => void): void {
    this.afterFrame = fn;
  }

  /** The last frame this session's sender read (a copy), or null: what a handover primes with. */
  lastSentFrame(): Int16Array | null {
    const f = this.sender?.lastFrame;
    return f ? f.slice() : null;
  }

  /**
   * A timing advance from the server (`voice.advance`, numbered per binding): see Sender.advance.
   * Each `seq` applies once (a repeat or an older one is ignored). False when not applied.
   */
  advance(seq: number, ms: number): boolean {
    if (seq <= this.advanceSeq) return false;
    this.advanceSeq = seq;
    return this.sender?.advance(ms) ?? false;
  }

  set deaf(v: boolean) {
    this.playout.deaf = v;
  }
  get deaf(): boolean {
    return this.playout.deaf;
  }

  /**
   * The next `out.length` samples (48 kHz mono) of what the server sends us, decoded and
   * jitter-buffered: for a sound card's callback (open the session with `playoutClock: 'pull'`).
   * `playTime` (performance.now() ms) is when its first sample plays. Returns `out.length`.
   */
  pull(out: Int16Array, playTime?: number): number {
    return this.playout.pull(out, playTime);
  }

  /** Applies a channel's new codec settings (bitrate, complexity) to the running encoder. */
  updateCodec(bitrate: number, complexity?: number): void {
    if (this.closed) return;
    try {
      this.encoder.setBitrate(bitrate);
      if (complexity !== undefined) this.encoder.setComplexity(complexity);
    } catch (err) {
      this.problem(err);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Sending

  private pathFor(): VoiceTransport | null {
    if (this.mode === 'ws' || this.usingFallback) return this.ws;
    return this.udp;
  }

  /** Seals one packet with the next sequence number and sends it; returns the sequence or -1. */
  private seal(
    type: VoicePacketType,
    flags: number,
    timestamp: number,
    payload: Uint8Array,
    via: VoiceTransport,
  ): number {
    const h = this.header;
    h.type = type;
    h.flags = flags;
    h.voiceId = this.binding.voiceId;
    h.sequence = this.cipher.nextSequence;
    h.timestamp = timestamp;
    const len = this.cipher.seal(h, payload, this.sealBuf);
    if (!via.send(this.sealBuf, len)) return -1;
    this.c.packetsSent++;
    return h.sequence;
  }

  private sendAudio(flags: number, timestamp: number, payload: Uint8Array, length: number): number {
    const via = this.pathFor();
    if (this.closed || !via) return -1;
    const seq = this.seal(VoicePacketType.AUDIO, flags, timestamp % UINT32, payload.subarray(0, length), via);
    if (seq >= 0) this.c.audioSent++;
    const after = this.afterFrame;
    if (after) {
      this.afterFrame = null;
      try {
        after();
      } catch (err) {
        this.problem(err);
      }
    }
    return seq;
  }

  private sendControl(type: VoicePacketType, via: VoiceTransport): void {
    const now = performance.now();
    // A HEARTBEAT also reports what we received of the server's packets and lost (README 8.3): the
    // server adds RED to what it sends us while that loss is over 1 % (9.1). Same layout as an ACK.
    const body =
      type === VoicePacketType.HEARTBEAT
        ? this.hbBody.subarray(
            0,
            writeAckBody(this.hbBody, 0, {
              sentAt: now,
              packetsReceived: this.c.packetsReceived >>> 0,
              packetsLost: this.cipher.replay.lost >>> 0,
            }),
          )
        : this.ctrlBody;
    if (body === this.ctrlBody) writeTimeBody(this.ctrlBody, 0, now);
    else {
      this.hbAt = now;
      this.hbLost = this.cipher.replay.lost;
    }
    try {
      this.seal(type, 0, Math.floor(now) % UINT32, body, via);
    } catch (err) {
      this.problem(err);
    }
  }

  private sendHello(): void {
    if (!this.udp || this.closed) return;
    this.sendControl(VoicePacketType.HELLO, this.udp);
    this.udpSent();
  }

  /** Counts an unanswered UDP control packet; enough of them switch voice to the WebSocket. */
  private udpSent(): void {
    this.udpUnanswered++;
    if (this.fallbackAllowed && !this.usingFallback && this.udpUnanswered >= UDP_BROKEN_AFTER) {
      this.usingFallback = true;
      this.emitTransport();
      // Tell the server where our voice goes now (protocol README 8.5: a HELLO over the WebSocket).
      if (this.ws) this.sendControl(VoicePacketType.HELLO, this.ws);
      this.setReady();
    }
  }

  private onHelloTimer(): void {
    if (this.closed) return;
    if (this.mode === 'ws') {
      if (!this.ready && this.ws) this.sendControl(VoicePacketType.HELLO, this.ws);
      return;
    }
    // Until the first HELLO_ACK, and again while UDP is broken, keep saying HELLO over UDP.
    if (!this.udpConfirmed || this.usingFallback) this.sendHello();
  }

  private onHeartbeatTimer(): void {
    if (this.closed) return;
    if (this.mode === 'ws' || this.usingFallback) {
      if (this.ws) this.sendControl(VoicePacketType.HEARTBEAT, this.ws);
      return;
    }
    if (!this.udpConfirmed || !this.udp) return; // HELLO retries are running
    this.sendControl(VoicePacketType.HEARTBEAT, this.udp);
    this.udpSent();
    if (this.udpUnanswered >= UDP_BROKEN_AFTER) this.sendHello();
  }

  // ---------------------------------------------------------------------------------------------
  // Receiving

  private receive(packet: Uint8Array, via: TransportKind): void {
    if (this.closed) return;
    const h = this.inHeader;
    const r: number | VoiceOpenError = this.cipher.openInto(packet, this.plain, h);
    if (typeof r !== 'number') {
      if (r === 'REPLAY') this.c.duplicates++;
      else this.c.rejected++;
      return;
    }
    if (h.voiceId !== this.binding.voiceId) {
      this.c.rejected++;
      return;
    }
    this.c.packetsReceived++;
    const now = performance.now();
    if ((h.flags & VoiceFlags.RED) !== 0) {
      this.c.redReceived++;
      this.redAt = now;
    }
    switch (h.type) {
      case VoicePacketType.AUDIO:
        this.c.audioReceived++;
        this.playout.insert(h.timestamp, this.plain, r, now, h.flags);
        this.reportLossEarly(now);
        return;
      case VoicePacketType.STREAM:
        // One speaker's frame, forwarded as sent (protocol README 8.8): source, then Opus.
        this.c.streamReceived++;
        this.playout.insertStream(this.plain, r, h.timestamp, h.flags, now);
        this.reportLossEarly(now);
        return;
      case VoicePacketType.HELLO_ACK:
      case VoicePacketType.HEARTBEAT_ACK:
        this.onAck(r, via, now);
        return;
      default:
        return; // HELLO/HEARTBEAT are client-to-server only
    }
  }

  /** Sends a HEARTBEAT now when loss began on a connection granted RED (EARLY_REPORT_LOSSES). */
  private reportLossEarly(now: number): void {
    if (
      this.o.red !== true ||
      this.cipher.replay.lost - this.hbLost < EARLY_REPORT_LOSSES ||
      now - this.hbAt < EARLY_REPORT_MIN_MS ||
      now - this.redAt < RED_ARRIVING_MS
    )
      return;
    this.c.earlyReports++;
    this.onHeartbeatTimer();
  }

  private onAck(length: number, via: TransportKind, now: number): void {
    const ack = readAckBody(this.plain, length);
    if (!ack) {
      this.c.rejected++;
      return;
    }
    this.acks++;
    const rtt = now - ack.sentAt;
    if (rtt >= 0 && rtt < 60_000) {
      this.rttLast = rtt;
      this.rtt.record(rtt);
      if (rtt < this.rttMin) this.rttMin = rtt;
    }
    const dRecv = ack.packetsReceived - this.upReceived;
    const dLost = ack.packetsLost - this.upLost;
    if (dRecv >= 0 && dLost >= 0 && dRecv + dLost > 0) {
      this.upLoss = dLost / (dRecv + dLost);
      this.sender?.noteUpstreamLoss(this.upLoss, now);
    }
    this.upReceived = ack.packetsReceived;
    this.upLost = ack.packetsLost;
    if (via === 'udp') {
      this.udpUnanswered = 0;
      this.udpConfirmed = true;
      if (this.usingFallback) {
        this.usingFallback = false;
        this.emitTransport();
      }
    }
    this.setReady();
  }

  private setReady(): void {
    if (this.ready) return;
    this.ready = true;
    for (const w of [...this.readyWaiters]) w();
    try {
      this.o.onReady?.();
    } catch {
      // listener errors never break the session
    }
  }

  private emitTransport(): void {
    try {
      this.o.onTransport?.(this.transport);
    } catch {
      // listener errors never break the session
    }
  }

  private problem(err: unknown): void {
    try {
      this.o.onProblem?.(err);
    } catch {
      // listener errors never break the session
    }
  }

  stats(): VoiceSessionStats {
    const snap = this.rtt.snapshot();
    return {
      voiceId: this.binding.voiceId,
      frameMs: this.frameMs,
      transport: this.transport,
      ready: this.ready,
      ...this.c,
      lost: this.cipher.replay.lost,
      rtt: {
        lastMs: this.rttLast,
        meanMs: snap.count > 0 ? snap.mean : null,
        p50Ms: snap.count > 0 ? snap.p50 : null,
        minMs: Number.isFinite(this.rttMin) ? this.rttMin : null,
        samples: this.rtt.total,
      },
      upstream: {
        packetsReceived: this.upReceived,
        packetsLost: this.upLost,
        lossFraction: this.upLoss,
        acks: this.acks,
      },
      heartbeatsUnanswered: this.udpUnanswered,
      udp: this.udp?.stats() ?? null,
      ws: this.ws?.stats() ?? null,
      playout: this.playout.stats(),
      sources: this.playout.sourceStats(),
      sender: this.sender?.stats() ?? this.senderStats,
    };
  }

  /** Idempotent: stops the sender, the timers and the playout, closes the transports and the codec. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopSending();
    if (this.helloTimer) clearInterval(this.helloTimer);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.helloTimer = null;
    this.heartbeatTimer = null;
    this.playout.close();
    this.udp?.close();
    this.ws?.close();
    this.encoder.destroy();
    // Every seal and open checks `closed` first: a native context can go now, not at GC.
    this.cipher.close();
    for (const w of [...this.readyWaiters]) w();
  }
}
