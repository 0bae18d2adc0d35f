import { EventEmitter } from 'node:events';
import {
  ID_PATTERN,
  VoiceAdvance,
  asChannelId,
  nodeCryptoAead,
  type AeadBackend,
  type Channel,
  type ChannelId,
  type ConnectionStats,
  type ResultMap,
  type ServerEvent,
  type User,
  type UserId,
  type VoiceBinding,
  type VoiceSettings,
} from '@voice/protocol';
import { createOpus, loadNativeAead, type OpusFactory } from '@voice/media';
import { emitSafely } from '../emit-safely.js';
import { RestClient } from '../rest.js';
import { RequestError, SignalingClient } from '../signaling.js';
import { VoiceClientError } from './errors.js';
import {
  resolveVoiceClientOptions,
  type ResolvedVoiceClientOptions,
  type VoiceClientOptions,
} from './options.js';
import { Recording, SentLog, type RecordingSnapshot } from './recording.js';
import { VoiceSession, type VoiceSessionStats } from './session.js';
import { SAMPLE_RATE, SilenceSource, type AudioSource } from './sources.js';
import { voiceTarget, type TransportKind } from './transport.js';

export type JoinResult = ResultMap['channel.join'];

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export interface JoinOptions {
  /** Create the channel when no channel has this name. */
  create?: boolean;
  password?: string;
  /** Codec settings for a channel created here. */
  voice?: Partial<VoiceSettings>;
}

/** Typed events. Listener errors are caught: they never break the client. */
export interface VoiceClientEvents {
  /** The voice path is up: a HELLO_ACK (over UDP or the WebSocket), or the switch to the fallback. */
  ready: [transport: TransportKind];
  /** Voice moved to another transport (UDP broken -> 'ws', UDP back -> 'udp'). */
  transport: [transport: TransportKind];
  /** The voice binding became void: we left, were moved, or the channel was deleted. */
  left: [reason: string];
  /** The signaling connection closed; the client is closed too. */
  disconnected: [code: number, reason: string];
  /** Signaling dropped; the client is reconnecting with its token within the grace period. */
  reconnecting: [code: number, reason: string];
  /** Signaling is back. `restored`: the server still had the session (and its channel). */
  resumed: [restored: boolean];
  /** The session moved to the channel owner's signaling URL (`voice.redirect`, cluster only). */
  redirected: [url: string];
  /** A non-fatal problem (codec, socket); counted in stats too. */
  problem: [err: unknown];
}

/** A flat summary for logs and the bot's JSON lines; `session` has every detail. */
export interface VoiceClientStats {
  channelId: ChannelId | null;
  transport: TransportKind | 'none';
  ready: boolean;
  muted: boolean;
  deaf: boolean;
  packetsSent: number;
  audioSent: number;
  packetsReceived: number;
  audioReceived: number;
  /** STREAM packets: speakers forwarded separately (protocol README 8.8); per source in `session.sources`. */
  streamReceived: number;
  /** Speakers received as separate streams at most: the server's grant (1: it mixes). */
  streams: number;
  /** The voice cipher's AES-256-GCM backend (`openssl-evp (...)`, or `node:crypto`). */
  aead: string;
  /** Server packets never received (sequence gaps). */
  lost: number;
  /** Audio that arrived after its playout turn. */
  late: number;
  duplicates: number;
  rejected: number;
  concealed: number;
  /** Of `concealed`, lost frames rebuilt from the next packet's in-band FEC. */
  fecRecovered: number;
  /** Lost frames played from the copy the next packet carried (RED), and RED packets sent. */
  redRecovered: number;
  redSent: number;
  /** Times the jitter buffer ran dry right after audio (talkspurt ends, late or lost packets). */
  underruns: number;
  framesPlayed: number;
  framesSilent: number;
  jitterMs: number;
  bufferMs: number;
  targetMs: number;
  rttMs: number | null;
  rttP50Ms: number | null;
  /** Fraction of our packets the server missed over the last heartbeat interval. */
  upstreamLoss: number | null;
  upstreamPacketsLost: number;
  signalingRttMs: number | null;
  /** The latest `stats` event from the server. */
  server: ConnectionStats | null;
  session: VoiceSessionStats | null;
}

/** The longest a replaced session keeps playing while the new one has no audio yet, ms. */
const HANDOVER_MAX_MS = 1000;

/**
 * A headless voice client: REST log-in, signaling, channel join, and voice over UDP (or the WebSocket)
 * with Opus, an adaptive jitter buffer, a recording of what it played and a log of what it sent.
 *
 * Ownership: the client owns the signaling connection, its keep-alive timer and the current
 * VoiceSession (one per VoiceBinding: cipher, UDP socket, timers, tickers, codec). `close()` is
 * idempotent and closes them all.
 */
export class VoiceClient extends EventEmitter<VoiceClientEvents> {
  private sig: SignalingClient;
  readonly rest: RestClient;
  readonly token: string;
  readonly user: User;
  /** Capture times and positions of every AUDIO frame sent (across sessions). */
  readonly sentLog: SentLog;
  private readonly rec: Recording | null;
  private session: VoiceSession | null = null;
  /**
   * The session a `voice.moved` replaced, still playing what it had buffered until the new one's
   * first audio (make-before-break), or HANDOVER_MAX_MS. It sends nothing.
   */
  private outgoing: VoiceSession | null = null;
  private outgoingTimer: NodeJS.Timeout | null = null;
  /**
   * The replaced session that still sends our audio, on its old binding, until the new session's
   * HELLO is acknowledged (protocol README 8.4: the server accepts both until then), or the
   * handover ends. It may be `outgoing` too.
   */
  private upstreamOld: VoiceSession | null = null;
  /** Where `pull()` runs the new session's held playout during a handover (reused). */
  private pullScratch = new Int16Array(0);
  private currentChannel: Channel | null = null;
  private source: AudioSource | null = null;
  private muted = false;
  private deaf = false;
  private closed = false;
  private joinSeq = 0;
  /** The signaling URL in use: the configured one, or the owner's after a `voice.redirect`. */
  private wsUrl: string;
  private redirecting = false;
  private pingTimer: NodeJS.Timeout | null = null;
  private signalingRtt: number | null = null;
  private serverStats: ConnectionStats | null = null;
  /** Stats of the last voice session, kept when it ends (so a final report after close has figures). */
  private lastSessionStats: VoiceSessionStats | null = null;
  private readonly detach: (() => void)[] = [];
  private listenerErrorCount = 0;
  /** Pending `waitReady` calls, failed when the binding is void for good (left, closed). */
  private readonly readyWaiters = new Set<(err: Error) => void>();

  private constructor(
    private readonly o: ResolvedVoiceClientOptions,
    private readonly opus: OpusFactory,
    /** The voice cipher's AES-256-GCM: the caller's, else media's native addon, else node:crypto. */
    private readonly aead: AeadBackend | null,
    signaling: SignalingClient,
    rest: RestClient,
    token: string,
  ) {
    super();
    this.sig = signaling;
    this.wsUrl = o.wsUrl;
    this.rest = rest;
    this.token = token;
    this.user = signaling.welcome.user;
    this.sentLog = new SentLog(o.sentLogMax);
    this.rec = o.record ? new Recording(Math.round(o.recordMaxSeconds * SAMPLE_RATE)) : null;
    this.listen();
    const every = Math.max(1000, Math.floor(signaling.welcome.heartbeatMs / 2));
    this.pingTimer = setInterval(() => this.ping(), every);
  }

  /**
   * Logs in (unless a token is given), connects signaling and, when `channel` is set, joins it and
   * starts sending `source`. Rejects with TypeError for bad options before touching the network.
   */
  static async connect(options: VoiceClientOptions): Promise<VoiceClient> {
    const o = resolveVoiceClientOptions(options);
    const opus = o.opus ?? (await createOpus());
    const rest = new RestClient(o.serverUrl.origin, o.token);
    const token = o.token ?? (await rest.login(o.nickname!)).token;
    const signaling = await SignalingClient.connect({
      url: o.wsUrl,
      token,
      client: o.clientName,
      ...(o.adminToken !== undefined ? { adminToken: o.adminToken } : {}),
      ...(o.requestTimeoutMs !== undefined ? { requestTimeoutMs: o.requestTimeoutMs } : {}),
      streams: o.streams,
      red: o.redundancy !== 'off',
    });
    const client = new VoiceClient(o, opus, o.aead ?? loadNativeAead(), signaling, rest, token);
    try {
      const w = signaling.welcome;
      // A resumed session that was in a channel comes back with a fresh binding (new key and voice
      // id, protocol README 8.4): take it as it is, with a new cipher at sequence 0.
      if (w.resumed && w.voice && w.channelId) await client.adopt(w.channelId, w.voice);
      if (o.channel !== undefined) {
        // Already there after a resume: the adopted binding is as good as a new join's.
        if (!client.isIn(o.channel)) {
          await client.join(o.channel, {
            ...(o.create !== undefined ? { create: o.create } : {}),
            ...(o.password !== undefined ? { password: o.password } : {}),
            ...(o.voice !== undefined ? { voice: o.voice } : {}),
          });
        }
        if (o.source) client.startVoice(o.source);
      }
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  get channel(): Channel | null {
    return this.currentChannel;
  }

  /** The current signaling connection (a new one after a resume). */
  get signaling(): SignalingClient {
    return this.sig;
  }

  /** The current voice binding, or null when not in a channel. */
  get binding(): VoiceBinding | null {
    return this.session?.binding ?? null;
  }

  /** The current voice session (one per binding), or null. stats() reports the last one after it ends. */
  get voice(): VoiceSession | null {
    return this.session;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether RED is in use both ways on this connection: asked for (redundancy not 'off') and granted (Welcome.red). */
  get red(): boolean {
    return this.o.redundancy !== 'off' && this.signaling.welcome.red === true;
  }

  /**
   * Speakers this connection receives as separate streams: what the server granted (Welcome.streams,
   * absent: 1), never more than asked for. 1: the server mixes.
   */
  get streams(): number {
    const granted = this.signaling.welcome.streams;
    const n = typeof granted === 'number' && Number.isInteger(granted) ? granted : 1;
    return Math.max(1, Math.min(n, this.o.streams));
  }

  /**
   * Joins a channel by id (`c_...`) or by name, creating it when `create` is set and no channel has
   * that name, then starts voice with the binding from the join result. Leaves the previous channel's
   * voice (the server does the same). Joining the channel we are in rekeys: the server answers with a
   * new binding, and voice moves to it with a new cipher, make-before-break as on `voice.moved` (what
   * the old session holds plays on until the new one has audio). The result holds every member,
   * however many pages the server sent them in.
   */
  async join(channel: string, options: JoinOptions = {}): Promise<JoinResult> {
    if (typeof channel !== 'string' || channel.trim() === '')
      throw new TypeError('channel must be a non-empty string');
    this.checkOpen();
    const seq = ++this.joinSeq;
    const channelId = await this.resolveChannel(channel, options);
    const body = { channelId, ...(options.password !== undefined ? { password: options.password } : {}) };
    const result = await this.signaling.request('channel.join', body);
    if (!result.voice) throw new VoiceClientError('NO_VOICE_BINDING');
    const current = this.session?.binding;
    if (current && sameKey(current.key, result.voice.key)) {
      // A server that hands the same key out again (protocol README 8.4 says it never does): a new
      // cipher would start again at sequence 0 and reuse AES-GCM nonces, so keep the running one.
      this.currentChannel = result.channel;
      return this.withAllMembers(result);
    }
    // The channel we are in (a rekey, perhaps right after a resume): hand over make-before-break
    // as on `voice.moved`, so what the old session holds plays on meanwhile.
    const rekey = this.session !== null && this.currentChannel?.id === result.channel.id;
    await this.startSession(seq, result.channel, result.voice, false, rekey);
    return this.withAllMembers(result);
  }

  /** A crowded channel's member list comes in pages (protocol README 4.8): fetched after voice starts. */
  private async withAllMembers(result: JoinResult): Promise<JoinResult> {
    if (result.membersNext === null) return result;
    const members = await this.signaling.allMembers(result.channel.id, result.members, result.membersNext);
    return { ...result, members, membersNext: null };
  }

  /**
   * Starts voice on the binding a resumed `hello` returned. The previous process's mute and deafen
   * state is replaced by this client's (sent with `voice.state`). A voice session kept through the
   * reconnect hands over make-before-break, as on `voice.moved`.
   */
  private async adopt(channelId: ChannelId, binding: VoiceBinding): Promise<void> {
    const seq = ++this.joinSeq;
    const listed = this.signaling.allChannels();
    const known = this.currentChannel?.id === channelId ? this.currentChannel : null;
    if (known) {
      // The channel we were in: voice moves to the new binding at once. The server voided the old
      // one when it issued this, so the old session plays on only what it holds: waiting for the
      // channel list first cost a round trip of silence (3 frames at 30 ms each way). Settings
      // changed while we were away apply when the list comes.
      listed.catch(() => undefined);
      await this.startSession(seq, known, binding, true, true);
      const channel = (await listed).find((c) => c.id === channelId);
      if (!channel || seq !== this.joinSeq || this.currentChannel?.id !== channelId) return;
      this.currentChannel = channel;
      this.session?.updateCodec(this.o.encoder?.bitrate ?? channel.voice.bitrate, channel.voice.complexity);
      return;
    }
    const channel = (await listed).find((c) => c.id === channelId);
    // Deleted meanwhile: the channel.deleted event voids the binding; nothing to start.
    if (!channel) return;
    await this.startSession(seq, channel, binding, true, true);
  }

  /** True when the current channel is `channel` (an id, or a name compared as resolveChannel does). */
  private isIn(channel: string): boolean {
    const c = this.currentChannel;
    if (!c || !this.session) return false;
    const wanted = channel.normalize('NFC').trim();
    return c.id === wanted || c.name === wanted;
  }

  /** Leaves the channel; the voice binding is void from then on. */
  async leave(): Promise<void> {
    this.checkOpen();
    this.joinSeq++;
    this.endSession('leave');
    await this.signaling.request('channel.leave', {});
  }

  /**
   * Starts sending `source` (default: the previous source, else silence that sends nothing). The
   * source stays set across joins: a new channel's voice session sends it too.
   */
  startVoice(source?: AudioSource): void {
    this.checkOpen();
    if (source !== undefined && (typeof source !== 'object' || typeof source.read !== 'function')) {
      throw new TypeError('source must be an AudioSource');
    }
    this.source = source ?? this.source ?? new SilenceSource();
    if (!this.session) throw new VoiceClientError('NOT_IN_CHANNEL');
    // During a handover the old session sends until the new one is acknowledged.
    if (this.upstreamOld) this.upstreamOld.startSending(this.source);
    else this.session.startSending(this.source);
  }

  /** Stops sending (receiving goes on). */
  stopVoice(): void {
    this.source = null;
    this.session?.stopSending();
    this.upstreamOld?.stopSending();
  }

  /**
   * Resolves once the voice path is up (a HELLO_ACK over UDP or the WebSocket, or the fallback). A
   * session replaced meanwhile (a rekey, `voice.moved`, a `voice.redirect`, a resume) does not end the
   * wait: the next one's readiness does. Rejects when we leave the channel, on close, and after
   * `timeoutMs`.
   */
  async waitReady(timeoutMs = 5000): Promise<void> {
    if (!this.session) throw new VoiceClientError('NOT_IN_CHANNEL');
    if (this.session.isReady) return;
    await new Promise<void>((resolve, reject) => {
      const done = (err: Error | null): void => {
        clearTimeout(timer);
        this.off('ready', onReady);
        this.readyWaiters.delete(done);
        if (err) reject(err);
        else resolve();
      };
      const onReady = (): void => done(null);
      const timer = setTimeout(
        () => done(new VoiceClientError('NOT_READY', `voice not ready within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.on('ready', onReady);
      this.readyWaiters.add(done);
    });
  }

  /** Stops (or resumes) sending and tells the channel via `voice.state`. */
  async setSelfMute(muted: boolean): Promise<void> {
    if (typeof muted !== 'boolean') throw new TypeError('muted must be a boolean');
    this.checkOpen();
    this.muted = muted;
    if (this.upstreamOld) this.upstreamOld.muted = muted;
    if (this.session) {
      this.session.muted = muted;
      await this.signaling.request('voice.state', { selfMute: muted });
    }
  }

  /** Plays silence (and asks the server to stop mixing for us) and tells the channel via `voice.state`. */
  async setSelfDeaf(deaf: boolean): Promise<void> {
    if (typeof deaf !== 'boolean') throw new TypeError('deaf must be a boolean');
    this.checkOpen();
    this.deaf = deaf;
    if (this.session) {
      this.session.deaf = deaf;
      await this.signaling.request('voice.state', { selfDeaf: deaf });
    }
  }

  /** How loud we hear `userId`, 0-200 percent (the server applies it in our mix). */
  async setVolume(userId: UserId | string, percent: number): Promise<void> {
    if (!Number.isInteger(percent) || percent < 0 || percent > 200) {
      throw new TypeError(`volume must be an integer 0-200, got ${percent}`);
    }
    this.checkOpen();
    await this.signaling.request('voice.volume', { userId: userId as UserId, volume: percent });
  }

  /**
   * Pull-driven playout (NetEq's GetAudio): fills `out` with the next `out.length` samples (48 kHz
   * mono, any length: a sound card's 10 ms period, a frame) of what this client hears, and returns
   * that count; silence while no voice session is up. Connect with `playoutClock: 'pull'` so no
   * timer pulls as well. `playTime` (performance.now() ms) is when the first sample plays.
   */
  pull(out: Int16Array, playTime?: number): number {
    const old = this.outgoing;
    if (old) {
      // A handover: the new session's playout runs (held) beside the old one's, which is heard
      // until the new one has audio; that can happen within this very pull.
      if (!this.session) return old.pull(out, playTime);
      if (this.pullScratch.length !== out.length) this.pullScratch = new Int16Array(out.length);
      this.session.pull(this.pullScratch, playTime);
      if (this.outgoing === old) return old.pull(out, playTime);
      out.set(this.pullScratch);
      return out.length;
    }
    if (this.session) return this.session.pull(out, playTime);
    out.fill(0);
    return out.length;
  }

  /** A copy of the played-out audio: sample i played at startTime + i / 48 ms (performance.now()). */
  recording(): RecordingSnapshot {
    return (
      this.rec?.snapshot() ?? { samples: new Int16Array(0), startTime: Number.NaN, sampleRate: SAMPLE_RATE }
    );
  }

  clearRecording(): void {
    this.rec?.clear();
  }

  stats(): VoiceClientStats {
    const s = this.session?.stats() ?? this.lastSessionStats;
    const p = s?.playout;
    return {
      channelId: this.currentChannel?.id ?? null,
      transport: s?.transport ?? 'none',
      ready: s?.ready ?? false,
      muted: this.muted,
      deaf: this.deaf,
      packetsSent: s?.packetsSent ?? 0,
      audioSent: s?.audioSent ?? 0,
      packetsReceived: s?.packetsReceived ?? 0,
      audioReceived: s?.audioReceived ?? 0,
      streamReceived: s?.streamReceived ?? 0,
      streams: this.streams,
      aead: (this.aead ?? nodeCryptoAead).name,
      lost: s?.lost ?? 0,
      late: p?.late ?? 0,
      duplicates: (s?.duplicates ?? 0) + (p?.duplicates ?? 0),
      rejected: s?.rejected ?? 0,
      concealed: p?.framesConcealed ?? 0,
      fecRecovered: p?.fecRecovered ?? 0,
      redRecovered: p?.redRecovered ?? 0,
      redSent: s?.sender?.redSent ?? 0,
      underruns: p?.underruns ?? 0,
      framesPlayed: p?.framesPlayed ?? 0,
      framesSilent: p?.framesSilent ?? 0,
      jitterMs: p?.jitterMs ?? 0,
      bufferMs: p?.bufferMs ?? 0,
      targetMs: p?.targetMs ?? 0,
      rttMs: s?.rtt.lastMs ?? null,
      rttP50Ms: s?.rtt.p50Ms ?? null,
      upstreamLoss: s?.upstream.lossFraction ?? null,
      upstreamPacketsLost: s?.upstream.packetsLost ?? 0,
      signalingRttMs: this.signalingRtt,
      server: this.serverStats,
      session: s,
    };
  }

  /** Idempotent: stops voice, the keep-alive and the signaling connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.joinSeq++;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.endSession(null);
    for (const w of [...this.readyWaiters]) w(new VoiceClientError('CLOSED'));
    for (const off of this.detach.splice(0)) off();
    if (!this.signaling.closed) {
      const closedEvent = new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.signaling.once('close', () => {
          clearTimeout(t);
          resolve();
        });
      });
      this.signaling.close();
      await closedEvent;
    }
  }

  // ---------------------------------------------------------------------------------------------

  private checkOpen(): void {
    if (this.closed) throw new VoiceClientError('CLOSED');
  }

  /** A failing listener must not break the voice path, nor keep the other listeners from hearing. */
  private safeEmit<K extends keyof VoiceClientEvents>(event: K, ...args: VoiceClientEvents[K]): void {
    emitSafely(this, event, args, () => void this.listenerErrorCount++);
  }

  /** Errors thrown by this client's event listeners (each was caught; the others still ran). */
  get listenerErrors(): number {
    return this.listenerErrorCount;
  }

  private async resolveChannel(channel: string, options: JoinOptions): Promise<ChannelId> {
    const wanted = channel.normalize('NFC').trim();
    if (ID_PATTERN.test(wanted) && wanted.startsWith('c_')) return asChannelId(wanted);
    const find = async (): Promise<Channel | undefined> => {
      const channels = await this.signaling.allChannels();
      return (
        channels.find((c) => c.name === wanted) ??
        channels.find((c) => c.name.toLowerCase() === wanted.toLowerCase())
      );
    };
    const found = await find();
    if (found) return found.id;
    if (!options.create)
      throw new VoiceClientError('CHANNEL_NOT_FOUND', `no channel named ${JSON.stringify(wanted)}`);
    try {
      const { channel: created } = await this.signaling.request('channel.create', {
        name: wanted,
        ...(options.password !== undefined ? { password: options.password } : {}),
        ...(options.voice !== undefined ? { voice: options.voice } : {}),
      });
      return created.id;
    } catch (err) {
      // Another client created it meanwhile: join theirs.
      if (err instanceof RequestError && err.code === 'CHANNEL_NAME_TAKEN') {
        const again = await find();
        if (again) return again.id;
      }
      throw err;
    }
  }

  /**
   * Opens a VoiceSession (new cipher at sequence 0) for a new binding, replacing the current one.
   * `syncState` sends our mute and deafen state even when both are off (a resumed session may carry
   * the previous process's).
   */
  private async startSession(
    seq: number,
    channel: Channel,
    binding: VoiceBinding,
    syncState: boolean,
    handover = false,
  ): Promise<void> {
    const old = this.session;
    if (old && handover) {
      this.session = null;
      this.lastSessionStats = old.stats();
      // Make-before-break: the old session keeps playing what it holds until the new one has
      // audio, and keeps sending on its binding until the new one is acknowledged.
      const heard = this.outgoing === null && old.playout.hasPlayedAudio;
      const sending = this.upstreamOld === null && old.sending;
      if (heard) this.outgoing = old;
      else {
        // Not heard: it has played no audio, or a handover is already under way (`old` is its
        // held session; the outgoing one is heard and plays on until the new one).
        if (this.outgoingTimer) clearTimeout(this.outgoingTimer);
        this.outgoingTimer = null;
        old.hold();
      }
      if (sending) this.upstreamOld = old;
      else old.stopSending();
      if (!heard && !sending) old.close();
    } else if (!handover) this.endSession(null);
    const held = this.outgoing !== null;
    let session: VoiceSession;
    try {
      session = await this.openSession(channel, binding, held);
    } catch (err) {
      // No new session: the old one, held for the handover, must not play on by itself.
      if ((held || this.upstreamOld) && this.session === null) this.endHandover();
      throw err;
    }
    if (seq !== this.joinSeq || this.closed) {
      // A later join (or close) overtook this one.
      session.close();
      return;
    }
    this.session = session;
    this.currentChannel = channel;
    // A channel nobody speaks in never makes the new session audible: the hold ends anyway.
    if (held) {
      if (session.playout.hasPlayedAudio) this.endHandover(session);
      else this.outgoingTimer = setTimeout(() => this.endHandover(session), HANDOVER_MAX_MS);
    }
    session.muted = this.muted;
    session.deaf = this.deaf;
    // The source moves to the new session once its HELLO is acknowledged (the old one sends it
    // meanwhile, so nothing is lost), or at once when no old session sends.
    if (this.upstreamOld === null) this.moveSender(session);
    else if (session.isReady) this.moveSender(session);
    else
      session.whenReady(HANDOVER_MAX_MS).then(
        () => this.moveSenderSafely(session),
        () => this.moveSenderSafely(session),
      );
    if (syncState || this.muted || this.deaf) {
      await this.signaling.request('voice.state', { selfMute: this.muted, selfDeaf: this.deaf });
    }
  }

  /** moveSender from a promise's callback: an error is reported, not left as an unhandled rejection. */
  private moveSenderSafely(to: VoiceSession): void {
    try {
      this.moveSender(to);
    } catch (err) {
      this.safeEmit('problem', err);
    }
  }

  /**
   * Sends our source from `to` (the current session) from now on: the session that sent it until
   * now stops, and closes unless it is still heard.
   */
  private moveSender(to: VoiceSession): void {
    if (to !== this.session || to.isClosed) return;
    const old = this.upstreamOld;
    if (!old?.sending) return this.senderMoved(to);
    // Right after the old session's next frame: the new sender's first frame then follows it one
    // period later, so the others hear no gap (a sender started at any other moment left up to a
    // frame more between the two, which a listener's buffer of about a frame concealed). A muted
    // sender sends no frame: then after three periods.
    let moved = false;
    const move = (): void => {
      if (moved) return;
      moved = true;
      clearTimeout(fallback);
      // Unless a later handover took over meanwhile (it moves the sender itself). A timer's or a
      // frame hook's callback: what it throws is reported, never thrown into the event loop.
      try {
        if (this.upstreamOld === old && to === this.session) this.senderMoved(to);
      } catch (err) {
        this.safeEmit('problem', err);
      }
    };
    const fallback = setTimeout(move, 3 * old.frameMs);
    old.afterNextFrame(move);
  }

  /** The old session (if any) stops sending and closes unless still heard; `to` sends our source. */
  private senderMoved(to: VoiceSession): void {
    const old = this.upstreamOld;
    this.upstreamOld = null;
    const prime = old?.lastSentFrame() ?? undefined;
    if (old) {
      old.stopSending();
      if (old !== this.outgoing) old.close();
    }
    if (to !== this.session || to.isClosed) return;
    if (this.source && !to.sending) to.startSending(this.source, prime);
  }

  /** A VoiceSession for `binding` with this client's options; `held` plays nothing until audible. */
  private async openSession(channel: Channel, binding: VoiceBinding, held: boolean): Promise<VoiceSession> {
    const o = this.o;
    const session: VoiceSession = await VoiceSession.open({
      binding,
      transport: o.transport,
      signaling: this.signaling,
      udpTarget: o.udpTarget ?? voiceTarget(binding.udpHost, binding.udpPort, o.serverUrl.hostname),
      ...(o.bindHost !== undefined ? { bindHost: o.bindHost } : {}),
      heartbeatMs: o.heartbeatMs,
      helloRetryMs: o.helloRetryMs,
      wsFallback: o.wsFallback,
      opus: this.opus,
      ...(this.aead ? { aead: this.aead } : {}),
      encoder: { complexity: channel.voice.complexity, ...o.encoder },
      ...(o.jitter ? { jitter: o.jitter } : {}),
      ...(o.drainConcealFrames !== undefined ? { drainConcealFrames: o.drainConcealFrames } : {}),
      ...(o.timeStretch !== undefined ? { timeStretch: o.timeStretch } : {}),
      ...(o.playoutClock ? { playoutClock: o.playoutClock } : {}),
      streams: this.streams,
      red: this.red,
      ...(o.redundancy ? { redundancy: o.redundancy } : {}),
      recording: this.rec,
      sentLog: this.sentLog,
      ...(o.onPlayout ? { onPlayout: o.onPlayout } : {}),
      ...(held ? { held, onAudible: () => this.endHandover(session) } : {}),
      onReady: () => this.safeEmit('ready', session.transport),
      onTransport: (kind) => this.safeEmit('transport', kind),
      onProblem: (err) => this.safeEmit('problem', err),
    });
    return session;
  }

  /**
   * Ends a handover (all of it, or only if `to` is the current session): closes the old session
   * and releases the new one's playout.
   */
  private endHandover(to?: VoiceSession): void {
    if (to !== undefined && to !== this.session) return;
    if (this.outgoingTimer) clearTimeout(this.outgoingTimer);
    this.outgoingTimer = null;
    const heard = this.outgoing;
    this.outgoing = null;
    // Still sending (the new session not acknowledged yet): it goes on until it is.
    if (heard && heard !== this.upstreamOld) heard.close();
    else heard?.hold();
    if (to === undefined && this.upstreamOld) {
      // The whole handover ends (a leave, a close, a failed open): nothing sends on the old binding.
      this.upstreamOld.close();
      this.upstreamOld = null;
    }
    this.session?.release();
  }

  private endSession(reason: string | null): void {
    this.endHandover();
    const s = this.session;
    if (!s) return;
    this.session = null;
    this.currentChannel = null;
    this.lastSessionStats = s.stats();
    s.close();
    if (reason !== null) {
      for (const w of [...this.readyWaiters]) w(new VoiceClientError('NOT_IN_CHANNEL'));
      this.safeEmit('left', reason);
    }
  }

  private listen(): void {
    const sig = this.signaling;
    const on = (event: string, fn: Parameters<SignalingClient['on']>[1]): void => {
      sig.on(event, fn);
      this.detach.push(() => sig.off(event, fn));
    };
    on('member.left', (m: ServerEvent<'member.left'>) => {
      if (m.userId === this.user.id && m.channelId === this.currentChannel?.id) this.endSession(m.reason);
    });
    on('channel.deleted', (m: ServerEvent<'channel.deleted'>) => {
      if (m.channelId === this.currentChannel?.id) this.endSession('deleted');
    });
    on('channel.updated', (m: ServerEvent<'channel.updated'>) => {
      if (m.channel.id !== this.currentChannel?.id) return;
      this.currentChannel = m.channel;
      // Bitrate and complexity apply at once; a new frame size comes with the next binding.
      this.session?.updateCodec(
        this.o.encoder?.bitrate ?? m.channel.voice.bitrate,
        m.channel.voice.complexity,
      );
    });
    on('voice.moved', (m: ServerEvent<'voice.moved'>) => {
      // The channel's voice moved to another server process (failover, drain): same channel, new
      // address and key. Switch at once; the source, recording and controls carry over.
      const channel = this.currentChannel;
      if (!channel || m.channelId !== channel.id || this.closed) return;
      this.startSession(++this.joinSeq, channel, m.voice, false, true).catch((err: unknown) =>
        this.safeEmit('problem', err),
      );
    });
    on('voice.redirect', (m: ServerEvent<'voice.redirect'>) => {
      if (m.channelId !== this.currentChannel?.id || this.closed) return;
      void this.redirect(m.url);
    });
    on('stats', (m: ServerEvent<'stats'>) => {
      this.serverStats = m.stats;
    });
    on('voice.advance', (m: unknown) => {
      // The server is trusted but checked: a shift out of range must not move the send clock.
      const a = VoiceAdvance.safeParse(m);
      if (!a.success || a.data.channelId !== this.currentChannel?.id || this.o.timingAdvance === false)
        return;
      this.session?.advance(a.data.seq, a.data.shiftUs / 1000);
    });
    // Why the server said goodbye, if it did. UNAVAILABLE (shutting down, e.g. a restart) is worth
    // coming back for, and so is 4004 (we fell behind reading, e.g. a stalled network); anything
    // else (kick, ban, protocol error) is final.
    let bye: string | null = null;
    on('bye', (m: ServerEvent<'bye'>) => {
      bye = m.code;
    });
    on('close', (code: number, reason: string) => {
      // During a redirect the old connection ends with SESSION_REPLACED: expected, not final.
      if (this.closed || sig !== this.sig || this.redirecting) return;
      const final =
        (bye !== null && bye !== 'UNAVAILABLE') || (code >= 4000 && code !== 4004 && bye !== 'UNAVAILABLE');
      if (!(this.o.resume ?? true) || final) {
        void this.close();
        this.safeEmit('disconnected', code, reason);
        return;
      }
      void this.reconnect(code, reason);
    });
  }

  /**
   * Signaling dropped: reconnect with our token, with back-off, until the server's grace period
   * (from its welcome) runs out. A session the server still has comes back with its channel and a
   * fresh voice binding (protocol README 8.4); one it lost (a restart) is a new session with the same
   * user: then we join the channel we were in again.
   *
   * Voice over UDP goes on meanwhile: it goes to the channel's mixer, not to the signaling process,
   * and the server keeps the binding through the grace period (in a cluster, a drained process's
   * members keep the new owner's binding while they reconnect). Voice carried inside the lost
   * WebSocket stops.
   */
  private async reconnect(code: number, reason: string): Promise<void> {
    const channelId = this.currentChannel?.id ?? null;
    const seq = ++this.joinSeq;
    if (this.session?.transport !== 'udp') this.endSession(null);
    for (const off of this.detach.splice(0)) off();
    this.safeEmit('reconnecting', code, reason);
    const deadline = performance.now() + Math.max(1000, this.sig.welcome.graceMs);
    let delay = 200;
    let attempt = 0;
    while (!this.closed) {
      try {
        // After a redirect, the owner's URL first, then (if it is gone) the configured one.
        const url = attempt++ % 2 === 1 && this.wsUrl !== this.o.wsUrl ? this.o.wsUrl : this.wsUrl;
        const sig = await this.openSignaling(url);
        if (this.closed) {
          sig.close();
          return;
        }
        this.sig = sig;
        this.wsUrl = url;
        this.listen();
        const w = sig.welcome;
        if (seq === this.joinSeq) {
          // Back in the channel before saying so (unless a join or leave came meanwhile).
          if (w.resumed && w.voice && w.channelId)
            await this.adopt(w.channelId, w.voice).catch((err) => this.safeEmit('problem', err));
          else if (channelId) await this.join(channelId).catch((err) => this.safeEmit('problem', err));
        }
        this.safeEmit('resumed', w.resumed);
        return;
      } catch (err) {
        // A refused token means the server forgot us for good: stop.
        if (err instanceof RequestError || performance.now() + delay > deadline) {
          await this.close();
          this.safeEmit('disconnected', code, reason);
          return;
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /**
   * Our WebSocket voice reached a node that does not run the channel's mixer (a cluster): resume the
   * session on the owner's signaling URL, so voice takes no extra hop. The server ends the old
   * connection (SESSION_REPLACED) once the new `hello` resumes the session; the new welcome carries
   * a fresh binding. On failure we stay where we were (the server redirects again later).
   */
  private async redirect(url: string): Promise<void> {
    if (this.redirecting || url === this.wsUrl) return;
    let target: URL;
    try {
      target = new URL(url);
      if (target.protocol !== 'ws:' && target.protocol !== 'wss:') throw new TypeError(url);
    } catch {
      this.safeEmit('problem', new TypeError(`voice.redirect to a URL that is not ws(s): ${url}`));
      return;
    }
    this.redirecting = true;
    const old = this.sig;
    // A join or leave made meanwhile wins over the resumed binding (adopt() is skipped then); a
    // failed redirect leaves everything in flight as it was.
    const seq = this.joinSeq;
    try {
      const sig = await this.openSignaling(target.toString());
      if (this.closed) {
        sig.close();
        return;
      }
      for (const off of this.detach.splice(0)) off();
      this.sig = sig;
      this.wsUrl = target.toString();
      this.listen();
      old.close();
      const w = sig.welcome;
      if (seq === this.joinSeq && w.resumed && w.voice && w.channelId) await this.adopt(w.channelId, w.voice);
      this.safeEmit('redirected', this.wsUrl);
    } catch (err) {
      this.safeEmit('problem', err);
    } finally {
      this.redirecting = false;
      // The old connection ended while we failed to move: recover as after any drop.
      if (!this.closed && this.sig === old && old.closed) void this.reconnect(4001, 'redirect failed');
    }
  }

  /** A signaling connection to `url` whose `hello` carries our token (and so resumes the session). */
  private openSignaling(url: string): Promise<SignalingClient> {
    return SignalingClient.connect({
      url,
      token: this.token,
      client: this.o.clientName,
      ...(this.o.adminToken !== undefined ? { adminToken: this.o.adminToken } : {}),
      ...(this.o.requestTimeoutMs !== undefined ? { requestTimeoutMs: this.o.requestTimeoutMs } : {}),
      streams: this.o.streams,
      red: this.o.redundancy !== 'off',
    });
  }

  private ping(): void {
    if (this.closed || this.signaling.closed) return;
    const t0 = performance.now();
    this.signaling.request('ping', { ts: t0 }).then(
      () => {
        this.signalingRtt = performance.now() - t0;
      },
      () => {
        // A lost ping shows as a stale signalingRttMs; the close event handles a dead connection.
      },
    );
  }
}
