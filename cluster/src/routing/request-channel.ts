import { isErrorCode, ProtocolError } from '@voice/protocol';
import { RequestError } from '../errors.js';
import type { RequestChannel, RequestHandler, WireReply } from './types.js';

/** What travels between nodes. `id` correlates a reply with its request on the requesting node. */
export type RequestFrame =
  | { k: 'req'; id: number; from: string; op: string; args: unknown }
  | { k: 'res'; id: number; from: string; reply: WireReply };

/** Moves frames to a node by id. Local: a shared in-memory hub. Redis: one pub/sub channel per node. */
export interface RequestTransport {
  /** Resolves true when the frame reached a live receiver of `to` (false: nobody listens there). */
  send(to: string, frame: RequestFrame): Promise<boolean>;
  /** Sets the receiver of frames addressed to this node. */
  receive(onFrame: (frame: RequestFrame) => void): void;
  /** Whether a receiver of `to` is listening now (sends nothing to it). */
  listening(to: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface RequestChannelOptions {
  nodeId: string;
  transport: RequestTransport;
  /** Default per-request timeout. */
  timeoutMs?: number;
  /** Requests awaiting a reply at once; more are refused with OVERLOADED (never queued). */
  maxPending?: number;
  onHandlerError?: (err: unknown, op: string) => void;
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

const errorReply = (err: unknown): WireReply => {
  const code =
    typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
      ? (err as { code: string }).code
      : 'INTERNAL';
  const message = err instanceof Error ? err.message : String(err);
  return { ok: false, code, message };
};

/**
 * Request/reply over any transport. A reply whose code is a protocol error code comes back as a
 * ProtocolError (so a remote CHANNEL_FULL reaches the client unchanged); any other failure is a
 * RequestError.
 */
export class TransportRequestChannel implements RequestChannel {
  readonly nodeId: string;
  readonly #transport: RequestTransport;
  readonly #timeoutMs: number;
  readonly #maxPending: number;
  readonly #pending = new Map<number, Pending>();
  readonly #onHandlerError: (err: unknown, op: string) => void;
  #handler: RequestHandler | null = null;
  #nextId = 1;
  #closed: Promise<void> | null = null;

  constructor(opts: RequestChannelOptions) {
    if (typeof opts.nodeId !== 'string' || opts.nodeId === '') throw new TypeError('nodeId must be a string');
    this.nodeId = opts.nodeId;
    this.#transport = opts.transport;
    this.#timeoutMs = opts.timeoutMs ?? 2000;
    this.#maxPending = opts.maxPending ?? 1024;
    if (!(this.#timeoutMs > 0)) throw new TypeError('timeoutMs must be positive');
    if (!Number.isInteger(this.#maxPending) || this.#maxPending < 1)
      throw new TypeError('maxPending must be a positive integer');
    this.#onHandlerError = opts.onHandlerError ?? (() => {});
    this.#transport.receive((f) => this.#onFrame(f));
  }

  get pending(): number {
    return this.#pending.size;
  }

  request(to: string, op: string, args: unknown, timeoutMs = this.#timeoutMs): Promise<unknown> {
    if (this.#closed) return Promise.reject(new RequestError('CLOSED', 'the request channel is closed'));
    if (this.#pending.size >= this.#maxPending)
      return Promise.reject(new RequestError('OVERLOADED', `${this.#pending.size} requests already pending`));
    const id = this.#nextId++;
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RequestError('TIMEOUT', `${op} to ${to}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      this.#transport.send(to, { k: 'req', id, from: this.nodeId, op, args }).then(
        (delivered) => {
          if (!delivered)
            this.#settle(id, new RequestError('UNREACHABLE', `${op}: node ${to} is not listening`));
        },
        (err: unknown) =>
          this.#settle(id, new RequestError('UNREACHABLE', `${op} to ${to}: ${(err as Error).message}`)),
      );
    });
  }

  reachable(nodeId: string): Promise<boolean> {
    if (this.#closed) return Promise.reject(new RequestError('CLOSED', 'the request channel is closed'));
    return this.#transport.listening(nodeId);
  }

  handle(handler: RequestHandler): () => void {
    this.#handler = handler;
    return () => {
      if (this.#handler === handler) this.#handler = null;
    };
  }

  #settle(id: number, outcome: Error | { value: unknown }): void {
    const p = this.#pending.get(id);
    if (!p) return; // timed out already, or a duplicate
    this.#pending.delete(id);
    clearTimeout(p.timer);
    if (outcome instanceof Error) p.reject(outcome);
    else p.resolve(outcome.value);
  }

  #onFrame(f: RequestFrame): void {
    if (this.#closed) return;
    if (f.k === 'res') {
      const r = f.reply;
      if (r.ok) this.#settle(f.id, { value: r.result });
      else if (isErrorCode(r.code)) this.#settle(f.id, new ProtocolError(r.code, r.message));
      else this.#settle(f.id, new RequestError('REMOTE', r.message, r.code));
      return;
    }
    void this.#serve(f);
  }

  async #serve(f: Extract<RequestFrame, { k: 'req' }>): Promise<void> {
    let reply: WireReply;
    const handler = this.#handler;
    if (!handler)
      reply = { ok: false, code: 'UNAVAILABLE', message: `node ${this.nodeId} takes no requests` };
    else {
      try {
        reply = { ok: true, result: await handler(f.op, f.args, f.from) };
      } catch (err) {
        if (!(err instanceof ProtocolError)) this.#onHandlerError(err, f.op);
        reply = errorReply(err);
      }
    }
    if (this.#closed) return;
    // A lost reply is the requester's timeout; nothing to do here.
    this.#transport.send(f.from, { k: 'res', id: f.id, from: this.nodeId, reply }).catch(() => {});
  }

  /** Idempotent: fails every pending request with CLOSED, then closes the transport. */
  close(): Promise<void> {
    return (this.#closed ??= (async () => {
      for (const [id] of this.#pending)
        this.#settle(id, new RequestError('CLOSED', 'the request channel closed'));
      this.#handler = null;
      await this.#transport.close();
    })());
  }
}
