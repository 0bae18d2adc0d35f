import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { randomInt } from 'node:crypto';
import { dispatch, spawn, start, stop, type Ref } from 'nact';
import {
  ACK_BODY_BYTES,
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoicePacketType,
  ackFor,
  encodeMessage,
  readTimeBody,
  writeAckBody,
  type ChannelId,
  type VoiceBinding,
  type VoiceHeader,
} from '@voice/protocol';
import { Histogram, type OpusFactory } from '@voice/media';
import { TickScheduler, type ScheduledHandle } from './scheduler.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { AppContext } from '../app/context.js';
import type { Session, SessionManager } from '../app/sessions.js';
import type { VoicePlane } from '../app/voice-plane.js';
import { KeyedRateLimiter } from '../ratelimit.js';
import type { StoredChannel } from '../state/types.js';
import { ChannelCore, type ChannelIo } from './channel.js';
import { VoiceCounters } from './counters.js';
import { VoiceEndpoint } from './endpoint.js';

type ChannelMsg =
  | { type: 'tick' }
  | { type: 'add'; ep: VoiceEndpoint }
  | { type: 'remove'; ep: VoiceEndpoint }
  | { type: 'update'; ep: VoiceEndpoint }
  | { type: 'settings'; channel: StoredChannel };

/** A running channel: its nact actor, the core it owns, and the clock that ticks it. */
interface ChannelHandle {
  core: ChannelCore;
  actor: Ref<ChannelMsg>;
  schedule: ScheduledHandle | null;
  slotMs: number;
  /** A tick is waiting in the mailbox: the next one is skipped rather than queued (bounded mailbox). */
  tickQueued: boolean;
  ticksSkipped: number;
  /** When the queued tick was due (performance clock), and how late ticks reach the actor. */
  dueAt: number;
  lastDueAt: number;
  lateness: Histogram;
  members: number;
}

const TICK: ChannelMsg = { type: 'tick' };
/** How often members receive their connection figures. */
const STATS_INTERVAL_MS = 2_000;
const STATS_SLICES = 20;

export interface VoicePlaneOptions {
  ctx: AppContext;
  sessions: SessionManager;
  opus: OpusFactory;
  host: string;
  port: number;
  /** Address given to clients; defaults to `host`. */
  publicHost?: string | undefined;
}

/**
 * The voice path of one node: a UDP socket (ingress and egress), the WebSocket fallback, and one
 * nact actor per active channel that owns the channel's jitter buffers, mixer and encoders.
 *
 * Ownership: the plane owns the actor system and every channel; a channel owns its members.
 * `close()` stops tickers, actors and the socket.
 */
export class ServerVoicePlane implements VoicePlane {
  readonly counters = new VoiceCounters();
  readonly #endpoints = new Map<number, VoiceEndpoint>();
  readonly #bySession = new Map<Session, VoiceEndpoint>();
  readonly #channels = new Map<ChannelId, ChannelHandle>();
  /** One clock per frame size, shared by the channels using it. */
  readonly #schedulers = new Map<number, TickScheduler>();
  readonly #system = start();
  readonly #socket: Socket;
  readonly #header: VoiceHeader = { type: 1, flags: 0, voiceId: 0, sequence: 0, timestamp: 0 };
  readonly #plain = new Uint8Array(MAX_PAYLOAD_BYTES);
  readonly #ackBody = new Uint8Array(ACK_BODY_BYTES);
  readonly #ackPacket = new Uint8Array(MAX_PACKET_BYTES);
  /** Packets from an address that is not the session's registered one cost a decryption: bound them. */
  readonly #unregistered = new KeyedRateLimiter(200, 400, 10_000);
  readonly #statsTimer: NodeJS.Timeout;
  #statsSlice = 0;
  readonly #io: ChannelIo;
  #closed = false;
  port = 0;

  private constructor(private readonly o: VoicePlaneOptions) {
    this.#socket = createSocket({ type: 'udp4', recvBufferSize: 1 << 22, sendBufferSize: 1 << 22 });
    this.#socket.on('message', (msg, rinfo) => this.#onUdp(msg, rinfo));
    this.#socket.on('error', (err) => o.ctx.log.error({ err }, 'voice UDP socket error'));
    this.#io = {
      counters: this.counters,
      send: (ep, packet, length) => this.#send(ep, packet, length),
      speaking: (ep, speaking) => {
        o.sessions
          .setSpeaking(ep.session, speaking)
          .catch((err: unknown) => o.ctx.log.error({ err }, 'speaking event failed'));
      },
      adapted: (channel, complexity, direction) => {
        if (direction === 'down')
          o.ctx.log.warn({ channel, complexity }, 'channel over its CPU budget: encoder complexity lowered');
        else o.ctx.log.info({ channel, complexity }, 'channel encoder complexity raised one step');
      },
    };
    // Stats go out in STATS_SLICES slices (by voice id) so no single pass stalls the event loop.
    this.#statsTimer = setInterval(() => this.#sendStats(), STATS_INTERVAL_MS / STATS_SLICES);
    this.#statsTimer.unref();
  }

  static async start(o: VoicePlaneOptions): Promise<ServerVoicePlane> {
    const plane = new ServerVoicePlane(o);
    await new Promise<void>((resolve, reject) => {
      plane.#socket.once('error', reject);
      plane.#socket.bind(o.port, o.host, () => {
        plane.#socket.off('error', reject);
        resolve();
      });
    });
    plane.port = plane.#socket.address().port;
    return plane;
  }

  // ---- VoicePlane: called by the session layer -------------------------------------------------

  attach(session: Session, channel: StoredChannel): VoiceBinding {
    // Count the new seat before releasing the old one: a rekey in the same channel must not stop
    // (and rebuild) a channel whose only member is the one being rekeyed.
    const handle = this.#channel(channel);
    handle.members++;
    this.detach(session);
    let voiceId: number;
    do voiceId = randomInt(1, 0xffff_ffff);
    while (this.#endpoints.has(voiceId));
    const ep = new VoiceEndpoint(voiceId, session, handle.core);
    this.#endpoints.set(voiceId, ep);
    this.#bySession.set(session, ep);
    dispatch(handle.actor, { type: 'add', ep });
    return {
      voiceId,
      key: ep.key,
      udpHost: this.o.publicHost ?? this.o.host,
      udpPort: this.port,
      sampleRate: 48_000,
      frameMs: handle.core.settings.frameMs,
      bitrate: handle.core.settings.bitrate,
    };
  }

  detach(session: Session): void {
    const ep = this.#bySession.get(session);
    if (!ep) return;
    ep.closed = true;
    this.#bySession.delete(session);
    this.#endpoints.delete(ep.voiceId);
    const handle = this.#channels.get(ep.channel.id);
    if (!handle) return;
    dispatch(handle.actor, { type: 'remove', ep });
    if (--handle.members === 0) this.#stopChannel(ep.channel.id, handle);
  }

  update(session: Session): void {
    const ep = this.#bySession.get(session);
    if (!ep) return;
    const handle = this.#channels.get(ep.channel.id);
    if (handle) dispatch(handle.actor, { type: 'update', ep });
  }

  channelUpdated(channel: StoredChannel): void {
    const handle = this.#channels.get(channel.id);
    if (handle) dispatch(handle.actor, { type: 'settings', channel });
  }

  receiveWs(session: Session, packet: Uint8Array): void {
    this.#ingress(packet, null, 0, session);
  }

  // ---- Channels -----------------------------------------------------------------------------

  #channel(channel: StoredChannel): ChannelHandle {
    const existing = this.#channels.get(channel.id);
    if (existing) return existing;
    const core = new ChannelCore(channel.id, channel.voice, this.o.opus, this.#io, {
      tickBudgetMs: channel.voice.frameMs * this.o.ctx.config.clock.tickBudget,
    });
    const handle: ChannelHandle = {
      core,
      members: 0,
      tickQueued: false,
      ticksSkipped: 0,
      dueAt: 0,
      lastDueAt: 0,
      lateness: new Histogram({ bucketWidth: 0.05, buckets: 2000, window: 3000 }),
      actor: null as unknown as Ref<ChannelMsg>,
      schedule: null,
      slotMs: 0,
    };
    handle.actor = spawn(
      this.#system,
      (state: ChannelCore, msg: ChannelMsg) => {
        switch (msg.type) {
          case 'tick': {
            handle.tickQueued = false;
            const now = performance.now();
            handle.lateness.record(now - handle.dueAt);
            // Frames of time since the last tick that ran (1, or more after a stall or a skip; an
            // earlier phase after alignment is a shorter period, still one frame).
            const frames =
              handle.lastDueAt === 0
                ? 1
                : Math.max(1, Math.round((handle.dueAt - handle.lastDueAt) / state.settings.frameMs));
            handle.lastDueAt = handle.dueAt;
            state.tick(now, frames, Math.max(0, now - handle.dueAt));
            break;
          }
          case 'add':
            if (!msg.ep.closed) state.addMember(msg.ep);
            break;
          case 'remove':
            if (msg.ep.member) state.removeMember(msg.ep.member);
            break;
          case 'update':
            if (msg.ep.member) state.updateMember(msg.ep.member);
            break;
          case 'settings':
            state.updateSettings(msg.channel.voice);
            break;
        }
        return state;
      },
      `channel-${channel.id}`,
      {
        initialState: core,
        // A bug in one tick must not take the channel down: log, count, carry on.
        onCrash: (_msg, err, ctx) => {
          this.o.ctx.log.error({ err, channel: channel.id }, 'channel actor crashed; resuming');
          return ctx.resume;
        },
      },
    );
    const scheduler = this.#scheduler(channel.voice.frameMs);
    handle.slotMs = scheduler.slotMs;
    handle.schedule = scheduler.add({
      due: (dueAt) => {
        if (handle.tickQueued) {
          // The actor has not run the previous tick yet: skip rather than queue (bounded mailbox).
          handle.ticksSkipped++;
          return;
        }
        handle.tickQueued = true;
        handle.dueAt = dueAt;
        dispatch(handle.actor, TICK);
      },
    });
    this.#channels.set(channel.id, handle);
    return handle;
  }

  #scheduler(frameMs: number): TickScheduler {
    let s = this.#schedulers.get(frameMs);
    if (!s) {
      const { slots, wake } = this.o.ctx.config.clock;
      s = new TickScheduler(
        frameMs,
        slots,
        (err) => this.o.ctx.log.error({ err }, 'tick scheduler failed'),
        wake,
      );
      this.#schedulers.set(frameMs, s);
    }
    return s;
  }

  #stopChannel(id: ChannelId, handle: ChannelHandle): void {
    handle.schedule?.remove();
    stop(handle.actor);
    handle.core.close();
    this.#channels.delete(id);
  }

  // ---- Packet path ----------------------------------------------------------------------------

  #onUdp(msg: Buffer, rinfo: RemoteInfo): void {
    this.#ingress(msg, rinfo.address, rinfo.port);
  }

  /** One incoming voice packet, from UDP (address set) or the WebSocket fallback (address null). */
  #ingress(msg: Uint8Array, address: string | null, port: number, wsSession?: Session): void {
    const c = this.counters;
    c.packetsIn++;
    c.bytesIn += msg.byteLength;
    if (msg.byteLength > MAX_PACKET_BYTES) {
      c.drops.oversized++;
      return;
    }
    const h = this.#header;
    // Peek the voice id before paying for a decryption (openInto re-reads the header).
    if (msg.byteLength < 8) {
      c.drops.TOO_SHORT++;
      return;
    }
    const voiceId = ((msg[4]! << 24) | (msg[5]! << 16) | (msg[6]! << 8) | msg[7]!) >>> 0;
    const ep = this.#endpoints.get(voiceId);
    // Over the WebSocket a session may only speak for itself.
    if (!ep || (wsSession !== undefined && ep.session !== wsSession)) {
      c.drops.unknown_session++;
      return;
    }
    const fromRegistered = address === null || (address === ep.udpAddress && port === ep.udpPort);
    if (!fromRegistered && !this.#unregistered.take(address)) {
      c.drops.rate_limited++;
      return;
    }
    const r = ep.cipher.openInto(msg, this.#plain, h);
    if (typeof r !== 'number') {
      c.drops[r]++;
      return;
    }
    const now = performance.now();
    // Only an authenticated packet may move the session's address (NAT rebinding) or transport.
    if (address === null) {
      if (ep.transport !== 'ws') this.#setTransport(ep, 'ws');
    } else if (!fromRegistered || ep.transport !== 'udp') {
      if (ep.udpAddress !== '' && !fromRegistered) c.rebinds++;
      ep.udpAddress = address;
      ep.udpPort = port;
      this.#setTransport(ep, 'udp');
    }
    switch (h.type) {
      case VoicePacketType.AUDIO: {
        const m = ep.member;
        if (!m) {
          c.drops.not_in_channel++;
          return;
        }
        if (!m.heard) {
          c.drops.muted++;
          return;
        }
        // Playout order follows the media timestamp (samples), not the packet sequence, which
        // heartbeats share: as in RTP, the sequence is for loss and replay, the timestamp for time.
        // Unwrap first: 2^32 is not a multiple of a frame, so dividing the raw field breaks at the wrap.
        const frame = ep.timestamps.frameIndex(h.timestamp, ep.channel.frameSamples);
        if (!ep.channel.inbox.push(m, frame, now, h.flags, this.#plain, r)) c.drops.inbox_overflow++;
        // A lone speaker's packet goes out to its listeners now, not at the next tick.
        ep.channel.forwardOnArrival(m, frame, this.#plain, r, now);
        return;
      }
      case VoicePacketType.HELLO:
      case VoicePacketType.HEARTBEAT: {
        const sentAt = readTimeBody(this.#plain, r);
        if (sentAt === null) {
          c.drops.TOO_SHORT++;
          return;
        }
        writeAckBody(this.#ackBody, 0, ackFor(sentAt, ep.cipher.replay));
        h.type = h.type === VoicePacketType.HELLO ? VoicePacketType.HELLO_ACK : VoicePacketType.HEARTBEAT_ACK;
        h.flags = 0;
        h.voiceId = ep.voiceId;
        h.sequence = ep.cipher.nextSequence;
        h.timestamp = Date.now() >>> 0;
        const n = ep.cipher.seal(h, this.#ackBody, this.#ackPacket);
        this.#send(ep, this.#ackPacket, n);
        return;
      }
      default:
        c.drops.unexpected_type++;
    }
  }

  readonly #onSent = (err: Error | null): void => {
    if (err) this.counters.sendErrors++;
  };

  #setTransport(ep: VoiceEndpoint, t: 'udp' | 'ws'): void {
    ep.transport = t;
    this.o.sessions
      .setTransport(ep.session, t)
      .catch((err: unknown) => this.o.ctx.log.error({ err }, 'transport event failed'));
  }

  #send(ep: VoiceEndpoint, packet: Uint8Array, length: number): void {
    if (this.#closed) return;
    const c = this.counters;
    if (ep.transport === 'udp') {
      // dgram reads the buffer only after an async address step (and later still if the kernel queue
      // is full), so a reused buffer could be overwritten before it leaves: copy into a pooled slice.
      const buf = Buffer.allocUnsafe(length);
      for (let i = 0; i < length; i++) buf[i] = packet[i]!;
      this.#socket.send(buf, 0, length, ep.udpPort, ep.udpAddress, this.#onSent);
    } else if (ep.transport === 'ws') {
      const conn = ep.session.conn;
      if (!conn || !conn.sendBytes(encodeMessage({ t: 'voice', p: packet.subarray(0, length) }))) {
        c.sendErrors++;
        return;
      }
    } else return;
    c.packetsOut++;
    c.bytesOut += length;
  }

  // ---- Figures -------------------------------------------------------------------------------

  /**
   * Phase alignment: when every frame of a channel waited at least a few clock slots before its
   * tick (5th percentile of hold time), tick that much earlier, keeping one slot of margin. The
   * server-added delay then approaches the slot size instead of up to a whole frame.
   */
  #align(): void {
    for (const h of this.#channels.values()) {
      const hist = h.core.alignHold;
      if (hist.count >= 50 && h.schedule) {
        const slots = Math.floor(hist.percentile(5) / h.slotMs) - 1;
        if (slots > 0 && h.schedule.advance(slots) > 0) this.counters.realigns++;
      }
      hist.reset();
    }
  }

  #sendStats(): void {
    const slice = this.#statsSlice;
    this.#statsSlice = (slice + 1) % STATS_SLICES;
    if (slice === 0) this.#align();
    for (const ep of this.#endpoints.values()) {
      if (ep.voiceId % STATS_SLICES !== slice) continue;
      const conn = ep.session.conn;
      const m = ep.member;
      if (!conn || !m) continue;
      const w = ep.cipher.replay;
      const dr = w.received - ep.statsReceived;
      const dl = w.lost - ep.statsLost;
      ep.statsReceived = w.received;
      ep.statsLost = w.lost;
      const js = m.jitter.stats();
      conn.send({
        t: 'stats',
        stats: {
          rttMs: null,
          lossUp: dr + dl > 0 ? dl / (dr + dl) : 0,
          jitterMs: js.jitterMs,
          bufferMs: js.depth * ep.channel.settings.frameMs,
          packetsIn: m.packetsIn,
          packetsOut: m.packetsOut,
          concealed: js.concealed,
        },
      });
    }
  }

  /** Per-channel figures for /metrics and benchmarks. */
  channelStats(): {
    id: ChannelId;
    core: ChannelCore;
    ticksSkipped: number;
    lateness: Histogram;
    /** The channel's clock alone (wake-up lateness, before any channel work). */
    clock: { p50: number; p99: number };
  }[] {
    return [...this.#channels.entries()].map(([id, h]) => ({
      id,
      core: h.core,
      clock: this.#schedulers.get(h.core.settings.frameMs)?.clockLateness() ?? { p50: 0, p99: 0 },
      ticksSkipped: h.ticksSkipped,
      lateness: h.lateness,
    }));
  }

  /** Benchmarks: measure the clocks from now on. */
  resetClockLateness(): void {
    for (const s of this.#schedulers.values()) s.resetClockLateness();
  }

  endpointOf(session: Session): VoiceEndpoint | undefined {
    return this.#bySession.get(session);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#statsTimer);
    for (const [id, h] of [...this.#channels]) this.#stopChannel(id, h);
    for (const s of this.#schedulers.values()) s.close();
    this.#endpoints.clear();
    this.#bySession.clear();
    stop(this.#system);
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}

/** Exposes the packet-path counters and per-channel figures on the node's registry, read at scrape time. */
export function registerVoiceMetrics(registry: Registry, plane: ServerVoicePlane): void {
  const c = plane.counters;
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  counter(
    'voice_udp_packets_in_total',
    'Voice packets received (UDP and WebSocket fallback)',
    () => c.packetsIn,
  );
  counter('voice_packets_out_total', 'Voice packets sent', () => c.packetsOut);
  counter('voice_bytes_in_total', 'Voice bytes received', () => c.bytesIn);
  counter('voice_bytes_out_total', 'Voice bytes sent', () => c.bytesOut);
  counter(
    'voice_address_rebinds_total',
    'Authenticated source address changes (NAT rebinding)',
    () => c.rebinds,
  );
  counter(
    'voice_send_errors_total',
    'Voice sends that failed or were dropped by backpressure',
    () => c.sendErrors,
  );
  new Counter({
    name: 'voice_packets_dropped_total',
    help: 'Incoming voice packets dropped, by reason',
    labelNames: ['reason'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, n] of Object.entries(c.drops)) if (n > 0) this.inc({ reason }, n);
    },
  });
  const perChannel = (
    name: string,
    help: string,
    read: (s: ReturnType<ServerVoicePlane['channelStats']>[number]) => number,
  ) =>
    new Gauge({
      name,
      help,
      labelNames: ['channel'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of plane.channelStats()) this.set({ channel: s.id }, read(s));
      },
    });
  perChannel('voice_channel_members', 'Members in the channel actor', (s) => s.core.stats.members);
  perChannel(
    'voice_channel_speakers',
    'Members mixed as speakers in the last tick',
    (s) => s.core.stats.speakers,
  );
  perChannel(
    'voice_channel_packets_in',
    'Packets accepted into jitter buffers',
    (s) => s.core.stats.packetsIn,
  );
  perChannel('voice_channel_packets_out', 'Mixed packets sent', (s) => s.core.stats.packetsOut);
  perChannel('voice_channel_late', 'Packets that arrived after their turn', (s) => s.core.stats.late);
  perChannel('voice_channel_concealed', 'Frames concealed (loss)', (s) => s.core.stats.concealed);
  perChannel(
    'voice_channel_fec_recovered',
    'Concealed frames rebuilt from in-band FEC',
    (s) => s.core.stats.fecRecovered,
  );
  perChannel(
    'voice_channel_inbox_overflows',
    'Packets dropped because the actor inbox was full',
    (s) => s.core.stats.inboxOverflows,
  );
  perChannel(
    'voice_channel_buffer_frames',
    'Deepest member jitter buffer, frames',
    (s) => s.core.stats.bufferFramesMax,
  );
  perChannel(
    'voice_channel_encodes',
    'Opus encodes (one per distinct mix per tick)',
    (s) => s.core.stats.encodes,
  );
  perChannel(
    'voice_channel_ticks_skipped',
    'Ticks skipped because the previous one was still queued',
    (s) => s.ticksSkipped,
  );
  perChannel('voice_channel_tick_lateness_p50_ms', 'Tick due to actor start, p50', (s) =>
    s.lateness.percentile(50),
  );
  perChannel('voice_channel_tick_lateness_p99_ms', 'Tick due to actor start, p99', (s) =>
    s.lateness.percentile(99),
  );
  perChannel('voice_channel_tick_p99_us', 'Tick duration (inbox to last send), p99', (s) =>
    s.core.stats.tickUs.percentile(99),
  );
  perChannel(
    'voice_channel_complexity',
    'Encoder complexity in use (below the setting while over the CPU budget)',
    (s) => s.core.stats.complexity,
  );
  perChannel(
    'voice_channel_cpu_adaptations',
    'Times the channel lowered its encoder complexity for CPU overuse',
    (s) => s.core.stats.cpuAdaptations,
  );
  perChannel('voice_channel_decode_p50_us', 'Opus decode time p50', (s) =>
    s.core.stats.decodeUs.percentile(50),
  );
  perChannel('voice_channel_encode_p50_us', 'Opus encode time p50', (s) =>
    s.core.stats.encodeUs.percentile(50),
  );
  perChannel('voice_channel_encode_p99_us', 'Opus encode time p99', (s) =>
    s.core.stats.encodeUs.percentile(99),
  );
  perChannel('voice_channel_hold_p50_ms', 'Server-added delay p50: packet arrival to mix sent', (s) =>
    s.core.stats.holdMs.percentile(50),
  );
  perChannel('voice_channel_hold_p99_ms', 'Server-added delay p99', (s) =>
    s.core.stats.holdMs.percentile(99),
  );
}
