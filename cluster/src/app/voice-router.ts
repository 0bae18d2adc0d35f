import {
  ProtocolError,
  type ChannelId,
  type ConnectionStats,
  type Transport,
  type UserId,
  type VoiceAdvance,
  type VoiceBinding,
} from '@voice/protocol';
import { RequestError } from '../errors.js';
import { LeaseKeeper } from '../routing/lease-keeper.js';
import { SuspectNodes } from '../routing/suspects.js';
import type { LeaseStore, LiveNode, NodeInfo, NodeRegistry, RequestChannel } from '../routing/types.js';
import type { SessionRecord, StoredChannel, StoredUser } from '../state/types.js';
import type { AppContext } from './context.js';
import { Session } from './sessions.js';
import type { VoicePlane } from './voice-plane.js';

/**
 * What the session layer asks of the voice path, wherever the channel's actor runs. Async because
 * the owner of a channel may be another process.
 */
export interface VoiceRouter {
  /** Where and how the session sends voice in `channel` (the owner's UDP address and a fresh key). */
  attach(s: Session, channel: StoredChannel): Promise<VoiceBinding>;
  detach(s: Session): Promise<void>;
  /** Whether `s` (a session of this node) is voiced by the current holder of its channel's lease. */
  onOwner(s: Session): Promise<boolean>;
  /** Mute, deafen or volumes changed. */
  update(s: Session): Promise<void>;
  channelUpdated(channel: StoredChannel): void;
  receiveWs(s: Session, packet: Uint8Array): void;
  /** The transport of a member voiced here changed (a shadow's goes to its signaling node). */
  relayTransport(s: Session, transport: Transport): Promise<void>;
  /** A shadow's connection figures, for its signaling node (batched per node). */
  relayStats(s: Session, stats: ConnectionStats): void;
  /** A shadow's timing advance, for its signaling node (in the same batches as the figures). */
  relayAdvance(s: Session, advance: VoiceAdvance): void;
  close(): Promise<void>;
}

/** Requests between nodes: their names and argument shapes (replies are JSON-like values). */
interface AttachArgs {
  record: SessionRecord;
  user: StoredUser;
  channel: StoredChannel;
}

/** What the router needs of the session layer on this node (requests addressed to its sessions). */
export interface SessionPort {
  setTransport(s: Session, t: Transport): Promise<void>;
  /** The channel of `s` (a session of this node) moved to another owner: rebind and tell the client. */
  voiceMoved(s: Session): Promise<void>;
  /** Applies a request that names a user connected to this node (`member.*` ops). */
  handleMemberRequest(op: string, args: unknown): Promise<unknown>;
  /** Connection figures the owner relayed for sessions of this node. */
  deliverStats(items: readonly StatsItem[]): void;
}

export interface RoutingBackends {
  registry: NodeRegistry;
  leases: LeaseStore;
  requests: RequestChannel;
}

interface Owned {
  keeper: LeaseKeeper;
  /** Endpoints of this channel on the local plane (local sessions and shadows). */
  members: number;
  /** When the channel last had no member (ms), for releasing an unused lease. */
  emptySince: number;
}

const resourceOf = (id: ChannelId): string => `channel:${id}`;

/** What the owner relays to a member's signaling node, batched: its figures or a timing advance. */
export interface StatsItem {
  userId: UserId;
  stats?: ConnectionStats;
  advance?: VoiceAdvance;
}
/** Tick lateness p99 (ms) above which a node counts as overloaded when placing channels. */
const OVERLOADED_TICK_LATE_MS = 2;
/** CPU use (share of one core) above which a node counts as overloaded when placing channels. */
const OVERLOADED_CPU = 0.85;
/** Why a placement passed over the node least-loaded order put first (`voice_placement_fallbacks_total`). */
type FallbackReason = 'suspect' | 'stale' | 'timeout' | 'unreachable' | 'refused' | 'error';
/** Figures held for one signaling node between flushes (a bound: beyond it they are dropped). */
const MAX_STATS_BATCH = 2_000;

/**
 * Places each channel's actor on exactly one node and routes the session layer's voice calls to
 * it. The owner holds the channel's lease (renewed by a LeaseKeeper); a channel nobody owns goes to
 * the least-loaded live node of the registry. A member whose signaling connection is elsewhere is
 * represented on the owner by a shadow Session (no connection) attached to the local plane; joins,
 * leaves and controls reach it through the node-addressed request channel. Redis is used only
 * here, on control events: never per packet or per tick.
 *
 * Alone (no Redis), the same code runs over local backends and this node owns everything.
 */
export class ChannelRouter implements VoiceRouter {
  readonly #owned = new Map<ChannelId, Owned>();
  readonly #taking = new Map<ChannelId, Promise<string | null>>();
  /** Local sessions whose voice is on another node: the owner's id. */
  readonly #placed = new Map<Session, string>();
  /** Sessions (local or shadow) attached to the local plane, and their channel. */
  readonly #attached = new Map<Session, ChannelId>();
  /** Members voiced here whose signaling is on another node. */
  readonly #shadows = new Map<UserId, Session>();
  readonly #timer: NodeJS.Timeout;
  /** Runs only while some session is placed on another node: a node alone never wakes for it. */
  #watch: NodeJS.Timeout | null = null;
  #watching = false;
  readonly #unhandle: () => void;
  readonly #me: string;
  #draining = false;
  #closed: Promise<void> | null = null;
  #periods = 0;
  #cpu = process.cpuUsage();
  #cpuAt = performance.now();
  #load = 0;
  /** Voice packets over WebSocket for a channel owned elsewhere (redirected, not relayed). */
  wsDropped = 0;
  /** `voice.redirect` messages sent (WebSocket voice for a channel owned elsewhere). */
  wsRedirects = 0;
  /** When each session was last redirected (at most one redirect per second per session). */
  readonly #redirectedAt = new WeakMap<Session, number>();
  /** Shadows' figures waiting to go to their signaling nodes (flushed once per stats slice). */
  readonly #statsOut = new Map<string, StatsItem[]>();
  #statsFlush: NodeJS.Immediate | null = null;
  /** Owners' signaling URLs from the registry, briefly cached (bounded by the node count). */
  readonly #urls = new Map<string, { url: string; at: number }>();
  /** Owner nodes found not listening: the watch period that last found each so. */
  readonly #missedIn = new Map<string, number>();
  /** Watch periods run so far. */
  #round = 0;
  /** Shadow sweeps run so far. */
  #sweeps = 0;
  /** Shadows whose signaling node did not answer: the sweep that last found it so. */
  readonly #unansweredIn = new WeakMap<Session, number>();
  /**
   * Nodes that failed to take a channel lately: placement passes them over for two announce
   * periods, after which a node that stays dead or hung has a stale registry entry instead.
   */
  readonly #suspects: SuspectNodes;

  constructor(
    private readonly ctx: AppContext,
    private readonly plane: VoicePlane,
    private readonly sessions: SessionPort,
    private readonly routing: RoutingBackends,
    private readonly info: () => Omit<NodeInfo, 'load' | 'draining' | 'updatedAt' | 'wsUrl'>,
  ) {
    this.#me = routing.requests.nodeId;
    this.#suspects = new SuspectNodes({ holdMs: 2 * ctx.config.cluster.announceMs, now: ctx.now });
    this.#unhandle = routing.requests.handle((op, args, from) => this.#handle(op, args, from));
    this.#timer = setInterval(() => void this.#periodic(), ctx.config.cluster.announceMs);
    this.#timer.unref();
  }

  /** Members follow their channel's lease: a quarter of its TTL bounds how late a takeover is seen. */
  #watchPlaced(): void {
    if (this.#placed.size > 0 && this.#watch === null && !this.#closed) {
      this.#watch = setInterval(
        () => void this.#followOwners(),
        Math.max(100, Math.floor(this.ctx.config.cluster.leaseTtlMs / 4)),
      );
      this.#watch.unref();
    } else if (this.#placed.size === 0 && this.#watch !== null) {
      clearInterval(this.#watch);
      this.#watch = null;
    }
  }

  /**
   * For each channel whose voice this node's sessions send elsewhere: if its lease is gone (the
   * owner died) or held by another node (taken over), rebind those sessions to the owner now (the
   * least-loaded live node takes a channel nobody holds). One GET per such channel per period.
   */
  async #followOwners(): Promise<void> {
    if (this.#watching || this.#closed || this.#placed.size === 0) return;
    this.#watching = true;
    this.#round++;
    try {
      const byChannel = new Map<ChannelId, { owner: string; sessions: Session[] }>();
      for (const [s, owner] of this.#placed) {
        if (!s.channelId) continue;
        const e = byChannel.get(s.channelId);
        if (e) e.sessions.push(s);
        else byChannel.set(s.channelId, { owner, sessions: [s] });
      }
      // Whether each owner listens for requests: one check per owner node per period.
      const alive = new Map<string, Promise<boolean>>();
      for (const [id, e] of byChannel) {
        const holder = await this.routing.leases.holder(resourceOf(id));
        if (holder?.nodeId === e.owner) {
          let up = alive.get(e.owner);
          if (!up) alive.set(e.owner, (up = this.#ownerUp(e.owner)));
          if (await up) continue;
          // Dead (no subscription, twice in a row): its lease would live on for up to its TTL.
          // Break that exact grant (compare-and-delete on node and token), so the channel is
          // placed anew now; an owner that was only cut off learns it was superseded at its next
          // renewal, as after an expiry.
          const broken = await this.routing.leases.release(resourceOf(id), holder);
          this.ctx.log.warn(
            { channel: id, owner: e.owner, fence: holder.token, broken },
            'channel owner unreachable: breaking its lease',
          );
        }
        // Nobody holds it (Redis came back after an outage longer than the lease): the owner, if
        // alive, takes it again and nobody moves. A dead owner fails at once, a hung one after the
        // take timeout (then it is suspect, and the members' placement passes it over).
        if (!holder) {
          const again = await this.#askToTake(e.owner, id);
          if ('owner' in again && again.owner === e.owner) continue;
        }
        // (A lease broken above has no holder now: its dead owner is not the new one.)
        const now = holder && holder.nodeId !== e.owner ? holder.nodeId : null;
        this.ctx.log.warn({ channel: id, was: e.owner, now }, 'channel owner changed: moving its members');
        // All at once: one after the other, the last of a channel's many members here would wait
        // for every other one's rebind (moves of one session are serialized by the session layer).
        await Promise.all(e.sessions.map((s) => this.#move(s)));
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'checking channel owners failed; retrying next period');
    } finally {
      this.#watching = false;
    }
  }

  /**
   * Whether `owner` is up, as a failure detector: down only when found not listening in two
   * consecutive watch periods, so a subscription that is only reconnecting (a Redis restart) does
   * not count. A node is asked about at most once a period, so it is down when the period before
   * this one found it not listening too. Misses are kept per node until it is up again (bounded by
   * the node count; cleared past 256 entries).
   */
  async #ownerUp(owner: string): Promise<boolean> {
    const up = await this.routing.requests.reachable(owner);
    if (up) {
      this.#missedIn.delete(owner);
      return true;
    }
    const before = this.#missedIn.get(owner);
    if (this.#missedIn.size >= 256) this.#missedIn.clear();
    this.#missedIn.set(owner, this.#round);
    return before !== this.#round - 1;
  }

  async #move(s: Session): Promise<void> {
    try {
      if (s.remoteNode === null) await this.sessions.voiceMoved(s);
      else await this.routing.requests.request(s.remoteNode, 'member.moved', { userId: s.userId });
    } catch (err) {
      this.ctx.log.warn({ err, user: s.userId }, 'moving a member to the new owner failed');
    }
  }

  #wsUrl = '';
  /** The signaling URL other nodes (and redirected clients) are given; known once listening. */
  setWsUrl(url: string): void {
    this.#wsUrl = url;
  }

  /** Announces this node now (start-up) so that it can be chosen before the first period. */
  async announce(): Promise<void> {
    let members = 0;
    for (const o of this.#owned.values()) members += o.members;
    await this.routing.registry.announce(
      {
        ...this.info(),
        wsUrl: this.#wsUrl,
        load: {
          channels: this.#owned.size,
          members,
          tickLateMs: this.plane.tickLatenessP99Ms(),
          cpu: this.#cpuLoad(),
        },
        draining: this.#draining,
        updatedAt: this.ctx.now(),
      },
      this.ctx.config.cluster.registryTtlMs,
    );
  }

  get ownedChannels(): ChannelId[] {
    return [...this.#owned.keys()];
  }
  /** The fencing token of an owned channel's lease (tests, diagnostics). */
  fenceOf(id: ChannelId): number | null {
    const o = this.#owned.get(id);
    return o?.keeper.held ? o.keeper.holder.token : null;
  }

  /** Process CPU use since the last announcement, 0..1 per core. */
  #cpuLoad(): number {
    const now = performance.now();
    const elapsedMs = now - this.#cpuAt;
    if (elapsedMs >= 100) {
      const used = process.cpuUsage(this.#cpu);
      this.#load = Math.round(((used.user + used.system) / 1000 / elapsedMs) * 1000) / 1000;
      this.#cpu = process.cpuUsage();
      this.#cpuAt = now;
    }
    return this.#load;
  }

  /**
   * Shadows whose session is gone (its signaling node died and the client never came back) leave
   * the mix, their seat is freed, and everyone is told they left (timeout).
   */
  async #sweepShadows(): Promise<void> {
    const sweep = ++this.#sweeps;
    for (const [userId, shadow] of [...this.#shadows]) {
      const r = await this.ctx.directory.getSession(userId);
      // A live record (wherever it is now: a resume elsewhere re-attaches the shadow) keeps it.
      if (r) continue;
      // No record is only a hint: after Redis restarted without it, the signaling node writes it
      // again on its next refresh. The signaling node itself is the authority on its session.
      if (await this.#stillSignaled(shadow, sweep)) continue;
      if (this.#shadows.get(userId) !== shadow) continue;
      this.#shadows.delete(userId);
      const channelId = shadow.channelId;
      this.#detachHere(shadow);
      if (channelId) {
        await this.ctx.directory.leaveChannel(channelId, userId);
        await this.ctx.bus.publish({ type: 'member.left', channelId, userId, reason: 'timeout' });
      }
    }
  }

  /**
   * Whether the shadow's signaling node still holds its session in the same channel. A node that
   * does not answer (not listening, no reply in time) counts as gone only at the second sweep in a
   * row: after a Redis restart the records are missing while its request subscription may still be
   * reconnecting, and one sweep then would end a live member's voice (as the lease watch allows
   * one missed period). A dead node's shadows go one sweep later than an answer would take them.
   */
  async #stillSignaled(shadow: Session, sweep: number): Promise<boolean> {
    if (shadow.remoteNode === null) return false;
    try {
      const present = await this.routing.requests.request(shadow.remoteNode, 'member.present', {
        userId: shadow.userId,
      });
      this.#unansweredIn.delete(shadow);
      return present === shadow.channelId;
    } catch (err) {
      // It answered: no such session there (NOT_FOUND).
      if (err instanceof RequestError && err.code === 'REMOTE') return false;
      const before = this.#unansweredIn.get(shadow);
      this.#unansweredIn.set(shadow, sweep);
      return before !== sweep - 1;
    }
  }

  async #periodic(): Promise<void> {
    if (this.#closed) return;
    try {
      // Every session TTL: drop the shadows of sessions that expired.
      const sweepEvery = Math.max(
        1,
        Math.round(this.ctx.config.sessionTtlMs / this.ctx.config.cluster.announceMs),
      );
      if (++this.#periods % sweepEvery === 0) await this.#sweepShadows();
      await this.announce();
      // A lease taken for a join that never came (the requester failed) is given back.
      const now = this.ctx.now();
      for (const [id, o] of this.#owned)
        if (o.members === 0 && now - o.emptySince > this.ctx.config.cluster.leaseTtlMs) this.#release(id, o);
    } catch (err) {
      this.ctx.log.warn({ err }, 'announcing this node failed; retrying next period');
    }
  }

  #release(id: ChannelId, o: Owned): void {
    this.#owned.delete(id);
    void o.keeper.release();
  }

  // ---- Ownership ------------------------------------------------------------------------------

  /** The node owning `id`, placing the channel on the least-loaded live node if nobody does. */
  async #ownerOf(id: ChannelId): Promise<string> {
    if (this.#owned.get(id)?.keeper.held) return this.#me;
    const holder = await this.routing.leases.holder(resourceOf(id));
    if (holder) return holder.nodeId;
    const target = await this.#leastLoaded();
    if (target !== this.#me) {
      const r = await this.#askToTake(target, id);
      if ('owner' in r) return r.owner;
      this.ctx.metrics.placementFallbacks.inc({ reason: r.reason });
      this.ctx.log.warn(
        { err: r.err, target, reason: r.reason },
        'placing a channel on the least-loaded node failed; taking it here',
      );
    }
    const owner = await this.#take(id);
    return owner ?? (await this.routing.leases.holder(resourceOf(id)))?.nodeId ?? this.#me;
  }

  /**
   * Asks `target` to take channel `id`, waiting at most `cluster.takeTimeoutMs`: short of the
   * request timeout, since the asker can always take the channel itself instead (the lease
   * decides), so a dead or hung node costs one placement at most this much. A node that does not
   * answer becomes suspect, so the next placements do not ask it again.
   */
  async #askToTake(
    target: string,
    id: ChannelId,
  ): Promise<{ owner: string } | { reason: FallbackReason; err?: unknown }> {
    try {
      const owner = await this.routing.requests.request(
        target,
        'channel.take',
        { channelId: id },
        this.ctx.config.cluster.takeTimeoutMs,
      );
      this.#suspects.clear(target);
      return typeof owner === 'string' ? { owner } : { reason: 'refused' }; // refused: draining
    } catch (err) {
      const code = err instanceof RequestError ? err.code : null;
      const reason = code === 'TIMEOUT' ? 'timeout' : code === 'UNREACHABLE' ? 'unreachable' : 'error';
      if (reason !== 'error') this.#suspects.mark(target);
      return { reason, err };
    }
  }

  /**
   * The least-loaded live node that is worth asking: a node this one found not answering lately
   * (suspect), or whose registry entry missed two refreshes (stale: dead or hung, its entry not yet
   * expired), is passed over, each one counted as a fallback. This node itself is never
   * passed over (it knows it is alive); with no other candidate it takes the channel.
   */
  async #leastLoaded(): Promise<string> {
    // A draining node hands its channels to the least loaded of the others (not any other).
    const live = (await this.routing.registry.live()).filter(
      (n) => !n.draining && !(this.#draining && n.nodeId === this.#me),
    );
    // A node whose ticks run late (or whose CPU is nearly full) takes new channels only if all do.
    const busy = (n: NodeInfo): number =>
      n.load.tickLateMs > OVERLOADED_TICK_LATE_MS || n.load.cpu > OVERLOADED_CPU ? 1 : 0;
    live.sort(
      (a, b) =>
        busy(a) - busy(b) ||
        a.load.members - b.load.members ||
        a.load.channels - b.load.channels ||
        a.nodeId.localeCompare(b.nodeId),
    );
    // Every node of a cluster runs with the same timings (one configuration, as the launcher and
    // the deploy files give them), so this node's announce period is everyone's.
    const staleMs = 2 * this.ctx.config.cluster.announceMs;
    for (const n of live) {
      const skip = this.#passOver(n, staleMs);
      if (skip === null) return n.nodeId;
      this.ctx.metrics.placementFallbacks.inc({ reason: skip });
    }
    return this.#me;
  }

  /** Why placement passes `n` over, or null to ask it (this node, alive, is never passed over). */
  #passOver(n: LiveNode, staleMs: number): FallbackReason | null {
    if (n.nodeId === this.#me) return null;
    if (this.#suspects.has(n.nodeId)) return 'suspect';
    return n.ageMs > staleMs ? 'stale' : null;
  }

  /** Takes the channel's lease here; resolves to this node's id, or null when another node won. */
  #take(id: ChannelId): Promise<string | null> {
    const existing = this.#owned.get(id);
    if (existing?.keeper.held) return Promise.resolve(this.#me);
    let p = this.#taking.get(id);
    if (!p) {
      p = (async () => {
        const keeper = await LeaseKeeper.acquire(this.routing.leases, resourceOf(id), this.#me, {
          ttlMs: this.ctx.config.cluster.leaseTtlMs,
          onLost: (h) => this.#lost(id, h.token),
          onRenewError: (err) =>
            this.ctx.log.warn({ err, channel: id }, 'lease renewal failed; still mixing'),
        });
        if (!keeper) return null;
        this.#owned.set(id, { keeper, members: 0, emptySince: this.ctx.now() });
        this.ctx.log.info({ channel: id, fence: keeper.holder.token }, 'took channel');
        return this.#me;
      })().finally(() => this.#taking.delete(id));
      this.#taking.set(id, p);
    }
    return p;
  }

  /** Another node holds the lease now: stop mixing this channel at once. */
  #lost(id: ChannelId, token: number): void {
    this.ctx.log.warn({ channel: id, fence: token }, 'lost the lease of a channel: it stops mixing here');
    this.#owned.delete(id);
    const members: Session[] = [];
    for (const [s, ch] of [...this.#attached]) {
      if (ch !== id) continue;
      this.plane.detach(s);
      this.#attached.delete(s);
      if (s.remoteNode !== null) this.#shadows.delete(s.userId);
      members.push(s);
    }
    // Every member follows the new owner (its signaling node rebinds it and tells the client).
    for (const s of members) void this.#move(s);
  }

  // ---- VoiceRouter ----------------------------------------------------------------------------

  async attach(s: Session, channel: StoredChannel): Promise<VoiceBinding> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const owner = await this.#ownerOf(channel.id);
      if (owner === this.#me) {
        const binding = this.#attachHere(s, channel);
        if (binding) {
          // Moved here: the old owner keeps the old binding live for the handover.
          await this.#leaveRemote(s, true);
          return binding;
        }
        continue;
      }
      try {
        const args: AttachArgs = { record: s.record(this.#me), user: s.user, channel };
        const binding = (await this.routing.requests.request(owner, 'voice.attach', args)) as VoiceBinding;
        // Moved (to another owner): the old one keeps the old binding live for the handover.
        if (this.#placed.get(s) !== owner) await this.#leaveRemote(s, true);
        this.#detachHere(s, true);
        this.#placed.set(s, owner);
        this.#watchPlaced();
        return { ...binding, key: new Uint8Array(binding.key) };
      } catch (err) {
        // The owner died or just lost its lease: ask again (the lease tells who owns it now).
        const retry =
          (err instanceof RequestError && err.code !== 'REMOTE') ||
          (err instanceof ProtocolError && err.code === 'UNAVAILABLE');
        if (!retry) throw err;
        this.ctx.log.warn({ err, owner, channel: channel.id }, 'the channel owner did not take the join');
      }
    }
    throw new ProtocolError('UNAVAILABLE', 'the channel could not be placed on a live node; try again');
  }

  #attachHere(s: Session, channel: StoredChannel): VoiceBinding | null {
    const o = this.#owned.get(channel.id);
    if (!o?.keeper.held) return null;
    const before = this.#attached.get(s);
    if (before !== channel.id) {
      if (before !== undefined) this.#countLeave(before);
      o.members++;
      this.#attached.set(s, channel.id);
    }
    return this.plane.attach(s, channel);
  }

  /** `handover`: the session moved to another node; its binding here stays live for a while. */
  #detachHere(s: Session, handover = false): void {
    const ch = this.#attached.get(s);
    if (ch === undefined) return;
    this.#attached.delete(s);
    if (handover) this.plane.release(s);
    else this.plane.detach(s);
    this.#countLeave(ch);
  }

  #countLeave(id: ChannelId): void {
    const o = this.#owned.get(id);
    if (!o) return;
    if (--o.members === 0) {
      o.emptySince = this.ctx.now();
      // Nobody left: give the channel back, so it can be placed anew when it becomes active again.
      this.#release(id, o);
    }
  }

  async #leaveRemote(s: Session, handover = false): Promise<void> {
    const owner = this.#placed.get(s);
    if (owner === undefined) return;
    this.#placed.delete(s);
    this.#watchPlaced();
    const args = { userId: s.userId, ...(handover ? { handover } : {}) };
    await this.routing.requests.request(owner, 'voice.detach', args).catch((err: unknown) => {
      // Its lease (or the shadow's session check) cleans up after a dead owner.
      this.ctx.log.warn({ err, owner }, 'detaching from a remote owner failed');
    });
  }

  async detach(s: Session): Promise<void> {
    this.#detachHere(s);
    await this.#leaveRemote(s);
  }

  async onOwner(s: Session): Promise<boolean> {
    const id = s.channelId;
    if (id === null) return false;
    // Unknown (Redis unreachable) counts as not: the move goes ahead, as it would have.
    const holder = await this.routing.leases.holder(resourceOf(id)).catch(() => null);
    if (!holder) return false;
    return holder.nodeId === this.#me ? this.#attached.get(s) === id : this.#placed.get(s) === holder.nodeId;
  }

  async update(s: Session): Promise<void> {
    const owner = this.#placed.get(s);
    if (owner === undefined) {
      if (this.#attached.has(s)) this.plane.update(s);
      return;
    }
    await this.routing.requests.request(owner, 'voice.update', { record: s.record(this.#me) });
  }

  channelUpdated(channel: StoredChannel): void {
    this.plane.channelUpdated(channel);
  }

  receiveWs(s: Session, packet: Uint8Array): void {
    if (this.#attached.has(s)) return this.plane.receiveWs(s, packet);
    this.wsDropped++;
    const owner = this.#placed.get(s);
    if (owner === undefined) return;
    // At most one redirect a second per session, checked here: no promise per dropped packet.
    const now = this.ctx.now();
    if (now - (this.#redirectedAt.get(s) ?? -Infinity) < 1000) return;
    this.#redirectedAt.set(s, now);
    void this.#redirect(s, owner);
  }

  /**
   * WebSocket voice for a channel owned by another node is not relayed (that would add a hop and
   * put Redis or a node-to-node link on the packet path): the client is told the owner's signaling
   * URL and resumes its session there, so its voice goes straight to the mixer.
   */
  async #redirect(s: Session, owner: string): Promise<void> {
    try {
      const url = await this.#urlOf(owner);
      const channelId = s.channelId;
      if (url === null || channelId === null || this.#placed.get(s) !== owner || !s.conn) return;
      s.conn.send({ t: 'voice.redirect', channelId, url });
      this.wsRedirects++;
      this.ctx.metrics.wsVoiceRedirects.inc();
    } catch (err) {
      this.ctx.log.warn({ err, owner }, 'redirecting WebSocket voice to its owner failed');
    }
  }

  async #urlOf(nodeId: string): Promise<string | null> {
    const now = this.ctx.now();
    const hit = this.#urls.get(nodeId);
    if (hit && now - hit.at < this.ctx.config.cluster.announceMs) return hit.url;
    const node = (await this.routing.registry.live()).find((n) => n.nodeId === nodeId);
    if (!node?.wsUrl) return null;
    if (this.#urls.size >= 256) this.#urls.clear();
    this.#urls.set(nodeId, { url: node.wsUrl, at: now });
    return node.wsUrl;
  }

  relayStats(s: Session, stats: ConnectionStats): void {
    this.#relay(s, { userId: s.userId, stats });
  }

  relayAdvance(s: Session, advance: VoiceAdvance): void {
    this.#relay(s, { userId: s.userId, advance });
  }

  #relay(s: Session, item: StatsItem): void {
    const node = s.remoteNode;
    if (node === null || this.#closed) return;
    let batch = this.#statsOut.get(node);
    if (!batch) this.#statsOut.set(node, (batch = []));
    if (batch.length >= MAX_STATS_BATCH) {
      this.ctx.metrics.relayedStatsDropped.inc();
      return;
    }
    batch.push(item);
    // One message per signaling node per stats slice, whatever the number of members.
    this.#statsFlush ??= setImmediate(() => this.#flushStats());
  }

  #flushStats(): void {
    this.#statsFlush = null;
    for (const [node, items] of this.#statsOut) {
      this.#statsOut.delete(node);
      this.routing.requests.request(node, 'member.stats', { items }).catch((err: unknown) => {
        // Figures are refreshed every 2 s: a lost batch is only logged.
        this.ctx.log.debug({ err, node }, 'relaying connection figures failed');
      });
    }
  }

  // ---- Requests from other nodes --------------------------------------------------------------

  async #handle(op: string, args: unknown, from: string): Promise<unknown> {
    switch (op) {
      case 'channel.take':
        return this.#draining ? null : await this.#take((args as { channelId: ChannelId }).channelId);
      case 'voice.attach': {
        const a = args as AttachArgs;
        let shadow = this.#shadows.get(a.record.userId);
        if (!shadow) {
          shadow = new Session('', a.user);
          this.#shadows.set(a.record.userId, shadow);
        }
        shadow.user = a.user;
        shadow.remoteNode = from;
        shadow.restore(a.record);
        const binding = this.#attachHere(shadow, a.channel);
        this.ctx.log.debug({ step: 'voice.attach', user: a.record.userId }, 'drain trace');
        if (!binding) {
          this.#shadows.delete(a.record.userId);
          throw new ProtocolError('UNAVAILABLE', `node ${this.#me} does not own ${a.channel.id}`);
        }
        return binding;
      }
      case 'voice.detach': {
        const { userId, handover } = args as { userId: UserId; handover?: unknown };
        const shadow = this.#shadows.get(userId);
        if (shadow) {
          this.#shadows.delete(userId);
          this.#detachHere(shadow, handover === true);
          this.ctx.log.debug({ step: 'voice.detach', user: userId }, 'drain trace');
        }
        return null;
      }
      case 'voice.update': {
        const r = (args as { record: SessionRecord }).record;
        const shadow = this.#shadows.get(r.userId);
        if (!shadow || !this.#attached.has(shadow)) throw new ProtocolError('NOT_IN_CHANNEL');
        shadow.restore({ ...r, channelId: shadow.channelId });
        this.plane.update(shadow);
        return null;
      }
      case 'member.stats': {
        const items = (args as { items?: unknown }).items;
        if (Array.isArray(items)) this.sessions.deliverStats(items as StatsItem[]);
        return null;
      }
      default:
        return this.sessions.handleMemberRequest(op, args);
    }
  }

  /** A shadow's transport changed: its signaling node holds the member's state and tells everyone. */
  relayTransport(s: Session, transport: Transport): Promise<void> {
    if (s.remoteNode === null) return this.sessions.setTransport(s, transport);
    return this.routing.requests
      .request(s.remoteNode, 'member.transport', { userId: s.userId, transport })
      .then(() => undefined);
  }

  /**
   * Live drain (SIGTERM): stops taking channels (the registry shows this node as draining), hands
   * each owned channel to the least-loaded other live node, and moves its members there. The local
   * mix keeps running for each member until it has switched, so the gap is the switch itself.
   * Resolves when every member has left this node's plane, or after `timeoutMs`.
   */
  async drain(timeoutMs = 5_000): Promise<void> {
    this.#draining = true;
    this.ctx.log.debug({ step: 'drain.start' }, 'drain trace');
    await this.announce().catch(() => {});
    const deadline = this.ctx.now() + timeoutMs;
    const moving: Session[] = [];
    for (const [id, o] of [...this.#owned]) {
      const target = await this.#leastLoaded().catch(() => this.#me);
      if (target === this.#me) {
        this.ctx.log.warn({ channel: id }, 'draining: no other live node takes this channel');
        continue;
      }
      this.#owned.delete(id);
      await o.keeper.release();
      this.ctx.log.debug({ step: 'drain.released', channel: id }, 'drain trace');
      // Failed: the members' nodes place the channel anew when they move them.
      const r = await this.#askToTake(target, id);
      if (!('owner' in r)) {
        this.ctx.metrics.placementFallbacks.inc({ reason: r.reason });
        this.ctx.log.warn(
          { err: r.err, target, reason: r.reason },
          'draining: handing a channel over failed',
        );
      }
      this.ctx.log.debug({ step: 'drain.taken', channel: id, target }, 'drain trace');
      const members = [...this.#attached].filter(([, ch]) => ch === id).map(([s]) => s);
      moving.push(...members);
      await Promise.all(
        members.map((s) =>
          this.#move(s).then(() =>
            this.ctx.log.debug({ step: 'drain.moved', user: s.userId }, 'drain trace'),
          ),
        ),
      );
      this.ctx.log.info(
        { channel: id, to: target, members: members.length },
        'draining: channel handed over',
      );
    }
    // The members' old bindings stay live here until their clients use the new ones.
    while (
      (moving.some((s) => this.#attached.has(s)) || this.plane.handovers > 0) &&
      this.ctx.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 50));
  }
  get draining(): boolean {
    return this.#draining;
  }

  /** Idempotent: stops announcing, withdraws this node, gives every lease back. */
  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      clearInterval(this.#timer);
      if (this.#watch) clearInterval(this.#watch);
      this.#watch = null;
      if (this.#statsFlush) clearImmediate(this.#statsFlush);
      this.#statsOut.clear();
      this.#unhandle();
      for (const [id, o] of [...this.#owned]) {
        this.#owned.delete(id);
        await o.keeper.release();
      }
      await this.routing.registry.withdraw(this.#me).catch(() => {});
    })());
  }
}
