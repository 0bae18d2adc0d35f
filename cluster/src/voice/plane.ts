import { start, stop } from 'nact';
import type { AeadBackend, ChannelId, VoiceBinding } from '@voice/protocol';
import type { OpusFactory, VoiceUdpAddon } from '@voice/media';
import type { AppContext } from '../app/context.js';
import type { Session, SessionManager } from '../app/sessions.js';
import type { VoicePlane } from '../app/voice-plane.js';
import type { StoredChannel } from '../state/types.js';
import { TimingAdvance, type AdvanceOrder } from './advance.js';
import { alignPhases } from './alignment.js';
import { VoiceAuth, type ForeignBudgets } from './auth.js';
import { ChannelActor } from './channel-actor.js';
import type { ChannelIo } from './channel.js';
import { SERVER_MARGIN_MS } from './member.js';
import { ChannelClocks } from './clocks.js';
import { VoiceCounters } from './counters.js';
import { BatchEgress } from './egress-batch.js';
import { DgramEgress } from './egress-dgram.js';
import type { VoiceEndpoint } from './endpoint.js';
import { DOWNSTREAM_GRACE_MS, Handovers, type Handover } from './handover.js';
import { VoiceIngress } from './ingress.js';
import type { ChannelFigures, VoiceFigures } from './metrics.js';
import { MemberStats } from './stats.js';
import { VoiceTransports } from './transport.js';
import { VoiceSocket } from './udp.js';

export { registerKernelUdpMetrics, registerVoiceMetrics } from './metrics.js';
export { KernelUdpCounters } from './kernel-udp.js';

export interface VoicePlaneOptions {
  ctx: AppContext;
  sessions: SessionManager;
  opus: OpusFactory;
  host: string;
  port: number;
  /** Address given to clients; defaults to `host`. */
  publicHost?: string | undefined;
  /** AES-256-GCM for voice packets: the native EVP addon when built, else node:crypto. */
  aead?: AeadBackend | undefined;
  /**
   * Where faults caught at the voice plane's boundaries go (the UDP handler, its timers): the
   * server's Boundary, which counts them and logs at a bounded rate. Default: logged at most once
   * a second.
   */
  report?: ((where: string, err: unknown) => void) | undefined;
  /** Bounds on authentication work for packets from foreign addresses (defaults suit a node). */
  foreignBudgets?: Partial<ForeignBudgets> | undefined;
  /**
   * Batched UDP send (sendmmsg, media/native/voice_udp.c) when given and the socket's descriptor
   * can be had (Linux); null or absent: one node:dgram send per packet.
   */
  udpAddon?: VoiceUdpAddon | null | undefined;
}

/**
 * The voice path of one node, wired from its parts: the UDP socket (udp.ts), ingress (ingress.ts)
 * and authentication (auth.ts), egress (transport.ts), one nact actor per active channel
 * (channel-actor.ts) ticked by a shared clock per frame size (clocks.ts), phase alignment
 * (alignment.ts) and per-member figures (stats.ts).
 *
 * Ownership: the plane owns the actor system and every channel; a channel owns its members.
 * `close()` stops the figures, channels, clocks and the socket; it is idempotent.
 */
export class ServerVoicePlane implements VoicePlane, VoiceFigures {
  readonly counters = new VoiceCounters();
  readonly #auth: VoiceAuth;
  readonly #channels = new Map<ChannelId, ChannelActor>();
  readonly #clocks: ChannelClocks;
  readonly #system = start();
  readonly #socket: VoiceSocket;
  readonly #transports: VoiceTransports;
  readonly #ingress: VoiceIngress;
  readonly #stats: MemberStats;
  readonly #io: ChannelIo;
  // A timer's callback: nothing it throws may reach the event loop.
  readonly #handovers = new Handovers((session, h) => {
    try {
      this.#handoverDeadline(session, h);
    } catch (err) {
      this.#report('voice_handover', err);
    }
  });
  /** Timing advances to the members' signaling (config `clock.advance`), or null when off. */
  readonly #advance: { by: TimingAdvance; send: (order: AdvanceOrder) => void } | null;
  #closed = false;
  #lastErrorLog = -Infinity;
  port = 0;

  private constructor(private readonly o: VoicePlaneOptions) {
    const log = o.ctx.log;
    this.#auth = new VoiceAuth(
      this.counters,
      o.foreignBudgets,
      (err) => this.#report('voice_address_sweep', err),
      o.aead,
    );
    this.#socket = new VoiceSocket(
      (msg, address, port) => this.#receive(msg, address, port),
      (err) => log.error({ err }, 'voice UDP socket error'),
    );
    this.#transports = new VoiceTransports(o.sessions, this.counters, log);
    this.#ingress = new VoiceIngress(this.#auth, this.#transports, this.counters, (ep) =>
      this.#successorHeard(ep),
    );
    // Each tick's packets leave together once its channels have run (one sendmmsg call).
    const eventLoop = o.ctx.metrics.eventLoop;
    this.#clocks = new ChannelClocks(
      o.ctx.config.clock,
      log,
      () => {
        try {
          this.#transports.flush();
        } catch (err) {
          this.#report('voice_send', err);
        }
      },
      eventLoop ? (ms) => eventLoop.record(ms) : null,
    );
    this.#io = {
      counters: this.counters,
      send: (ep, packet, length) => this.#transports.send(ep, packet, length),
      speaking: (ep, speaking) => {
        o.sessions
          .setSpeaking(ep.session, speaking)
          .catch((err: unknown) => log.error({ err }, 'speaking event failed'));
      },
      adapted: (channel, complexity, direction) => {
        if (direction === 'down')
          log.warn({ channel, complexity }, 'channel over its CPU budget: encoder complexity lowered');
        else log.info({ channel, complexity }, 'channel encoder complexity raised one step');
      },
    };
    this.#advance = o.ctx.config.clock.advance
      ? {
          by: new TimingAdvance(SERVER_MARGIN_MS),
          // A binding being handed over is not told: the client applies an advance to its new one.
          send: ({ member, channelId, seq, shiftUs }) => {
            if (!member.endpoint.retiring)
              o.sessions.sendAdvance(member.endpoint.session, {
                t: 'voice.advance',
                channelId,
                seq,
                shiftUs,
              });
          },
        }
      : null;
    this.#stats = new MemberStats(
      () => this.#auth.endpoints(),
      () => alignPhases(this.#channels.values(), this.counters, this.#advance, performance.now()),
      (err) => this.#report('voice_stats', err),
      (session, stats) => o.sessions.sendStats(session, stats),
      () => this.#auth.endpointCount,
    );
  }

  static async start(o: VoicePlaneOptions): Promise<ServerVoicePlane> {
    const plane = new ServerVoicePlane(o);
    try {
      await plane.#socket.bind(o.host, o.port);
      // The descriptor is known once bound: batched sends leave from the same socket and port.
      const fd = plane.#socket.descriptor;
      plane.#transports.useUdp(
        o.udpAddon && fd !== null
          ? new BatchEgress(o.udpAddon, fd, plane.counters, (err) => plane.#report('voice_send', err))
          : new DgramEgress(plane.#socket, plane.counters),
      );
    } catch (err) {
      await plane.close();
      throw err;
    }
    plane.port = plane.#socket.port;
    return plane;
  }

  // ---- VoicePlane: called by the session layer -------------------------------------------------

  attach(session: Session, channel: StoredChannel): VoiceBinding {
    // Count the new seat before releasing the old one: a rekey in the same channel must not stop
    // (and rebuild) a channel whose only member is the one being rekeyed.
    const ch = this.#channel(channel);
    ch.members++;
    const from = this.#handoverFrom(session, ch);
    this.#detach(session, from);
    const ep = this.#auth.register(session, ch.core);
    ch.add(ep);
    if (from) {
      // Make-before-break (protocol README 8.4): the old binding carries the session's voice both
      // ways until this one is in use.
      ep.predecessor = from;
      from.retiring = true;
      this.#handovers.start(session, from, ep);
    }
    this.#stats.running(true);
    return {
      voiceId: ep.voiceId,
      key: ep.key,
      udpHost: this.o.publicHost ?? this.o.host,
      udpPort: this.port,
      sampleRate: 48_000,
      frameMs: ch.core.settings.frameMs,
      bitrate: ch.core.settings.bitrate,
    };
  }

  detach(session: Session): void {
    this.#detach(session, null);
  }

  release(session: Session): void {
    const ep = this.#auth.bySession(session);
    if (!ep || ep.transport !== 'udp') return this.#detach(session, null);
    this.#detach(session, ep);
    ep.retiring = true;
    this.#handovers.start(session, ep, null);
  }

  /** Handovers under way (a draining node waits for them). */
  get handovers(): number {
    return this.#handovers.size;
  }

  /**
   * Which binding of `session` a new one in `ch` takes over from: the one that carries its voice
   * over UDP (WebSocket voice stops with its connection, which a resume replaces). When the
   * current one never carried a packet, the one it was taking over from still does.
   */
  #handoverFrom(session: Session, ch: ChannelActor): VoiceEndpoint | null {
    const cur = this.#auth.bySession(session);
    if (cur && cur.channel === ch.core && cur.transport === 'udp') return cur;
    const h = this.#handovers.get(session);
    return h && h.from.channel === ch.core && !h.from.closed ? h.from : null; // closed: upstream ended
  }

  /** Voids every binding of `session` but `keep` (which stays live by its voice id). */
  #detach(session: Session, keep: VoiceEndpoint | null): void {
    const h = this.#handovers.get(session);
    if (h && h.from !== keep) {
      this.#handovers.end(session);
      this.#void(h.from);
    }
    const ep = this.#auth.bySession(session);
    if (!ep) return;
    if (ep === keep) this.#auth.unlink(session, ep);
    else this.#void(ep);
  }

  /** Voids a binding: its voice id stops authenticating, it leaves its channel, nothing is sent on it. */
  #void(ep: VoiceEndpoint): void {
    if (ep.voided) return;
    ep.voided = true;
    this.#auth.forget(ep);
    ep.transport = 'none';
    const ch = this.#channels.get(ep.channel.id);
    if (!ch) return;
    ch.remove(ep);
    if (--ch.members === 0) this.#stopChannel(ch);
    if (this.#channels.size === 0) this.#stats.running(false);
  }

  /**
   * The first AUDIO packet under `ep` whose predecessor is still live (the client moved its sender
   * to the new binding): the predecessor's upstream ends (its voice id stops authenticating; its
   * member plays out what it holds, then is no longer a speaker), and it is void once the client
   * has had time to start playing the new binding (DOWNSTREAM_GRACE_MS).
   */
  #successorHeard(ep: VoiceEndpoint): void {
    const from = ep.predecessor!;
    ep.predecessor = null;
    this.#auth.forget(from);
    this.#channels.get(from.channel.id)?.retire(from);
    if (this.#handovers.get(ep.session)?.from === from)
      this.#handovers.shorten(ep.session, from, DOWNSTREAM_GRACE_MS);
    else this.#void(from);
  }

  /** A handover ran out of time: the old binding is void, whether or not the new one was used. */
  #handoverDeadline(session: Session, h: Handover): void {
    this.#void(h.from);
    const to = h.to;
    if (!to || to.predecessor !== h.from) return;
    to.predecessor = null;
    // The new binding never carried a packet: the session has no voice path now.
    if (to.transport === 'none' && !to.closed)
      this.o.sessions
        .setTransport(session, 'none')
        .catch((err: unknown) => this.o.ctx.log.error({ err }, 'transport event failed'));
  }

  update(session: Session): void {
    const ep = this.#auth.bySession(session);
    if (ep) this.#channels.get(ep.channel.id)?.update(ep);
  }

  channelUpdated(channel: StoredChannel): void {
    this.#channels.get(channel.id)?.settings(channel);
  }

  receiveWs(session: Session, packet: Uint8Array): void {
    this.#receive(packet, null, 0, session);
  }

  /** The packet path's boundary: a bug must cost one packet (counted, logged at most once a second), never the process. */
  #receive(msg: Uint8Array, address: string | null, port: number, session?: Session): void {
    try {
      this.#ingress.receive(msg, address, port, session);
    } catch (err) {
      this.counters.drops.internal_error++;
      this.#report('voice_packet', err);
    }
  }

  #report(where: string, err: unknown): void {
    if (this.o.report) {
      this.o.report(where, err);
      return;
    }
    const now = performance.now();
    if (now - this.#lastErrorLog >= 1_000) {
      this.#lastErrorLog = now;
      this.o.ctx.log.error({ err, boundary: where }, 'exception caught in the voice plane');
    }
  }

  // ---- Channels: actor lifecycle ------------------------------------------------------------

  #channel(channel: StoredChannel): ChannelActor {
    const existing = this.#channels.get(channel.id);
    if (existing) return existing;
    const ch = new ChannelActor(channel, {
      system: this.#system,
      opus: this.o.opus,
      io: this.#io,
      log: this.o.ctx.log,
      tickBudget: this.o.ctx.config.clock.tickBudget,
      timeStretch: this.o.ctx.config.clock.timeStretch,
      minBufferFrames: this.o.ctx.config.clock.minBufferFrames,
      mixOnReady: this.o.ctx.config.clock.mixOnReady,
    });
    const { handle, slotMs } = this.#clocks.add(channel.voice.frameMs, ch);
    ch.schedule = handle;
    ch.slotMs = slotMs;
    this.#channels.set(channel.id, ch);
    return ch;
  }

  #stopChannel(ch: ChannelActor): void {
    ch.close();
    this.#channels.delete(ch.id);
  }

  // ---- Figures -------------------------------------------------------------------------------

  /** Per-channel figures for /metrics and benchmarks. */
  channelStats(): ChannelFigures[] {
    return [...this.#channels.values()].map((ch) => ({
      id: ch.id,
      core: ch.core,
      clock: this.#clocks.lateness(ch.core.settings.frameMs),
      ticksSkipped: ch.ticksSkipped,
      lateness: ch.lateness,
    }));
  }

  /** How UDP packets leave: `sendmmsg` (batched, native) or `dgram`. */
  get udpEgress(): 'sendmmsg' | 'dgram' | null {
    return this.#transports.udpEgress;
  }

  tickLatenessP99Ms(): number {
    let worst = 0;
    for (const ch of this.#channels.values()) worst = Math.max(worst, ch.lateness.percentile(99));
    return Math.round(worst * 100) / 100;
  }

  /** Benchmarks: measure the clocks from now on. */
  resetClockLateness(): void {
    this.#clocks.resetLateness();
  }

  /** Source addresses holding a foreign-packet bucket (bounded and swept). */
  get foreignAddresses(): number {
    return this.#auth.foreignAddresses;
  }

  endpointOf(session: Session): VoiceEndpoint | undefined {
    return this.#auth.bySession(session);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stats.close();
    this.#handovers.clear();
    this.#transports.close();
    for (const ch of [...this.#channels.values()]) this.#stopChannel(ch);
    this.#clocks.close();
    this.#auth.clear();
    stop(this.#system);
    await this.#socket.close();
  }
}
