import type { BusEvent, BusListener } from './types.js';

/**
 * Bus listeners and their isolated delivery: a throwing listener is reported and never stops the
 * others; (un)subscribing during delivery affects the next event only.
 */
export class BusListeners {
  readonly #set = new Set<BusListener>();
  constructor(private readonly onListenerError: (err: unknown, event: BusEvent) => void) {}

  add(listener: BusListener): () => void {
    this.#set.add(listener);
    return () => this.#set.delete(listener);
  }
  clear(): void {
    this.#set.clear();
  }
  deliver(event: BusEvent): void {
    for (const l of [...this.#set]) {
      try {
        l(event);
      } catch (err) {
        this.onListenerError(err, event);
      }
    }
  }
}
