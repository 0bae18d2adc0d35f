import type { Channel, Member, ServerEvent } from '@voice/protocol';
import { AudioDeviceError } from '../audio/errors.js';
import type { AudioEngine } from '../audio/engine.js';
import { RestClient } from '../rest.js';
import { RequestError } from '../signaling.js';
import { VoiceClient } from '../voice/voice-client.js';
import { PRODUCT_STREAMS, type VoiceClientOptions } from '../voice/options.js';
import { PlayoutSource } from './playout-source.js';
import {
  parseCommand,
  type ChannelView,
  type Command,
  type CommandOf,
  type ConnectionState,
  type DesktopEvent,
  type ErrorInfo,
  type MemberView,
} from './messages.js';

export interface ControllerOptions {
  readonly engine: AudioEngine;
  readonly send: (event: DesktopEvent) => void;
  /** Reconnection back-off, ms (default 500 doubling to 8000). */
  readonly backoffMs?: readonly [first: number, max: number];
  readonly clientName?: string;
  /** The sound-device library did not load: said to the UI with every state it asks for. */
  readonly backendError?: AudioDeviceError;
  /**
   * Passed to every VoiceClient (tests: a lossy relay in front of the server, a faster heartbeat;
   * `--streams`: how many speakers to receive separately, VoiceClient's default 4 otherwise).
   */
  readonly voice?: Pick<VoiceClientOptions, 'udpTarget' | 'heartbeatMs' | 'streams'>;
}

/** Codes the UI shows a sentence for; anything else shows its message. */
function errorInfo(err: unknown): ErrorInfo {
  if (err instanceof RequestError)
    return {
      code: err.code,
      message: err.message,
      ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}),
    };
  if (err instanceof AudioDeviceError) return { code: err.code, message: err.message };
  // Our own argument checks (a nickname too short, ...): the message says what is wrong.
  if (err instanceof TypeError && !(err as { cause?: unknown }).cause)
    return { code: 'INVALID_INPUT', message: err.message.replace(/^VoiceClient: /, '') };
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown } };
  const code =
    typeof e?.code === 'string' ? e.code : typeof e?.cause?.code === 'string' ? e.cause.code : 'ERROR';
  // Node's network errors: say what they mean for a person.
  if (code === 'ECONNREFUSED')
    return { code: 'SERVER_DOWN', message: 'Nothing answers at that address: is the server running?' };
  if (
    code === 'ENOTFOUND' ||
    code === 'EAI_AGAIN' ||
    /bad port|Invalid URL/i.test((e?.cause as { message?: string } | undefined)?.message ?? '')
  )
    return { code: 'BAD_ADDRESS', message: 'That server name does not resolve.' };
  return { code, message: String(e?.message ?? err).slice(0, 500) };
}

/** Rejects with ADMIN_TOKEN_REJECTED unless the server takes `adminToken` on an admin-only route. */
async function checkAdminToken(origin: string, adminToken: string): Promise<void> {
  try {
    await new RestClient(origin).call('GET', '/api/v1/admin/users?limit=1', undefined, adminToken);
  } catch (err) {
    if (err instanceof RequestError && (err.code === 'INVALID_TOKEN' || err.code === 'FORBIDDEN'))
      throw Object.assign(new Error('The server did not accept that admin token.'), {
        code: 'ADMIN_TOKEN_REJECTED',
      });
    throw err;
  }
}

/** Only these failures are worth retrying: the server is down or restarting, not a wrong name. */
function retryable(err: ErrorInfo): boolean {
  return [
    'SERVER_DOWN',
    'ERROR',
    'ECONNRESET',
    'ETIMEDOUT',
    'TIMEOUT',
    'UNAVAILABLE',
    'UND_ERR_SOCKET',
  ].includes(err.code);
}

const SPEAKING_LIMIT = 1000;
const LOGOUT_TIMEOUT_MS = 1500;

/**
 * The extension's brain: one VoiceClient (reconnected with back-off, session restored by token when
 * the server still has it, else logged in again and back in the same channel), one AudioEngine, the
 * state the UI shows. Commands in, events out; every command gets exactly one reply.
 */
export class DesktopController {
  private client: VoiceClient | null = null;
  private state: ConnectionState = 'disconnected';
  private server: string | null = null;
  private nickname: string | null = null;
  private token: string | null = null;
  private adminToken: string | null = null;
  /** The server accepted our admin token on the current connection. */
  private isAdmin = false;
  /** Who we are on this server: kept while reconnecting, so the UI stays where it was. */
  private me: { id: string; nickname: string } | null = null;
  private lastError: ErrorInfo | null = null;
  private wantedChannel: { id: string; password?: string } | null = null;
  private muted = false;
  private deaf = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDelay: number;
  private retryAt: number | null = null;
  private statsTimer: NodeJS.Timeout | null = null;
  private channels = new Map<string, Channel>();
  private members = new Map<string, Member>();
  private readonly volumes = new Map<string, number>();
  private closed = false;
  private epoch = 0;
  /** The devices the UI chose (undefined: the default one). */
  private inputWanted: number | undefined;
  private outputWanted: number | undefined;

  constructor(private readonly o: ControllerOptions) {
    this.retryDelay = o.backoffMs?.[0] ?? 500;
    // The speaker's clock pulls the client's playout (no playout timer runs: playoutClock 'pull').
    o.engine.setPlayback(new PlayoutSource(() => this.client));
    o.engine.on('level', (rmsDbfs, _peak, transmitting) => this.emit({ ev: 'level', rmsDbfs, transmitting }));
    o.engine.on('error', (err, which) => this.emit({ ev: 'audioError', which, error: errorInfo(err) }));
  }

  /** Takes one raw command (from either link); always answers with one reply. */
  async handle(raw: unknown): Promise<void> {
    const p = parseCommand(raw);
    const re = typeof (raw as { id?: unknown })?.id === 'number' ? (raw as { id: number }).id : 0;
    if (!p.ok) {
      this.emit({ ev: 'reply', re, ok: false, error: { code: 'BAD_MESSAGE', message: p.error } });
      return;
    }
    try {
      const data = await this.run(p.value);
      this.emit({ ev: 'reply', re, ok: true, ...(data !== undefined ? { data } : {}) });
    } catch (err) {
      this.emit({ ev: 'reply', re, ok: false, error: errorInfo(err) });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopRetry();
    if (this.statsTimer) clearInterval(this.statsTimer);
    await this.dropClient();
    await this.logout();
  }

  /**
   * Ends the session on the server now (the app closes, or the person signs out): without it the
   * seat and the nickname stay held for the grace period, and signing in again gets NICKNAME_TAKEN.
   * Best effort, bounded: an unreachable server must not hold the app's exit.
   */
  private async logout(): Promise<void> {
    const token = this.token;
    this.token = null;
    if (!token || !this.server) return;
    // Aborted, not just no longer awaited: an abandoned request would hold its connection open.
    await new RestClient(new URL(this.server).origin, undefined, LOGOUT_TIMEOUT_MS)
      .call('POST', '/api/v1/logout', undefined, token)
      .catch(() => undefined);
  }

  // ---------------------------------------------------------------------------------------------

  private async run(c: Command): Promise<unknown> {
    const engine = this.o.engine;
    switch (c.cmd) {
      case 'hello':
        this.pushAll();
        return { protocol: 1 };
      case 'connect':
        return this.connect(c);
      case 'disconnect':
        this.stopRetry();
        this.wantedChannel = null;
        this.isAdmin = false;
        // Closed first, so the server's logout close (4000) does not look like a lost connection.
        await this.dropClient();
        await this.logout();
        this.setState('disconnected', null);
        return undefined;
      case 'channel.create': {
        const res = await this.need().signaling.request('channel.create', {
          name: c.name,
          ...(c.userLimit !== undefined ? { userLimit: c.userLimit } : {}),
          ...(c.password ? { password: c.password } : {}),
          voice: {
            ...(c.bitrate !== undefined ? { bitrate: c.bitrate } : {}),
            ...(c.frameMs ? { frameMs: c.frameMs } : {}),
          },
        });
        await this.refreshChannels();
        return { channelId: res.channel.id };
      }
      case 'channel.update':
        await this.need().signaling.request('channel.update', {
          channelId: c.channelId as Channel['id'],
          ...(c.name !== undefined ? { name: c.name } : {}),
          ...(c.userLimit !== undefined ? { userLimit: c.userLimit } : {}),
          ...(c.password !== undefined ? { password: c.password } : {}),
          voice: {
            ...(c.bitrate !== undefined ? { bitrate: c.bitrate } : {}),
            ...(c.frameMs ? { frameMs: c.frameMs } : {}),
          },
        });
        await this.refreshChannels();
        return undefined;
      case 'channel.delete':
        await this.need().signaling.request('channel.delete', { channelId: c.channelId as Channel['id'] });
        await this.refreshChannels();
        return undefined;
      case 'join':
        await this.join(c);
        return undefined;
      case 'leave':
        this.wantedChannel = null;
        await this.need().leave();
        this.members.clear();
        this.pushMembers();
        this.pushState();
        return undefined;
      case 'mute':
        this.muted = c.on;
        if (this.client?.channel) await this.client.setSelfMute(c.on);
        this.pushState();
        return undefined;
      case 'deafen':
        this.deaf = c.on;
        if (this.client?.channel) await this.client.setSelfDeaf(c.on);
        this.pushState();
        return undefined;
      case 'volume':
        this.volumes.set(c.userId, c.percent);
        await this.need().setVolume(c.userId, c.percent);
        this.pushMembers();
        return undefined;
      case 'serverMute':
        await this.need().signaling.request('voice.serverMute', {
          userId: c.userId as Member['userId'],
          muted: c.on,
        });
        return undefined;
      case 'settings':
        await this.applySettings(c);
        return undefined;
      case 'ptt':
        engine.pttDown = c.down;
        return undefined;
      case 'loopback':
        engine.setLoopback(c.on);
        return undefined;
      case 'devices':
        this.pushDevices();
        return undefined;
    }
  }

  private async applySettings(c: CommandOf<'settings'>): Promise<void> {
    const e = this.o.engine;
    const s = c.settings;
    if (s.inputGainDb !== undefined) e.gain.gainDb = s.inputGainDb;
    if (s.vadThresholdDbfs !== undefined) e.meter.thresholdDbfs = s.vadThresholdDbfs;
    if (s.transmit !== undefined) e.transmit = s.transmit;
    if (s.outputVolume !== undefined) e.setOutputVolume(s.outputVolume);
    const problems: ErrorInfo[] = [];
    // The UI sends its whole settings with every change (a gain slider moved): a device is
    // (re)opened only when another one is asked for, or none runs (it failed, or never opened).
    const id = (v: number | undefined) => (v !== undefined && v >= 0 ? v : undefined);
    const inId = s.inputDeviceId !== undefined ? id(s.inputDeviceId) : this.inputWanted;
    const outId = s.outputDeviceId !== undefined ? id(s.outputDeviceId) : this.outputWanted;
    this.inputWanted = inId;
    this.outputWanted = outId;
    // "Runs on it already?" is judged in the engine's turn: two settings sent at once open once.
    const failed = (which: 'input' | 'output') => (err: unknown) => {
      problems.push(errorInfo(err));
      this.emit({ ev: 'audioError', which, error: errorInfo(err) });
    };
    await e.ensureInput(inId).catch(failed('input'));
    await e.ensureOutput(outId).catch(failed('output'));
    this.pushDevices(s.inputDeviceId, s.outputDeviceId);
    if (problems.length > 0)
      throw new AudioDeviceError('NO_DEVICE', problems.map((p) => p.message).join('; '));
  }

  private need(): VoiceClient {
    if (!this.client || this.state !== 'connected')
      throw Object.assign(new Error('not connected'), { code: 'NOT_CONNECTED' });
    return this.client;
  }

  private async connect(c: CommandOf<'connect'>): Promise<unknown> {
    this.stopRetry();
    await this.dropClient();
    // Rights come from this connection's token only (set once it opens).
    this.isAdmin = false;
    const server = /^[a-z]+:\/\//i.test(c.server) ? c.server : `http://${c.server}`;
    try {
      new URL(server);
    } catch {
      throw Object.assign(new Error('That is not a server address (host:port).'), { code: 'BAD_ADDRESS' });
    }
    // A session left from before (a reconnection that gave up) would hold the nickname.
    await this.logout();
    this.server = server;
    this.nickname = c.nickname;
    this.adminToken = c.adminToken ?? null;
    this.me = null;
    this.wantedChannel = null;
    this.retryDelay = this.o.backoffMs?.[0] ?? 500;
    this.setState('connecting', null);
    try {
      await this.open();
    } catch (err) {
      const info = errorInfo(err);
      this.setState('disconnected', info);
      throw Object.assign(new Error(info.message), { code: info.code });
    }
    return { userId: this.client?.user.id };
  }

  /** Opens a client: resumes with the token when there is one, else logs in with the nickname. */
  private async open(): Promise<void> {
    const epoch = ++this.epoch;
    const base = {
      ...this.o.voice,
      server: this.server!,
      clientName: this.o.clientName ?? 'voice-desktop',
      playoutClock: 'pull' as const,
      // Speakers come as sent and are mixed here (README 8.8), unless the launcher says otherwise.
      streams: this.o.voice?.streams ?? PRODUCT_STREAMS,
    };
    const adminToken = this.adminToken;
    // hello answers INVALID_TOKEN for a wrong admin token and for a forgotten session alike: ask
    // an admin-only route first, so each gets its own answer (and no nickname is claimed in vain).
    if (adminToken !== null) await checkAdminToken(new URL(base.server).origin, adminToken);
    const admin = adminToken !== null ? { adminToken } : {};
    let client: VoiceClient;
    try {
      client = await VoiceClient.connect(
        this.token
          ? { ...base, ...admin, token: this.token }
          : { ...base, ...admin, nickname: this.nickname! },
      );
    } catch (err) {
      // The server forgot the session (restarted without it): log in again, then rejoin below.
      if (!this.token || !(err instanceof RequestError) || !/TOKEN|AUTH|SESSION/.test(err.code)) throw err;
      this.token = null;
      client = await VoiceClient.connect({ ...base, ...admin, nickname: this.nickname! });
    }
    if (epoch !== this.epoch || this.closed) {
      await client.close();
      return;
    }
    this.client = client;
    this.token = client.token;
    this.isAdmin = adminToken !== null;
    this.me = { id: client.user.id, nickname: client.user.nickname };
    this.listen(client);
    this.setState('connected', null);
    this.retryDelay = this.o.backoffMs?.[0] ?? 500;
    await this.refreshChannels();
    if (client.channel) {
      await this.afterJoin(client);
    } else {
      await this.rejoin();
    }
    if (!this.statsTimer) this.statsTimer = setInterval(() => this.pushStats(), 1000);
  }

  private async join(c: CommandOf<'join'>): Promise<void> {
    const client = this.need();
    const res = await client.join(c.channelId, c.password !== undefined ? { password: c.password } : {});
    this.wantedChannel = { id: res.channel.id, ...(c.password ? { password: c.password } : {}) };
    this.members = new Map(res.members.map((m) => [m.userId, m]));
    await this.afterJoin(client);
  }

  /** Back into the channel we were in (after a reconnection), if any. */
  private async rejoin(): Promise<void> {
    const w = this.wantedChannel;
    if (w)
      await this.join({
        cmd: 'join',
        id: 0,
        channelId: w.id,
        ...(w.password ? { password: w.password } : {}),
      });
  }

  private async afterJoin(client: VoiceClient): Promise<void> {
    client.startVoice(this.o.engine.source);
    if (this.muted) await client.setSelfMute(true);
    if (this.deaf) await client.setSelfDeaf(true);
    await this.applyVolumes(client);
    this.pushState();
    this.pushMembers();
    this.pushStats();
  }

  /** The server keeps volumes per session: a new one (after a restart) needs them again. */
  private async applyVolumes(client: VoiceClient): Promise<void> {
    for (const [userId, percent] of this.volumes)
      if (percent !== 100 && this.members.has(userId))
        await client.setVolume(userId, percent).catch(() => undefined);
  }

  /**
   * The client is back (its voice, mute and deafen state carried over): it only lacks the member
   * list. Not by joining again: joining the channel it is in is a rekey, which voids the binding
   * its audio has just moved to and costs another switch.
   */
  private async afterResume(client: VoiceClient, restored: boolean): Promise<void> {
    const channel = client.channel;
    if (!channel || channel.id !== this.wantedChannel?.id) return this.rejoin();
    const sig = client.signaling;
    const first = await sig.request('channel.members', { channelId: channel.id });
    const members = await sig.allMembers(channel.id, first.members, first.next);
    if (this.client !== client || client.channel?.id !== channel.id) return;
    this.members = new Map(members.map((m) => [m.userId, m]));
    // A session the server had lost (it restarted) was joined again by the client: a new one.
    if (!restored) await this.applyVolumes(client);
    this.pushState();
    this.pushMembers();
    this.pushStats();
  }

  private listen(client: VoiceClient): void {
    this.listenSignaling(client);
    client.on('left', () => {
      this.members.clear();
      this.pushMembers();
      this.pushState();
    });
    // Signaling dropped: the client itself reconnects within the server's grace period.
    client.on('reconnecting', (code, reason) => {
      if (this.client !== client) return;
      this.setState('reconnecting', {
        code: 'CONNECTION_LOST',
        message: `Connection lost (${code}${reason ? `: ${reason}` : ''})`,
      });
    });
    client.on('resumed', (restored) => {
      if (this.client !== client || this.closed) return;
      this.listenSignaling(client);
      this.setState('connected', null);
      void this.refreshChannels().catch(() => undefined);
      void this.afterResume(client, restored).catch((err) => this.setState('connected', errorInfo(err)));
    });
    // Cluster: the session moved to the channel owner's process; its events come on the new socket.
    client.on('redirected', () => {
      if (this.client !== client || this.closed) return;
      this.listenSignaling(client);
    });
    client.on('disconnected', (code, reason) => {
      if (this.client !== client || this.closed) return;
      this.client = null;
      this.scheduleRetry({
        code: 'CONNECTION_LOST',
        message: `Connection lost (${code}${reason ? `: ${reason}` : ''})`,
      });
    });
  }

  /** Channel, member and speaking events of the client's current signaling connection. */
  private listenSignaling(client: VoiceClient): void {
    const sig = client.signaling;
    const refresh = (): void => void this.refreshChannels().catch(() => undefined);
    sig.on('channel.created', refresh);
    sig.on('channel.updated', refresh);
    sig.on('channel.deleted', (m: ServerEvent<'channel.deleted'>) => {
      if (m.channelId === this.wantedChannel?.id) {
        this.wantedChannel = null;
        this.members.clear();
        this.pushMembers();
        this.pushState();
      }
      refresh();
    });
    const upsert = (m: ServerEvent<'member.joined'> | ServerEvent<'member.updated'>): void => {
      if (m.channelId !== client.channel?.id) return refresh();
      if (this.members.size >= SPEAKING_LIMIT && !this.members.has(m.member.userId)) return;
      const fresh = !this.members.has(m.member.userId);
      this.members.set(m.member.userId, m.member);
      this.pushMembers();
      // A member (back) in the channel: our volume for them lives in the server's session for us.
      const v = this.volumes.get(m.member.userId);
      if (fresh && v !== undefined && v !== 100)
        void client.setVolume(m.member.userId, v).catch(() => undefined);
      refresh();
    };
    sig.on('member.joined', upsert);
    sig.on('member.updated', upsert);
    sig.on('member.left', (m: ServerEvent<'member.left'>) => {
      if (m.channelId === client.channel?.id || m.userId === client.user.id) {
        this.members.delete(m.userId);
        this.pushMembers();
      }
      refresh();
    });
    sig.on('speaking', (m: ServerEvent<'speaking'>) => {
      const mem = this.members.get(m.userId);
      if (mem) mem.speaking = m.speaking;
      this.emit({ ev: 'speaking', userId: m.userId, speaking: m.speaking });
    });
    // (The client's own events are listened to once, in listen(): this runs again on every new
    // signaling connection, and would add them again.)
  }

  private scheduleRetry(why: ErrorInfo): void {
    this.stopRetry();
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, this.o.backoffMs?.[1] ?? 8000);
    this.retryAt = Date.now() + delay;
    this.setState('reconnecting', why);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.retryAt = null;
      this.open().catch((err) => {
        const info = errorInfo(err);
        if (retryable(info) || info.code === 'CONNECTION_LOST') this.scheduleRetry(info);
        else this.setState('disconnected', info);
      });
    }, delay);
  }

  private stopRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.retryAt = null;
  }

  private async dropClient(): Promise<void> {
    this.epoch++;
    const c = this.client;
    this.client = null;
    this.members.clear();
    if (c) await c.close();
  }

  private async refreshChannels(): Promise<void> {
    const client = this.client;
    if (!client || client.isClosed) return;
    // Every page: channel.list answers at most 100 channels per frame.
    const channels = await client.signaling.allChannels();
    this.channels = new Map(channels.map((ch) => [ch.id, ch]));
    this.emit({ ev: 'channels', channels: channels.map(channelView) });
  }

  // ---------------------------------------------------------------------------------------------

  private setState(s: ConnectionState, error: ErrorInfo | null): void {
    this.state = s;
    this.lastError = error;
    this.pushState();
  }

  private pushState(): void {
    const c = this.client;
    this.emit({
      ev: 'state',
      connection: this.state,
      server: this.server,
      userId: this.state === 'disconnected' ? null : (c?.user.id ?? this.me?.id ?? null),
      nickname: c?.user.nickname ?? this.me?.nickname ?? this.nickname,
      isAdmin: this.state !== 'disconnected' && this.isAdmin,
      channelId: c?.channel?.id ?? (this.state === 'reconnecting' ? (this.wantedChannel?.id ?? null) : null),
      muted: this.muted,
      deaf: this.deaf,
      error: this.lastError,
      retryInMs: this.retryAt === null ? null : Math.max(0, this.retryAt - Date.now()),
    });
  }

  private pushMembers(): void {
    const members: MemberView[] = [...this.members.values()].map((m) => ({
      userId: m.userId,
      nickname: m.nickname,
      speaking: m.speaking,
      selfMute: m.selfMute,
      selfDeaf: m.selfDeaf,
      serverMute: m.serverMute,
      away: m.away,
      volume: this.volumes.get(m.userId) ?? 100,
    }));
    this.emit({ ev: 'members', channelId: this.client?.channel?.id ?? null, members });
  }

  private pushDevices(inputId?: number, outputId?: number): void {
    const e = this.o.engine;
    let devices: ReturnType<AudioEngine['listDevices']> = [];
    try {
      devices = e.listDevices();
    } catch (err) {
      this.emit({ ev: 'audioError', which: 'backend', error: errorInfo(err) });
    }
    this.emit({
      ev: 'devices',
      devices: devices.map((d) => ({
        id: d.id,
        name: d.name,
        input: d.maxInputChannels > 0,
        output: d.maxOutputChannels > 0,
      })),
      inputId: inputId ?? null,
      outputId: outputId ?? null,
      backend: e.backend.name,
    });
  }

  private pushStats(): void {
    const c = this.client;
    if (!c || c.isClosed) return;
    const s = c.stats();
    this.emit({
      ev: 'stats',
      pingMs: s.rttMs ?? s.signalingRttMs,
      lossPercent: s.upstreamLoss === null ? null : s.upstreamLoss * 100,
      jitterMs: s.channelId ? s.jitterMs : null,
      transport: s.transport,
    });
  }

  private pushAll(): void {
    this.pushState();
    if (this.o.backendError)
      this.emit({ ev: 'audioError', which: 'backend', error: errorInfo(this.o.backendError) });
    if (this.channels.size > 0)
      this.emit({ ev: 'channels', channels: [...this.channels.values()].map(channelView) });
    this.pushMembers();
    this.pushDevices();
  }

  private emit(e: DesktopEvent): void {
    try {
      this.o.send(e);
    } catch {
      // A broken link must not break the engine; the link's own close handling ends the process.
    }
  }
}

function channelView(ch: Channel): ChannelView {
  return {
    id: ch.id,
    name: ch.name,
    userLimit: ch.userLimit,
    memberCount: ch.memberCount,
    hasPassword: ch.hasPassword,
    ownerId: ch.ownerId,
    bitrate: ch.voice.bitrate,
    frameMs: ch.voice.frameMs,
  };
}
