import WebSocket from 'ws';
import {
  ProtocolError,
  decodeServerMessage,
  encodeMessage,
  type ClientMessageOf,
  type ErrorCode,
  type ResultMap,
  type ServerMessage,
  type Welcome,
} from '@voice/protocol';
import { RestClient } from '@voice/client';

/** Events kept for a test to read; a long-running generator does not grow without bound. */
const MAX_EVENTS = 10_000;

type Body<K extends keyof ResultMap> = Omit<ClientMessageOf<K>, 't' | 'id'>;

/**
 * A signaling connection built from protocol/README.md alone (ws + the protocol codec), for tests
 * and load generators that need a `hello` field the client library does not send (such as
 * `streams`). Requests in order, replies matched by id; every other server message is kept in
 * `events` (bounded: the oldest go past MAX_EVENTS).
 */
export class RawSignaling {
  readonly events: ServerMessage[] = [];
  welcome!: Welcome;
  #nextId = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const d = decodeServerMessage(data);
      if (!d.ok) return;
      const m = d.value;
      const re = m.t === 'result' || m.t === 'error' ? m.re : undefined;
      const p = re === undefined ? undefined : this.#pending.get(re);
      if (!p || re === undefined) {
        if (this.events.length >= MAX_EVENTS) this.events.shift();
        this.events.push(m);
        return;
      }
      this.#pending.delete(re);
      if (m.t === 'result') p.resolve(m.data);
      else if (m.t === 'error') p.reject(new ProtocolError(m.code, m.message));
    });
    ws.on('close', () => {
      for (const p of this.#pending.values()) p.reject(new Error('connection closed'));
      this.#pending.clear();
    });
  }

  /** Opens `wsUrl` and sends hello with `token` and `extra` (e.g. `{streams: 4}`). */
  static async connect(
    wsUrl: string,
    token: string,
    extra: Partial<Body<'hello'>> = {},
  ): Promise<RawSignaling> {
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const c = new RawSignaling(ws);
    try {
      c.welcome = await c.request('hello', { versions: [1], token, ...extra });
    } catch (err) {
      c.close();
      throw err;
    }
    return c;
  }

  /** Logs a new user in at `httpUrl` and connects it to `wsUrl` with `extra` in its hello. */
  static async login(
    httpUrl: string,
    wsUrl: string,
    nickname: string,
    extra: Partial<Body<'hello'>> = {},
  ): Promise<RawSignaling> {
    const { token } = await new RestClient(httpUrl).login(nickname);
    return RawSignaling.connect(wsUrl, token, extra);
  }

  request<K extends keyof ResultMap>(t: K, body: Body<K>): Promise<ResultMap[K]> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ws.send(encodeMessage({ t, id, ...body } as never));
    });
  }

  /** The error code a request is refused with (throws if it succeeds). */
  static async refusal(p: Promise<unknown>): Promise<ErrorCode> {
    try {
      await p;
    } catch (err) {
      if (err instanceof ProtocolError) return err.code;
      throw err;
    }
    throw new Error('the request succeeded');
  }

  close(): void {
    this.ws.close();
  }
}
