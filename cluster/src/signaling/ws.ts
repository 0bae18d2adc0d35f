import { STATUS_CODES } from 'node:http';
import type { TemplatedApp, WebSocket } from 'uWebSockets.js';
import {
  CLOSE_FRAME_BYTES,
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
import type { Boundary } from '../boundary.js';
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
/**
 * Voice over the fallback transport is dropped (and counted) once this much waits for the client:
 * older audio is worth less than none, and signaling must not queue behind it.
 */
const VOICE_BACKLOG_BYTES = 16 * 1024;
/**
 * What uWS reads of one frame. Frames up to here are read and, past CLOSE_FRAME_BYTES, closed with
 * 1009; a frame announcing more is cut off by uWS at its header (1006, nothing read), so an
 * attacker cannot make us buffer more than this per connection.
 */
const READ_FRAME_BYTES = 4 * CLOSE_FRAME_BYTES;
/** Close codes of our own (protocol/README.md 3.7). */
const CLOSE_TOO_MANY_BAD_FRAMES = 4002;
const CLOSE_HELLO_TIMEOUT = 4003;
const CLOSE_TOO_SLOW = 4004;

class WsConnection implements Connection {
  open = true;
  badFrames = 0;
  pending = 0;
  /** A hello is being processed: the hello deadline waits for its outcome. */
  helloInFlight = false;
  /** The hello deadline passed; a hello that fails now closes the connection. */
  helloLate = false;
  helloTimer: NodeJS.Timeout | undefined;
  /** Requests of one connection run in order: a join cannot overtake the leave sent before it. */
  chain: Promise<void> = Promise.resolve();
  readonly messages: TokenBucket;
  readonly voice: TokenBucket;
  readonly maxBackpressure: number;
  constructor(
    private readonly ws: WebSocket<WsData>,
    readonly id: number,
    readonly address: string,
    limits: {
      messagesPerSecond: number;
      messageBurst: number;
      voicePacketsPerSecond: number;
      wsBackpressureBytes: number;
    },
    private readonly refused: (type: string) => void,
    private readonly backedUp: (action: 'closed' | 'voice_dropped') => void,
    private readonly sent: () => void,
  ) {
    this.maxBackpressure = limits.wsBackpressureBytes;
    this.messages = new TokenBucket(limits.messagesPerSecond, limits.messageBurst);
    this.voice = new TokenBucket(limits.voicePacketsPerSecond, Math.ceil(limits.voicePacketsPerSecond / 2));
  }
  send(msg: ServerMessage): boolean {
    const frame = encodeMessage(msg);
    if (frame.byteLength <= MAX_FRAME_BYTES) return this.sendBytes(frame);
    // No frame over the limit leaves the server: a result becomes an INTERNAL error (the request
    // is still answered exactly once), anything else is dropped; both are counted.
    this.refused(msg.t);
    if (msg.t !== 'result') return false;
    return this.sendBytes(
      encodeMessage({ t: 'error', re: msg.re, code: 'INTERNAL', message: 'the answer would exceed a frame' }),
    );
  }
  /**
   * Queues a frame unless the client has stopped reading: droppable frames (voice) are dropped
   * past VOICE_BACKLOG_BYTES; any other frame that would pass the limit closes the connection
   * (4004) instead, since a client that misses signaling events holds a wrong picture. Either
   * way what waits for one client stays under the limit.
   */
  sendBytes(frame: Uint8Array, droppable = false): boolean {
    if (!this.open) return false;
    if (frame.byteLength > MAX_FRAME_BYTES) {
      this.refused('encoded');
      return false;
    }
    const waiting = this.ws.getBufferedAmount();
    if (droppable && waiting > VOICE_BACKLOG_BYTES) {
      this.backedUp('voice_dropped');
      return false;
    }
    if (waiting + frame.byteLength > this.maxBackpressure) {
      this.backedUp('closed');
      this.close(CLOSE_TOO_SLOW, 'too slow: messages not read');
      return false;
    }
    this.sent();
    return this.ws.send(frame, true) !== 2;
  }
  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    clearTimeout(this.helloTimer);
    this.ws.end(code, reason);
  }
}

export interface SignalingDeps extends HandlerDeps {
  boundary: Boundary;
  connectionLimiter: KeyedRateLimiter;
  /** Open connections per address, to cap how many one host may hold. */
  perAddress: Map<string, number>;
  ready: () => boolean;
}

/** Mounts the signaling WebSocket at /ws. Returns a function that closes every connection. */
export function mountSignaling(app: TemplatedApp, d: SignalingDeps): () => void {
  const { ctx, sessions, boundary } = d;
  const { metrics, config } = ctx;
  const handlers = createHandlers(d);
  const conns = new Set<WsConnection>();
  let nextId = 1;

  const countError = (code: ErrorCode) => metrics.errors.inc({ code, transport: 'ws' });
  const refused = (type: string) => metrics.framesRefused.inc({ type });
  const backedUp = (action: 'closed' | 'voice_dropped') => metrics.wsBackpressure.inc({ action });
  const sent = () => metrics.wsFramesSent.inc();
  const reply = (c: WsConnection, code: ErrorCode, message: string, re?: number, retryAfterMs?: number) => {
    countError(code);
    const m: Extract<ServerMessage, { t: 'error' }> =
      re === undefined ? { t: 'error', code, message } : { t: 'error', re, code, message };
    if (retryAfterMs !== undefined) m.retryAfterMs = retryAfterMs;
    c.send(m);
  };
  // Exactly maxBadFrames are answered; the last of them is followed by bye and the close.
  const badFrame = (c: WsConnection, code: ErrorCode, message: string, re?: number) => {
    reply(c, code, message, re);
    if (++c.badFrames >= config.limits.maxBadFrames) {
      c.send({ t: 'bye', code, message: 'too many bad frames' });
      c.close(CLOSE_TOO_MANY_BAD_FRAMES, 'too many bad frames');
    }
  };
  const helloTimeout = (c: WsConnection) => {
    metrics.helloTimeouts.inc();
    c.send({ t: 'bye', code: 'NOT_AUTHENTICATED', message: `no hello within ${config.helloTimeoutMs} ms` });
    c.close(CLOSE_HELLO_TIMEOUT, 'hello timeout');
  };

  const dispatch = async (c: WsConnection, m: Exclude<ClientMessage, { t: 'voice' }>): Promise<void> => {
    const started = performance.now();
    try {
      let data: unknown;
      if (m.t === 'hello') {
        if (sessions.byConnection(c)) throw new ProtocolError('ALREADY_AUTHENTICATED');
        c.helloInFlight = true;
        try {
          data = await handleHello(d, c, m);
          clearTimeout(c.helloTimer);
        } finally {
          c.helloInFlight = false;
        }
      } else {
        const s = sessions.byConnection(c);
        if (!s) throw new ProtocolError('NOT_AUTHENTICATED');
        const h = handlers[m.t] as (s: unknown, m: unknown) => Promise<unknown>;
        data = await h(s, m);
      }
      c.send({ t: 'result', re: m.id, data } as ServerMessage);
    } catch (err) {
      const wire = boundary.report('ws_request', err);
      reply(
        c,
        wire.code,
        wire.message,
        m.id,
        wire instanceof RateLimitedError ? wire.retryAfterMs : undefined,
      );
    } finally {
      metrics.requestSeconds.observe({ type: m.t }, (performance.now() - started) / 1000);
      if (c.helloLate && c.open && !sessions.byConnection(c)) helloTimeout(c);
    }
  };

  const onMessage = (ws: WebSocket<WsData>, message: ArrayBuffer, isBinary: boolean): void => {
    const c = ws.getUserData().conn;
    if (!c?.open) return;
    if (message.byteLength > CLOSE_FRAME_BYTES) {
      countError('FRAME_TOO_LARGE');
      c.close(1009, 'frame over 64 KiB');
      return;
    }
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
      return reply(c, 'RATE_LIMITED', 'too many messages on this connection', m.id, c.messages.msUntil());
    }
    if (c.pending >= MAX_PENDING) {
      metrics.rateLimited.inc({ limit: 'ws_pending' });
      return reply(c, 'RATE_LIMITED', 'too many requests in flight', m.id);
    }
    c.pending++;
    c.chain = c.chain
      .then(() => dispatch(c, m))
      .catch((err: unknown) => void boundary.report('ws_request', err))
      .finally(() => void c.pending--);
  };

  app.ws<WsData>('/ws', {
    compression: 0,
    maxPayloadLength: READ_FRAME_BYTES,
    // Ours is checked first (sendBytes); uWS's own drop, at the same bound, is never reached.
    maxBackpressure: config.limits.wsBackpressureBytes,
    idleTimeout: Math.max(8, Math.ceil((config.heartbeatMs * 2) / 4000) * 4),
    sendPingsAutomatically: true,
    upgrade: (res, req, context) => {
      let answered = false;
      res.onAborted(() => {
        answered = true;
      });
      const refuse = (status: string, code: ErrorCode, limit?: string, retryAfterMs?: number) => {
        if (answered) return;
        answered = true;
        countError(code);
        if (limit) metrics.rateLimited.inc({ limit });
        const error = { code, message: ERROR_CODES[code].text, ...(retryAfterMs ? { retryAfterMs } : {}) };
        res.cork(() => {
          res.writeStatus(status).writeHeader('content-type', 'application/json');
          // As REST answers a rate limit (protocol README section 2): seconds, rounded up.
          if (retryAfterMs) res.writeHeader('retry-after', String(Math.ceil(retryAfterMs / 1000)));
          res.end(JSON.stringify({ error }));
        });
      };
      try {
        const address = clientAddress(
          Buffer.from(res.getRemoteAddressAsText()).toString(),
          req,
          config.trustProxy,
        );
        const key = req.getHeader('sec-websocket-key');
        const protocol = req.getHeader('sec-websocket-protocol');
        const extensions = req.getHeader('sec-websocket-extensions');
        if (!d.ready()) return refuse('503 Service Unavailable', 'UNAVAILABLE');
        if ((d.perAddress.get(address) ?? 0) >= config.limits.connectionsPerAddress) {
          return refuse('429 Too Many Requests', 'RATE_LIMITED', 'connections_per_address');
        }
        if (!d.connectionLimiter.take(address))
          return refuse(
            '429 Too Many Requests',
            'RATE_LIMITED',
            'connects',
            d.connectionLimiter.retryAfterMs(address),
          );
        answered = true;
        res.upgrade<WsData>({ id: nextId++, address }, key, protocol, extensions, context);
      } catch (err) {
        const wire = boundary.report('ws_upgrade', err);
        refuse(`${wire.httpStatus} ${STATUS_CODES[wire.httpStatus] ?? ''}`, wire.code);
      }
    },
    open: boundary.guard('ws_open', (ws: WebSocket<WsData>) => {
      const data = ws.getUserData();
      const c = new WsConnection(ws, data.id, data.address, config.limits, refused, backedUp, sent);
      data.conn = c;
      conns.add(c);
      d.perAddress.set(data.address, (d.perAddress.get(data.address) ?? 0) + 1);
      metrics.wsConnections.inc();
      c.helloTimer = setTimeout(
        boundary.guard('hello_deadline', () => {
          c.helloLate = true;
          if (c.open && !c.helloInFlight && !sessions.byConnection(c)) helloTimeout(c);
        }),
        config.helloTimeoutMs,
      );
    }),
    message: (ws, message, isBinary) => {
      try {
        onMessage(ws, message, isBinary);
      } catch (err) {
        const wire = boundary.report('ws_message', err);
        const c = ws.getUserData().conn;
        if (c?.open) reply(c, wire.code, wire.message);
      }
    },
    close: boundary.guard('ws_close', (ws: WebSocket<WsData>, code: number, reason: ArrayBuffer) => {
      const data = ws.getUserData();
      const c = data.conn;
      if (!c) return;
      c.open = false;
      clearTimeout(c.helloTimer);
      conns.delete(c);
      metrics.wsConnections.dec();
      const n = (d.perAddress.get(data.address) ?? 1) - 1;
      if (n <= 0) d.perAddress.delete(data.address);
      else d.perAddress.set(data.address, n);
      // uWS cuts a frame past READ_FRAME_BYTES at its header, with 1006 and this reason.
      if (code === 1006 && Buffer.from(reason).toString().includes('too big')) countError('FRAME_TOO_LARGE');
      // Run after requests already queued on this connection, so a hello in flight is not lost.
      c.chain = c.chain
        .then(() => sessions.detach(c))
        .catch((err: unknown) => void boundary.report('ws_detach', err));
    }),
  });

  return () => {
    for (const c of [...conns]) c.close(1001, 'server shutting down');
  };
}
