import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import type { RequestFrame, RequestTransport } from './request-channel.js';

/** The largest frame accepted from Redis; anything bigger is dropped and counted. */
const MAX_FRAME_BYTES = 256 * 1024;

/**
 * Request transport over Redis pub/sub: node `n` listens on `<prefix>req:<n>`. PUBLISH answers
 * how many subscribers got the frame, so a request to a dead node fails at once, not at its timeout.
 * `sub` must be a connection of its own (a subscribed connection takes no other commands).
 */
export class RedisRequestTransport implements RequestTransport {
  readonly #packr = new Packr({ useRecords: false });
  readonly #channel: Buffer;
  #onFrame: ((frame: RequestFrame) => void) | null = null;
  #closed = false;
  /** Frames from Redis that were not a RequestFrame (a foreign publisher, a version skew). */
  badFrames = 0;

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    private readonly prefix: string,
    nodeId: string,
  ) {
    this.#channel = Buffer.from(`${prefix}req:${nodeId}`);
    this.sub.on('messageBuffer', this.#onMessage);
  }

  /** Resolves once the subscription is in place (requests sent before it would be missed). */
  async ready(): Promise<void> {
    await this.sub.subscribe(this.#channel.toString());
  }

  async send(to: string, frame: RequestFrame): Promise<boolean> {
    if (this.#closed) return false;
    const n = await this.pub.publish(`${this.prefix}req:${to}`, this.#packr.pack(frame));
    return n > 0;
  }

  receive(onFrame: (frame: RequestFrame) => void): void {
    this.#onFrame = onFrame;
  }

  async listening(to: string): Promise<boolean> {
    if (this.#closed) return false;
    // PUBSUB NUMSUB answers [channel, count]: one command, nothing delivered to the node.
    const r = (await this.pub.pubsub('NUMSUB', `${this.prefix}req:${to}`)) as [string, number];
    return Number(r[1]) > 0;
  }

  readonly #onMessage = (channel: Buffer, message: Buffer): void => {
    if (this.#closed || !channel.equals(this.#channel)) return;
    let frame: unknown;
    try {
      if (message.length > MAX_FRAME_BYTES) throw new Error('too large');
      frame = this.#packr.unpack(message);
    } catch {
      this.badFrames++;
      return;
    }
    if (!isFrame(frame)) {
      this.badFrames++;
      return;
    }
    this.#onFrame?.(frame);
  };

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.sub.off('messageBuffer', this.#onMessage);
    await this.sub.unsubscribe(this.#channel.toString()).catch(() => {});
  }
}

function isFrame(f: unknown): f is RequestFrame {
  if (typeof f !== 'object' || f === null) return false;
  const o = f as Record<string, unknown>;
  if (typeof o.id !== 'number' || typeof o.from !== 'string') return false;
  if (o.k === 'req') return typeof o.op === 'string';
  if (o.k === 'res') {
    const r = o.reply as Record<string, unknown> | null;
    return typeof r === 'object' && r !== null && typeof r.ok === 'boolean';
  }
  return false;
}
