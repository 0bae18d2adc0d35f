import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import {
  decodeClientMessage,
  encodeMessage,
  ERROR_CODES,
  MAX_FRAME_BYTES,
  ProtocolError,
  RateLimitedError,
  type ClientMessage,
  type ErrorCode,
  type ServerMessage,
} from '@voice/protocol';
import type { Connection } from '../app/context.js';
import { TokenBucket, type KeyedRateLimiter } from '../ratelimit.js';
import { createHandlers, handleHello, type HandlerDeps } from './handlers.js';
import { clientAddress } from '../http/server.js';

/** Per-connection state kept in uWS user data. */
interface WsData {
  id: number;
  address: string;
  conn?: WsConnection;
}

/** Pending requests per connection; past this the connection is flooding us. */
const MAX_PENDING = 32;
/** Above this many buffered bytes a slow client loses messages rather than growing our memory. */
const MAX_BACKPRESSURE = 1 << 20;

class WsConnection implements Connection {
  open = true;
  badFrames = 0;
  pending = 0;
  /** Requests of one connection run in order: a join cannot overtake the leave sent before it. */
  chain: Promise<void> = Promise.resolve();
  readonly messages: TokenBucket;
  readonly voice: TokenBucket;
  constructor(
    private readonly ws: WebSocket<WsData>,
    readonly id: number,
    readonly address: string,
    limits: { messagesPerSecond: number; messageBurst: number; voicePacketsPerSecond: number },
  ) {
    this.messages = new TokenBucket(limits.messagesPerSecond, limits.messageBurst);
    this.voice = new TokenBucket(limits.voicePacketsPerSecond, Math.ceil(limits.voicePacketsPerSecond / 2));
  }
  send(msg: ServerMessage): boolean {
    return this.sendBytes(encodeMessage(msg));
  }
  sendBytes(frame: Uint8Array): boolean {
    if (!this.open) return false;
    if (this.ws.getBufferedAmount() > MAX_BACKPRESSURE) return false;
    return this.ws.send(frame, true) !== 2;
  }
  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.ws.end(code, reason);
  }
}

export interface SignalingDeps extends HandlerDeps {
  connectionLimiter: KeyedRateLimiter;
  /** Open connections per address, to cap how many one host may hold. */
  perAddress: Map<string, number>;
  ready: () => boolean;
}

/** Mounts the signaling WebSocket at /ws. Returns a function that closes every connection. */
export function mountSignaling(app: TemplatedApp, d: SignalingDeps): () => void {
  const { ctx, sessions } = d;
  const { metrics, log, config } = ctx;
  const handlers = createHandlers(d);
  const conns = new Set<WsConnection>();
  let nextId = 1;

  const countError = (code: ErrorCode) => metrics.errors.inc({ code, transport: 'ws' });
  const reply = (c: WsConnection, code: ErrorCode, message: string, re?: number, retryAfterMs?: number) => {
    countError(code);
    const m: Extract<ServerMessage, { t: 'error' }> =
      re === undefined ? { t: 'error', code, message } : { t: 'error', re, code, message };
    if (retryAfterMs !== undefined) m.retryAfterMs = retryAfterMs;
    c.send(m);
  };
  const badFrame = (c: WsConnection, code: ErrorCode, message: string, re?: number) => {
    reply(c, code, message, re);
    if (++c.badFrames > config.limits.maxBadFrames) {
      c.send({ t: 'bye', code, message: 'too many bad frames' });
      c.close(4002, 'too many bad frames');
    }
  };

  const dispatch = async (c: WsConnection, m: Exclude<ClientMessage, { t: 'voice' }>): Promise<void> => {
    const started = performance.now();
    try {
      let data: unknown;
      if (m.t === 'hello') {
        if (sessions.byConnection(c)) throw new ProtocolError('ALREADY_AUTHENTICATED');
        data = await handleHello(d, c, m);
      } else {
        const s = sessions.byConnection(c);
        if (!s) throw new ProtocolError('NOT_AUTHENTICATED');
        const h = handlers[m.t] as (s: unknown, m: unknown) => Promise<unknown>;
        data = await h(s, m);
      }
      c.send({ t: 'result', re: m.id, data } as ServerMessage);
    } catch (err) {
      if (err instanceof RateLimitedError) reply(c, err.code, err.message, m.id, err.retryAfterMs);
      else if (err instanceof ProtocolError) reply(c, err.code, err.message, m.id);
      else {
        log.error({ err, type: m.t }, 'signaling handler failed');
        reply(c, 'INTERNAL', ERROR_CODES.INTERNAL.text, m.id);
      }
    } finally {
      metrics.requestSeconds.observe({ type: m.t }, (performance.now() - started) / 1000);
    }
  };

  app.ws<WsData>('/ws', {
    compression: 0,
    // uWS closes the socket (1009) past this; frames between MAX_FRAME_BYTES and this get an error reply.
    maxPayloadLength: MAX_FRAME_BYTES * 4,
    maxBackpressure: MAX_BACKPRESSURE,
    idleTimeout: Math.max(8, Math.ceil((config.heartbeatMs * 2) / 4000) * 4),
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      const address = clientAddress(
        Buffer.from(res.getRemoteAddressAsText()).toString(),
        req,
        config.trustProxy,
      );
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const refuse = (status: string, code: ErrorCode, limit?: string) => {
        countError(code);
        if (limit) metrics.rateLimited.inc({ limit });
        res.writeStatus(status).writeHeader('content-type', 'application/json');
        res.end(JSON.stringify({ error: { code, message: ERROR_CODES[code].text } }));
      };
      if (!d.ready()) return refuse('503 Service Unavailable', 'UNAVAILABLE');
      if ((d.perAddress.get(address) ?? 0) >= config.limits.connectionsPerAddress) {
        return refuse('429 Too Many Requests', 'RATE_LIMITED', 'connections_per_address');
      }
      if (!d.connectionLimiter.take(address))
        return refuse('429 Too Many Requests', 'RATE_LIMITED', 'connects');
      res.upgrade<WsData>({ id: nextId++, address }, key, protocol, extensions, context);
    },
    open: (ws) => {
      const data = ws.getUserData();
      const c = new WsConnection(ws, data.id, data.address, config.limits);
      data.conn = c;
      conns.add(c);
      d.perAddress.set(data.address, (d.perAddress.get(data.address) ?? 0) + 1);
      metrics.wsConnections.inc();
    },
    message: (ws, message, isBinary) => {
      const c = ws.getUserData().conn;
      if (!c?.open) return;
      if (!isBinary) return badFrame(c, 'BAD_FRAME', 'send binary msgpack frames, not text');
      // uWS reuses this memory after the callback returns; decoding copies what it keeps.
      const decoded = decodeClientMessage(new Uint8Array(message));
      if (!decoded.ok) return badFrame(c, decoded.code, decoded.message, decoded.re);
      const m = decoded.value;
      metrics.wsMessages.inc({ type: m.t });
      if (m.t === 'voice') {
        const s = sessions.byConnection(c);
        if (!s) return reply(c, 'NOT_AUTHENTICATED', ERROR_CODES.NOT_AUTHENTICATED.text);
        if (!c.voice.take()) return void metrics.rateLimited.inc({ limit: 'ws_voice' });
        sessions.voice?.receiveWs(s, m.p);
        return;
      }
      if (!c.messages.take()) {
        metrics.rateLimited.inc({ limit: 'ws_messages' });
        return reply(c, 'RATE_LIMITED', 'too many messages on this connection', m.id);
      }
      if (c.pending >= MAX_PENDING) {
        metrics.rateLimited.inc({ limit: 'ws_pending' });
        return reply(c, 'RATE_LIMITED', 'too many requests in flight', m.id);
      }
      c.pending++;
      c.chain = c.chain.then(() => dispatch(c, m)).finally(() => void c.pending--);
    },
    close: (ws, code, reason) => {
      const data = ws.getUserData();
      const c = data.conn;
      if (!c) return;
      c.open = false;
      conns.delete(c);
      metrics.wsConnections.dec();
      const n = (d.perAddress.get(data.address) ?? 1) - 1;
      if (n <= 0) d.perAddress.delete(data.address);
      else d.perAddress.set(data.address, n);
      // uWS drops a frame past maxPayloadLength with 1006 and this reason (1009 on some versions).
      if (code === 1009 || (code === 1006 && Buffer.from(reason).toString().includes('too big'))) {
        countError('FRAME_TOO_LARGE');
      }
      // Run after requests already queued on this connection, so a hello in flight is not lost.
      c.chain = c.chain
        .then(() => sessions.detach(c))
        .catch((err: unknown) => log.error({ err }, 'detach failed'));
    },
  });

  return () => {
    for (const c of [...conns]) c.close(1001, 'server shutting down');
  };
}
