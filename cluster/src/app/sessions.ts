import {
  encodeMessage,
  ProtocolError,
  MAX_STREAMS,
  PROTOCOL_VERSION,
  RateLimitedError,
  type ChannelId,
  type ConnectionStats,
  type LeaveReason,
  type Member,
  type ResultMap,
  type ServerMessage,
  type Transport,
  type UserId,
  type VoiceAdvance,
  type VoiceBinding,
  type Welcome,
} from '@voice/protocol';
import type { BusEvent, SessionRecord, StoredChannel, StoredUser } from '../state/types.js';
import { hashToken } from '../state/passwords.js';
import { BindingChain } from './binding-chain.js';
import type { ChannelService } from './channels.js';
import type { AppContext, Connection, Principal } from './context.js';
import type { UserService } from './users.js';
import type { StatsItem, VoiceRouter } from './voice-router.js';

/**
 * Binding changes of one session waiting or running, past which a client's (or a node's) request
 * for one more is refused: a client has no use for more than one or two at once, and a move
 * refused is asked again by the next lease-watch period.
 */
const MAX_BINDING_CHANGES = 8;
/** When a refused binding change may be asked again. */
const BINDING_RETRY_MS = 1_000;

/** One logged-in user on this node: outlives its connection by the grace period. */
export class Session {
  conn: Connection | null = null;
  everConnected = false;
  channelId: ChannelId | null = null;
  voice: VoiceBinding | null = null;
  selfMute = false;
  selfDeaf = false;
  serverMute = false;
  speaking = false;
  transport: Transport = 'none';
  admin = false;
  /**
   * Speakers its connection may receive as separate STREAM packets (Welcome.streams, README 8.8);
   * 1: mixes only. Set by each hello; travels with the record to the channel's owner.
   */
  streams = 1;
  /**
   * RED granted (hello `red`, Welcome.red, README 9.1): the channel may send this connection RED
   * packets. Set by each hello; travels with the record.
   */
  red = false;
  /**
   * Set on a shadow: a member voiced by this node (the channel's owner) whose signaling connection
   * is on that node. A shadow has no connection and is not one of this node's sessions.
   */
  remoteNode: string | null = null;
  graceTimer: NodeJS.Timeout | null = null;
  /** Listener-side volume per speaker, percent; absent means 100. */
  readonly volumes = new Map<UserId, number>();
  closed = false;
  /** Every change of this session's voice binding runs in this chain, one at a time. */
  readonly bindings = new BindingChain(MAX_BINDING_CHANGES);

  constructor(
    readonly tokenHash: string,
    public user: StoredUser,
  ) {}

  get userId(): UserId {
    return this.user.id;
  }
  get principal(): Principal {
    return { userId: this.user.id, admin: this.admin };
  }
  /** What must outlive this process: written to the SessionDirectory on every change. */
  record(nodeId: string): SessionRecord {
    return {
      userId: this.user.id,
      nodeId,
      nickname: this.user.nickname,
      channelId: this.channelId,
      selfMute: this.selfMute,
      selfDeaf: this.selfDeaf,
      serverMute: this.serverMute,
      volumes: Object.fromEntries(this.volumes),
      streams: this.streams,
      red: this.red,
      member: this.member(),
    };
  }
  /** Takes the seat, controls and volumes a record kept (a resume on another node, a takeover). */
  restore(r: SessionRecord): void {
    this.channelId = r.channelId;
    this.selfMute = r.selfMute;
    this.selfDeaf = r.selfDeaf;
    this.serverMute = r.serverMute;
    this.volumes.clear();
    for (const [id, v] of Object.entries(r.volumes)) this.volumes.set(id as UserId, v);
    // From another node or the directory: anything but a grant the protocol allows is mixes only.
    const k = r.streams;
    this.streams = typeof k === 'number' && Number.isInteger(k) && k >= 1 && k <= MAX_STREAMS ? k : 1;
    this.red = r.red === true;
  }
  member(): Member {
    return {
      userId: this.user.id,
      nickname: this.user.nickname,
      status: this.user.status,
      selfMute: this.selfMute,
      selfDeaf: this.selfDeaf,
      serverMute: this.serverMute,
      speaking: this.speaking,
      transport: this.transport,
      away: this.conn === null && this.remoteNode === null,
    };
  }
}

/**
 * Owns the sessions of this node: log-in, hello/resume, grace periods, joins and leaves, and the
 * fan-out of bus events to the connections that should see them. Closing it ends every session.
 *
 * The SessionDirectory is the source of truth for what must survive this process: every change
 * of seat, controls or volumes is written there, and this node refreshes its sessions' entries
 * every third of their TTL. A hello for a user without a session here resumes the record, so a
 * client can come back on any node; if this process dies, its claims expire with the TTL.
 */
export class SessionManager {
  readonly #byUser = new Map<UserId, Session>();
  readonly #byConn = new Map<number, Session>();
  readonly #unsubscribe: () => void;
  readonly #refresher: NodeJS.Timeout;
  voice: VoiceRouter | null = null;
  #closed = false;

  constructor(
    private readonly ctx: AppContext,
    private readonly users: UserService,
    private readonly channels: ChannelService,
  ) {
    this.#unsubscribe = ctx.bus.subscribe((e) => this.#onBusEvent(e));
    this.#refresher = setInterval(
      () => void this.#refresh(),
      Math.max(100, Math.floor(ctx.directory.ttlMs / 3)),
    );
    this.#refresher.unref();
  }

  /**
   * Extends the directory entries of every session of this node (one batched call). Entries that
   * expired anyway (the store was unreachable longer than the TTL, or restarted empty) are written
   * again: record, nickname claim, online mark and seat.
   */
  async #refresh(): Promise<void> {
    if (this.#closed || this.#byUser.size === 0) return;
    try {
      const expired = await this.ctx.directory.touch([...this.#byUser.keys()]);
      for (const id of expired) {
        const s = this.#byUser.get(id);
        if (!s || s.closed) continue;
        this.ctx.log.warn({ user: id }, 'session entries had expired; writing them again');
        await this.ctx.directory.claimNickname(s.user.nickname, s.userId);
        await this.ctx.directory.setOnline(s.userId, true);
        if (s.channelId) await this.ctx.directory.joinChannel(s.channelId, s.userId, 0);
        await this.#save(s);
      }
    } catch (err) {
      this.ctx.log.warn({ err }, 'refreshing session entries failed; retrying next period');
    }
  }

  #save(s: Session): Promise<void> {
    return this.ctx.directory.putSession(s.record(this.ctx.config.nodeId));
  }

  get size(): number {
    return this.#byUser.size;
  }
  byConnection(conn: Connection): Session | undefined {
    return this.#byConn.get(conn.id);
  }
  byUser(id: UserId): Session | undefined {
    return this.#byUser.get(id);
  }
  *all(): IterableIterator<Session> {
    yield* this.#byUser.values();
  }

  /** A REST log-in creates the session; it waits one grace period for its WebSocket. */
  async registerLogin(token: string, user: StoredUser): Promise<Session> {
    const s = new Session(hashToken(token), user);
    this.#byUser.set(user.id, s);
    await this.ctx.directory.setOnline(user.id, true);
    await this.#save(s);
    this.#startGrace(s);
    this.ctx.metrics.sessions.set(this.#byUser.size);
    return s;
  }

  /** `hello`: binds a connection to the token's session, restoring it when within its grace period. */
  async attach(
    conn: Connection,
    token: string,
    admin: boolean,
    version: number,
    /** hello `streams` (absent: 1), before the server's cap. */
    askedStreams = 1,
    /** hello `red` (absent: false). */
    askedRed = false,
  ): Promise<Welcome> {
    if (this.#closed) throw new ProtocolError('UNAVAILABLE');
    const user = await this.users.authenticate(token);
    let s = this.#byUser.get(user.id);
    let resumed = s !== undefined && s.everConnected;
    if (!s) {
      // A returning user whose session had ended (or a restarted server): take the nickname back.
      if (!(await this.ctx.directory.claimNickname(user.nickname, user.id)))
        throw new ProtocolError('NICKNAME_TAKEN');
      s = new Session(hashToken(token), user);
      // A session kept by the directory (its node died, or the client moved to this node) resumes
      // here with its seat, controls and volumes.
      const kept = await this.ctx.directory.getSession(user.id);
      if (kept) {
        // Still open on another node (a client that changed networks): that node lets it go.
        if (kept.nodeId !== this.ctx.config.nodeId)
          await this.ctx.requests
            .request(kept.nodeId, 'member.replaced', { userId: user.id })
            .catch(() => undefined);
        s.restore(kept);
        if (s.channelId && !(await this.#retakeSeat(s.channelId, user.id))) s.channelId = null;
        resumed = s.channelId !== null;
      }
      this.#byUser.set(user.id, s);
      await this.ctx.directory.setOnline(user.id, true);
      await this.#save(s);
    }
    if (s.conn && s.conn.id !== conn.id) {
      const old = s.conn;
      this.#byConn.delete(old.id);
      old.send({
        t: 'bye',
        code: 'SESSION_REPLACED',
        message: 'this session was resumed on another connection',
      });
      old.close(4001, 'session replaced');
    }
    this.#clearGrace(s);
    s.conn = conn;
    s.everConnected = true;
    s.admin = admin;
    // The grant is the connection's: a resume from another client (or version) asks afresh.
    const streams = Math.max(1, Math.min(askedStreams, this.ctx.config.voice.maxStreams));
    const streamsChanged = s.streams !== streams || s.red !== askedRed;
    s.streams = streams;
    s.red = askedRed;
    s.user = (await this.ctx.store.updateUser(user.id, { lastSeenAt: this.ctx.now() })) ?? user;
    this.#byConn.set(conn.id, s);
    this.ctx.metrics.sessions.set(this.#byUser.size);
    if (resumed) this.ctx.metrics.sessionsResumed.inc();
    const session = s;
    return this.#turn(session, async () => {
      if (session.closed) throw new ProtocolError('SESSION_REPLACED', 'this session ended meanwhile');
      if (session.channelId) {
        // A resuming client may be a new process that lost its sequence counter: a fresh key (and
        // voice id) keeps AES-GCM nonces unique. The member stays in the channel throughout.
        if ((resumed || !session.voice) && this.voice)
          await this.#rebind(session, await this.channels.get(session.channelId));
        else if (streamsChanged) await this.voice?.update(session);
        await this.#publishMember(session);
      }
      return {
        version,
        server: `voice/${PROTOCOL_VERSION}`,
        user: { ...session.user, online: true },
        resumed,
        channelId: session.channelId,
        voice: session.voice,
        heartbeatMs: this.ctx.config.heartbeatMs,
        graceMs: this.ctx.config.graceMs,
        streams: session.streams,
        red: session.red,
      };
    });
  }

  /**
   * Runs a binding change a client or another node asked for in the session's chain; refused with
   * RATE_LIMITED (and counted) when the chain is full.
   */
  #turn<T>(s: Session, work: () => Promise<T>): Promise<T> {
    const running = s.bindings.tryRun(work);
    if (running) return running;
    this.ctx.metrics.rateLimited.inc({ limit: 'session_binding_changes' });
    return Promise.reject(
      new RateLimitedError(BINDING_RETRY_MS, 'too many voice changes of this session at once; retry'),
    );
  }

  /** The seat a kept record names, unless its channel is gone (a seat still held is kept). */
  async #retakeSeat(channelId: ChannelId, userId: UserId): Promise<boolean> {
    const ch = await this.ctx.store.getChannel(channelId);
    if (!ch) return false;
    return (await this.ctx.directory.joinChannel(channelId, userId, ch.userLimit)).ok;
  }

  /** The connection dropped: keep the session (and its seat) for the grace period. */
  async detach(conn: Connection): Promise<void> {
    const s = this.#byConn.get(conn.id);
    this.#byConn.delete(conn.id);
    if (!s || s.conn?.id !== conn.id) return;
    s.conn = null;
    if (s.transport === 'ws') s.transport = 'none';
    this.#startGrace(s);
    if (s.channelId) {
      await this.voice?.update(s);
      await this.#publishMember(s);
    }
  }

  /** Logs out: the session ends now, without grace. */
  async end(s: Session, reason: LeaveReason = 'leave'): Promise<void> {
    if (s.closed) return;
    s.closed = true;
    this.#clearGrace(s);
    if (s.conn) this.#byConn.delete(s.conn.id);
    // After the changes already asked for (a move in flight would attach it again otherwise).
    await s.bindings.run(() => this.#leave(s, reason));
    this.#byUser.delete(s.userId);
    await this.ctx.directory.deleteSession(s.userId);
    await this.ctx.directory.releaseNickname(s.user.nickname, s.userId);
    await this.ctx.directory.setOnline(s.userId, false);
    this.ctx.metrics.sessions.set(this.#byUser.size);
  }

  async join(
    s: Session,
    channelId: ChannelId,
    password: string | undefined,
  ): Promise<Omit<ResultMap['channel.join'], 'membersNext'>> {
    const ch = await this.channels.get(channelId);
    await this.channels.admit(s.principal, ch, password);
    return this.#turn(s, () => this.#join(s, ch));
  }

  async #join(s: Session, ch: StoredChannel): Promise<Omit<ResultMap['channel.join'], 'membersNext'>> {
    if (s.closed) throw new ProtocolError('SESSION_REPLACED', 'this session ended meanwhile');
    const channelId = ch.id;
    if (s.channelId === channelId) {
      // Joining the channel you are in rebinds voice with a fresh key (see attach).
      await this.#rebind(s, ch);
      await this.#publishMember(s);
    } else {
      // A server mute outlives leaving: it belongs to (channel, user) in the store until lifted.
      // Read before taking the seat, so a store failure leaves no seat behind.
      const serverMute = await this.ctx.store.isServerMuted(channelId, s.userId);
      const res = await this.ctx.directory.joinChannel(channelId, s.userId, ch.userLimit);
      if (!res.ok) throw new ProtocolError('CHANNEL_FULL', `the channel is full (${ch.userLimit} members)`);
      if (s.channelId) await this.#leave(s, 'moved');
      s.channelId = channelId;
      s.serverMute = serverMute;
      s.speaking = false;
      s.voice = (await this.voice?.attach(s, ch)) ?? null;
      await this.#save(s);
      await this.ctx.bus.publish({ type: 'member.joined', channelId, member: s.member() });
    }
    return {
      channel: await this.channels.view(ch),
      members: await this.channelMembers(channelId),
      voice: s.voice!,
    };
  }

  /**
   * New voice binding (key, voice id) in the same channel. Voice over UDP is handed over: the old
   * binding carries it until the new one is used (protocol README 8.4), so the transport stays; a
   * WebSocket binding ends with its connection, and the transport is unknown until the new HELLO.
   */
  async #rebind(s: Session, ch: StoredChannel): Promise<void> {
    if (!this.voice) return;
    s.voice = await this.voice.attach(s, ch);
    if (s.transport !== 'udp') s.transport = 'none';
  }

  /**
   * Leaves the session's channel (in turn with its other binding changes). Nothing to do once the
   * session ended meanwhile: its end left, or (replaced) another node holds its seat now.
   */
  leave(s: Session, reason: LeaveReason): Promise<void> {
    return this.#turn(s, async () => {
      if (!s.closed) await this.#leave(s, reason);
    });
  }

  async #leave(s: Session, reason: LeaveReason): Promise<void> {
    const channelId = s.channelId;
    if (!channelId) return;
    await this.voice?.detach(s);
    s.channelId = null;
    s.voice = null;
    s.speaking = false;
    s.serverMute = false;
    if (s.transport !== 'none') s.transport = 'none';
    await this.ctx.directory.leaveChannel(channelId, s.userId);
    if (!s.closed) await this.#save(s);
    await this.ctx.bus.publish({ type: 'member.left', channelId, userId: s.userId, reason });
  }

  /** Members of a channel that live on this node. */
  members(channelId: ChannelId): Member[] {
    const out: Member[] = [];
    for (const s of this.#byUser.values()) if (s.channelId === channelId) out.push(s.member());
    return out;
  }

  /** Every member of a channel, wherever its connection is (the directory's seats and records). */
  async channelMembers(channelId: ChannelId): Promise<Member[]> {
    const out = this.members(channelId);
    const here = new Set(out.map((m) => m.userId));
    for (const id of await this.ctx.directory.channelMembers(channelId)) {
      if (here.has(id)) continue;
      const r = await this.ctx.directory.getSession(id);
      if (r?.channelId === channelId) out.push(r.member);
    }
    return out;
  }

  async setVoiceState(
    s: Session,
    st: { selfMute?: boolean | undefined; selfDeaf?: boolean | undefined },
  ): Promise<Member> {
    if (!s.channelId) throw new ProtocolError('NOT_IN_CHANNEL');
    if (st.selfMute !== undefined) s.selfMute = st.selfMute;
    if (st.selfDeaf !== undefined) s.selfDeaf = st.selfDeaf;
    await this.voice?.update(s);
    await this.#save(s);
    await this.#publishMember(s);
    return s.member();
  }

  async setVolume(s: Session, speaker: UserId, volume: number): Promise<void> {
    if (!s.channelId) throw new ProtocolError('NOT_IN_CHANNEL');
    // Only members of one's channel (on any node): otherwise the volume map grows with every id a
    // client invents.
    const local = this.#byUser.get(speaker);
    const speakerChannel = local
      ? local.channelId
      : ((await this.ctx.directory.getSession(speaker))?.channelId ?? null);
    if (speaker === s.userId || speakerChannel !== s.channelId)
      throw new ProtocolError('NOT_FOUND', 'that user is not another member of your channel');
    if (volume === 100) s.volumes.delete(speaker);
    else s.volumes.set(speaker, volume);
    await this.voice?.update(s);
    await this.#save(s);
  }

  /**
   * Sets or lifts `target`'s server mute in `channelId`, by its owner or an admin. A member is
   * muted live (on whichever node holds it); for a user not in the channel only the stored mute
   * can be lifted, and the answer is null.
   */
  async serverMute(
    who: Principal,
    channelId: ChannelId,
    target: UserId,
    muted: boolean,
  ): Promise<Member | null> {
    const ch = await this.channels.get(channelId);
    if (!this.channels.canModerate(who, ch)) {
      throw new ProtocolError('FORBIDDEN', 'only the channel owner or an admin may server-mute');
    }
    const t = this.#byUser.get(target);
    const elsewhere = t ? null : await this.ctx.directory.getSession(target);
    if (t?.channelId !== channelId && elsewhere?.channelId !== channelId) {
      if (muted) throw new ProtocolError('NOT_FOUND', 'that user is not in the channel');
      if (!(await this.ctx.store.isServerMuted(channelId, target)))
        throw new ProtocolError('NOT_FOUND', 'that user is not in the channel and has no stored mute there');
      await this.ctx.store.setServerMute(channelId, target, false, this.ctx.now());
      return null;
    }
    // Durable first: once the moderator is told, a leave, re-join or restart keeps it.
    await this.ctx.store.setServerMute(channelId, target, muted, this.ctx.now());
    if (t) return this.#applyServerMute(t, muted);
    // Connected to another node: that node holds the session and applies it.
    return (await this.ctx.requests.request(elsewhere!.nodeId, 'member.serverMute', {
      userId: target,
      channelId,
      muted,
    })) as Member;
  }

  async #applyServerMute(t: Session, muted: boolean): Promise<Member> {
    t.serverMute = muted;
    await this.voice?.update(t);
    await this.#save(t);
    await this.#publishMember(t);
    return t.member();
  }

  /**
   * A log-out (protocol README section 2): the user's session ends now, its connection closed with
   * 4000, on whichever node holds it: the REST request may reach another node of a cluster than
   * the one holding the WebSocket. A node that no longer answers holds nothing to close.
   */
  async logout(userId: UserId): Promise<void> {
    const s = this.#byUser.get(userId);
    if (s) return this.#endLoggedOut(s);
    const elsewhere = await this.ctx.directory.getSession(userId);
    if (elsewhere && elsewhere.nodeId !== this.ctx.config.nodeId)
      await this.ctx.requests.request(elsewhere.nodeId, 'member.logout', { userId }).catch(() => undefined);
  }

  async #endLoggedOut(s: Session): Promise<void> {
    s.conn?.close(4000, 'logged out');
    await this.end(s, 'leave');
  }

  /** Node-addressed requests about a session of this node (sent by the router's handler). */
  async handleMemberRequest(op: string, args: unknown): Promise<unknown> {
    const a = args as { userId: UserId };
    const s = this.#byUser.get(a.userId);
    if (!s) throw new ProtocolError('NOT_FOUND', 'that user has no session on this node');
    switch (op) {
      case 'member.transport':
        await this.setTransport(s, (args as { transport: Transport }).transport);
        return null;
      case 'member.moved':
        await this.voiceMoved(s);
        return null;
      case 'member.present':
        // Asked by the owner of a shadow whose directory record is missing.
        return s.closed ? null : s.channelId;
      case 'member.replaced':
        // Resumed on another node: the session ends here without leaving its channel, releasing
        // its nickname or deleting its record (all of which the other node now holds). In turn, so
        // that no move in flight attaches it again after this detach.
        s.closed = true;
        this.#clearGrace(s);
        this.#byUser.delete(s.userId);
        await s.bindings.run(async () => this.voice?.detach(s));
        if (s.conn) {
          this.#byConn.delete(s.conn.id);
          s.conn.send({
            t: 'bye',
            code: 'SESSION_REPLACED',
            message: 'this session was resumed on another node',
          });
          s.conn.close(4001, 'session replaced');
        }
        this.ctx.metrics.sessions.set(this.#byUser.size);
        return null;
      case 'member.logout':
        await this.#endLoggedOut(s);
        return null;
      case 'member.serverMute': {
        const m = args as { channelId: ChannelId; muted: boolean };
        if (s.channelId !== m.channelId)
          throw new ProtocolError('NOT_FOUND', 'that user is not in your channel');
        return this.#applyServerMute(s, m.muted);
      }
      default:
        throw new ProtocolError('UNKNOWN_TYPE', `unknown node request ${op}`);
    }
  }

  /**
   * The session's channel moved to another node (failover, takeover, drain): a new binding there
   * (fresh key and voice id), pushed to the client, which switches without user action.
   *
   * Two callers can ask at once for one move: the drain's push (`member.moved`) and this node's own
   * lease watch, which may see the lease change first. Moves run in the session's binding chain
   * like every other change, and one finding the session already voiced by the lease holder does
   * nothing: a second rebind would cost the client a second switch.
   */
  voiceMoved(s: Session): Promise<void> {
    return this.#turn(s, () => this.#voiceMoved(s));
  }

  async #voiceMoved(s: Session): Promise<void> {
    if (!s.channelId || s.closed || !this.voice) return;
    if (await this.voice.onOwner(s)) return;
    const channelId = s.channelId;
    this.ctx.log.debug({ step: 'moved.start', user: s.userId }, 'drain trace');
    await this.#rebind(s, await this.channels.get(channelId));
    if (s.channelId === channelId && s.voice) s.conn?.send({ t: 'voice.moved', channelId, voice: s.voice });
    this.ctx.log.debug({ step: 'moved.sent', user: s.userId }, 'drain trace');
    await this.#publishMember(s);
  }

  /** Called by the voice plane when voice activity starts or stops. */
  async setSpeaking(s: Session, speaking: boolean): Promise<void> {
    if (!s.channelId || s.speaking === speaking) return;
    s.speaking = speaking;
    await this.ctx.bus.publish({ type: 'speaking', channelId: s.channelId, userId: s.userId, speaking });
  }

  /**
   * A member's connection figures from the voice plane: to its connection, or (a shadow: its
   * signaling is on another node) batched to that node by the router.
   */
  sendStats(s: Session, stats: ConnectionStats): void {
    if (s.remoteNode !== null) this.voice?.relayStats(s, stats);
    else s.conn?.send({ t: 'stats', stats });
  }

  /** A timing advance from the voice plane: to the member's connection, or relayed as `sendStats`. */
  sendAdvance(s: Session, advance: VoiceAdvance): void {
    if (s.remoteNode !== null) this.voice?.relayAdvance(s, advance);
    else s.conn?.send(advance);
  }

  /** Figures and timing advances relayed by the channel's owner for sessions of this node. */
  deliverStats(items: readonly StatsItem[]): void {
    for (const { userId, stats, advance } of items) {
      const conn = this.#byUser.get(userId)?.conn;
      if (stats) conn?.send({ t: 'stats', stats });
      if (advance) conn?.send(advance);
    }
  }

  /** Called by the voice plane when the session's voice transport changes (UDP registered, WS fallback). */
  async setTransport(s: Session, transport: Transport): Promise<void> {
    if (s.remoteNode !== null && this.voice) return this.voice.relayTransport(s, transport);
    if (s.transport === transport) return;
    s.transport = transport;
    await this.#publishMember(s);
  }

  async #publishMember(s: Session): Promise<void> {
    if (!s.channelId) return;
    await this.#save(s);
    await this.ctx.bus.publish({ type: 'member.updated', channelId: s.channelId, member: s.member() });
  }

  /** Work no client waits for: a failure (a bus that cannot publish) is logged and counted, never unhandled. */
  #background(task: string, work: Promise<unknown>): void {
    work.catch((err: unknown) => {
      this.ctx.metrics.backgroundErrors.inc({ task });
      this.ctx.log.error({ err, task }, 'background task failed');
    });
  }

  #startGrace(s: Session): void {
    this.#clearGrace(s);
    s.graceTimer = setTimeout(() => {
      s.graceTimer = null;
      this.ctx.metrics.sessionsExpired.inc();
      this.ctx.log.info({ user: s.userId }, 'session grace period ran out');
      this.#background('session expiry', this.end(s, 'timeout'));
    }, this.ctx.config.graceMs);
    s.graceTimer.unref();
  }

  #clearGrace(s: Session): void {
    if (s.graceTimer) clearTimeout(s.graceTimer);
    s.graceTimer = null;
  }

  /** Sends one encoded frame to every connected session that passes `filter`. */
  broadcast(msg: ServerMessage, filter?: (s: Session) => boolean): void {
    let frame: Uint8Array | null = null;
    for (const s of this.#byConn.values()) {
      if (!s.conn || (filter && !filter(s))) continue;
      frame ??= encodeMessage(msg);
      s.conn.sendBytes(frame);
    }
  }

  #onBusEvent(e: BusEvent): void {
    switch (e.type) {
      case 'channel.created':
      case 'channel.updated':
        if (e.type === 'channel.updated') this.voice?.channelUpdated(e.channel);
        this.#background(
          'channel fan-out',
          this.channels.view(e.channel).then((channel) => this.broadcast({ t: e.type, channel })),
        );
        return;
      case 'channel.deleted':
        this.broadcast({ t: 'channel.deleted', channelId: e.channelId });
        for (const s of this.#byUser.values()) {
          if (s.channelId === e.channelId)
            this.#background(
              'leave on delete',
              // Still there when its turn comes (a join queued before may have taken it elsewhere).
              s.bindings.run(async () => {
                if (s.channelId === e.channelId) await this.#leave(s, 'deleted');
              }),
            );
        }
        return;
      case 'member.joined':
      case 'member.updated':
        this.broadcast({ t: e.type, channelId: e.channelId, member: e.member });
        return;
      case 'member.left':
        this.broadcast({ t: 'member.left', channelId: e.channelId, userId: e.userId, reason: e.reason });
        return;
      case 'speaking': {
        // The owner's shadow detected it: this node's session (if the member is here) follows.
        const s = this.#byUser.get(e.userId);
        if (s && s.channelId === e.channelId) {
          s.speaking = e.speaking;
          // Listings made on other nodes read the member from its record: keep its flag there. Best
          // effort and counted, not logged: talkspurt edges are frequent, a Redis outage would flood
          // the log, and the next edge writes the flag again.
          this.#save(s).catch(() => this.ctx.metrics.backgroundErrors.inc({ task: 'speaking save' }));
        }
        this.broadcast(
          { t: 'speaking', channelId: e.channelId, userId: e.userId, speaking: e.speaking },
          (x) => x.channelId === e.channelId,
        );
        return;
      }
      case 'user.updated': {
        const s = this.#byUser.get(e.user.id);
        if (s) {
          s.user = e.user;
          this.#background('session save', this.#save(s));
          if (s.channelId) this.#background('member update', this.#publishMember(s));
        }
        return;
      }
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    clearInterval(this.#refresher);
    this.#unsubscribe();
    for (const s of [...this.#byUser.values()]) {
      this.#clearGrace(s);
      s.conn?.send({ t: 'bye', code: 'UNAVAILABLE', message: 'the server is shutting down' });
    }
    this.#byUser.clear();
    this.#byConn.clear();
    return Promise.resolve();
  }
}
