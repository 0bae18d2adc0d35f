import type { BusEvent, BusListener, EventBus } from './types.js';

/**
 * In-process bus. Delivery is synchronous and in order; a throwing listener is reported through
 * `onListenerError` and never stops delivery to the others.
 */
export class LocalEventBus implements EventBus {
  readonly #listeners = new Set<BusListener>();
  #closed = false;
  constructor(private readonly onListenerError: (err: unknown, event: BusEvent) => void = () => {}) {}

  publish(event: BusEvent): Promise<void> {
    if (this.#closed) return Promise.resolve();
    for (const l of [...this.#listeners]) {
      try {
        l(event);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
    return Promise.resolve();
  }
  subscribe(listener: BusListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    return Promise.resolve();
  }
}
