import type { Redis } from 'ioredis';
import { Packr } from 'msgpackr';
import { ClusterUnavailableError } from '../errors.js';
import { BusListeners } from './listeners.js';
import type { BusEvent, BusEventType, BusListener, EventBus } from './types.js';

const EVENT_TYPES: ReadonlySet<string> = new Set<BusEventType>([
  'channel.created',
  'channel.updated',
  'channel.deleted',
  'member.joined',
  'member.updated',
  'member.left',
  'speaking',
  'user.updated',
]);
const MAX_EVENT_BYTES = 64 * 1024;

/**
 * The bus over Redis pub/sub (`<prefix>bus`, msgpack). Every node, the publisher included, gets
 * each event once from Redis, in publish order per publisher. `sub` is a subscriber connection
 * (it may be shared with other subscribers: messages are told apart by channel).
 */
export class RedisEventBus implements EventBus {
  readonly #listeners: BusListeners;
  readonly #packr = new Packr({ useRecords: false });
  readonly #channel: string;
  readonly #channelBuf: Buffer;
  #closed = false;
  /** Messages on the bus channel that were not a known event. */
  badEvents = 0;

  constructor(
    private readonly pub: Redis,
    private readonly sub: Redis,
    prefix: string,
    onListenerError: (err: unknown, event: BusEvent) => void = () => {},
  ) {
    this.#listeners = new BusListeners(onListenerError);
    this.#channel = `${prefix}bus`;
    this.#channelBuf = Buffer.from(this.#channel);
    sub.on('messageBuffer', this.#onMessage);
  }

  /** Resolves once subscribed: events published before that are not seen by this node. */
  async ready(): Promise<void> {
    await this.sub.subscribe(this.#channel);
  }

  async publish(event: BusEvent): Promise<void> {
    if (this.#closed) return;
    try {
      await this.pub.publish(this.#channel, this.#packr.pack(event));
    } catch (err) {
      throw new ClusterUnavailableError(`publishing ${event.type}`, { cause: err });
    }
  }

  readonly #onMessage = (channel: Buffer, message: Buffer): void => {
    if (this.#closed || !channel.equals(this.#channelBuf)) return;
    let event: BusEvent;
    try {
      if (message.length > MAX_EVENT_BYTES) throw new Error('too large');
      const e = this.#packr.unpack(message) as { type?: unknown } | null;
      if (typeof e !== 'object' || e === null || typeof e.type !== 'string' || !EVENT_TYPES.has(e.type))
        throw new Error('not an event');
      event = e as BusEvent;
    } catch {
      this.badEvents++;
      return;
    }
    this.#listeners.deliver(event);
  };

  subscribe(listener: BusListener): () => void {
    return this.#listeners.add(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    this.sub.off('messageBuffer', this.#onMessage);
    await this.sub.unsubscribe(this.#channel).catch(() => {});
  }
}
