import { EventEmitter } from 'node:events';
import WebSocket from 'ws';
import { emitSafely } from './emit-safely.js';
import {
  decodeServerMessage,
  encodeMessage,
  ProtocolError,
  SUPPORTED_VERSIONS,
  type Channel,
  type ChannelId,
  type ClientMessage,
  type Member,
  type ErrorCode,
  type ResultMap,
  type ServerMessage,
  type ServerMessageType,
  type Welcome,
} from '@voice/protocol';

type RequestType = keyof ResultMap;
type RequestBody<K extends RequestType> = Omit<Extract<ClientMessage, { t: K }>, 't' | 'id'>;

export interface SignalingOptions {
  /** ws://host:port/ws */
  url: string;
  token: string;
  adminToken?: string;
  client?: string;
  requestTimeoutMs?: number;
  /** `hello.streams`: speakers this client can receive as STREAM packets and mix (protocol README 8.8). */
  streams?: number;
  /** `hello.red`: this client reads RED packets (protocol README 9.1). */
  red?: boolean;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Node's EventEmitter throws on an unheard 'error' event: uncorrelated server errors go out as 'serverError'. */
export const eventName = (t: string): string => (t === 'error' ? 'serverError' : t);

/** The server's answer to a request was an error: carries the stable code (and, for RATE_LIMITED, when to retry). */
export class RequestError extends ProtocolError {
  override readonly name: string = 'RequestError';
  constructor(
    code: ErrorCode,
    message?: string,
    /** Milliseconds before the same request may succeed (`RATE_LIMITED` only). */
    readonly retryAfterMs?: number,
  ) {
    super(code, message);
  }
}

/**
 * A signaling connection: hello on connect, requests matched to replies by id, typed events.
 * Emits every server message under its `t` (e.g. 'member.joined'; `error` without `re` as 'serverError'),
 * and 'close' with (code, reason).
 */
export class SignalingClient extends EventEmitter {
  #nextId = 1;
  #listenerErrors = 0;
  readonly #pending = new Map<number, Pending>();
  #closed = false;
  welcome!: Welcome;

  private constructor(
    private readonly ws: WebSocket,
    private readonly opts: SignalingOptions,
  ) {
    super();
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const d = decodeServerMessage(data);
      if (!d.ok) return;
      this.#onMessage(d.value);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.#closed = true;
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer);
        p.reject(new Error(`connection closed (${code})`));
      }
      this.#pending.clear();
      this.emit('close', code, reason.toString());
    });
    ws.on('error', (err) => this.emit('transportError', err));
  }

  /** Opens the socket and completes hello. Rejects with RequestError when the server refuses. */
  static async connect(opts: SignalingOptions): Promise<SignalingClient> {
    const ws = new WebSocket(opts.url, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) =>
        reject(new Error(`upgrade refused: HTTP ${res.statusCode}`)),
      );
    });
    const c = new SignalingClient(ws, opts);
    try {
      c.welcome = await c.request('hello', {
        versions: [...SUPPORTED_VERSIONS],
        token: opts.token,
        ...(opts.client ? { client: opts.client } : {}),
        ...(opts.adminToken ? { adminToken: opts.adminToken } : {}),
        // Absent means 1 (mixes only): a client that wants none says nothing.
        ...(opts.streams !== undefined && opts.streams > 1 ? { streams: opts.streams } : {}),
        ...(opts.red === true ? { red: true } : {}),
      });
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Errors thrown by this client's event listeners (each was caught; the others still ran). */
  get listenerErrors(): number {
    return this.#listenerErrors;
  }

  /** Delivers an event: a throwing listener is counted and skipped, never thrown into ws. */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    return emitSafely(this, event, args, () => void this.#listenerErrors++);
  }

  request<K extends RequestType>(t: K, body: RequestBody<K>): Promise<ResultMap[K]> {
    if (this.#closed) return Promise.reject(new Error('connection closed'));
    const id = this.#nextId++;
    const msg = { t, id, ...body } as unknown as ClientMessage;
    return new Promise<ResultMap[K]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`request ${t} timed out`));
      }, this.opts.requestTimeoutMs ?? 10_000);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.ws.send(encodeMessage(msg));
    });
  }

  /**
   * Every channel: `channel.list` is paged (each page fits one frame), so follow `next` to the end.
   * `maxPages` bounds the walk against a server that never ends its list.
   */
  async allChannels(maxPages = 1_000): Promise<Channel[]> {
    const out: Channel[] = [];
    let cursor: string | null = null;
    for (let i = 0; i < maxPages; i++) {
      const page: ResultMap['channel.list'] = await this.request(
        'channel.list',
        cursor === null ? {} : { cursor },
      );
      out.push(...page.channels);
      cursor = page.next;
      if (cursor === null) return out;
    }
    throw new Error(`channel.list did not end within ${maxPages} pages`);
  }

  /**
   * A channel's whole member list from what `channel.join` returned: its first page, then
   * `channel.members` from `membersNext` until the list ends (at most `maxPages` pages).
   */
  async allMembers(
    channelId: ChannelId,
    first: readonly Member[],
    next: string | null,
    maxPages = 1_000,
  ): Promise<Member[]> {
    const out = [...first];
    let cursor = next;
    for (let i = 0; cursor !== null; i++) {
      if (i >= maxPages) throw new Error(`channel.members did not end within ${maxPages} pages`);
      const page: ResultMap['channel.members'] = await this.request('channel.members', { channelId, cursor });
      out.push(...page.members);
      cursor = page.next;
    }
    return out;
  }

  /** Sends raw bytes (tests use this for malformed frames). */
  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Bytes queued in the WebSocket but not yet sent (voice senders drop frames when this grows). */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Voice packet over the WebSocket fallback transport. */
  sendVoice(packet: Uint8Array): void {
    if (!this.#closed) this.ws.send(encodeMessage({ t: 'voice', p: packet }));
  }

  /** Resolves with the next event of this type that matches. */
  waitFor<T extends ServerMessageType>(
    t: T,
    match: (m: Extract<ServerMessage, { t: T }>) => boolean = () => true,
    timeoutMs = 5_000,
  ): Promise<Extract<ServerMessage, { t: T }>> {
    return new Promise((resolve, reject) => {
      const on = (m: Extract<ServerMessage, { t: T }>) => {
        if (!match(m)) return;
        clearTimeout(timer);
        this.off(eventName(t), on);
        resolve(m);
      };
      const timer = setTimeout(() => {
        this.off(eventName(t), on);
        reject(new Error(`no ${t} event within ${timeoutMs} ms`));
      }, timeoutMs);
      this.on(eventName(t), on);
    });
  }

  #onMessage(m: ServerMessage): void {
    if (m.t === 'result' || (m.t === 'error' && m.re !== undefined)) {
      const p = this.#pending.get(m.re!);
      if (!p) {
        // A reply to a frame we did not send through request() (raw or malformed): surface it.
        this.emit(eventName(m.t), m);
        return;
      }
      this.#pending.delete(m.re!);
      clearTimeout(p.timer);
      if (m.t === 'result') p.resolve(m.data);
      else p.reject(new RequestError(m.code, m.message, m.retryAfterMs));
      return;
    }
    this.emit(eventName(m.t), m);
  }

  close(): void {
    if (!this.#closed) this.ws.close(1000, 'bye');
    this.#closed = true;
  }

  /** Drops the TCP connection without a close handshake (simulates a network loss). */
  terminate(): void {
    this.ws.terminate();
  }
}
