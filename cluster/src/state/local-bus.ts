import { BusListeners } from './listeners.js';
import type { BusEvent, BusListener, EventBus } from './types.js';

/** Where local buses meet: every bus on one hub sees every event published on any of them. */
export class LocalBusHub {
  readonly buses = new Set<LocalEventBus>();
}

/**
 * In-process bus. Delivery is synchronous and in order; a throwing listener is reported through
 * `onListenerError` and never stops delivery to the others. Buses over one hub see each other's
 * events (tests use that as "several processes"); alone, a bus is its own hub.
 */
export class LocalEventBus implements EventBus {
  readonly #listeners: BusListeners;
  #closed = false;
  constructor(
    onListenerError: (err: unknown, event: BusEvent) => void = () => {},
    private readonly hub: LocalBusHub = new LocalBusHub(),
  ) {
    this.#listeners = new BusListeners(onListenerError);
    hub.buses.add(this);
  }

  publish(event: BusEvent): Promise<void> {
    if (this.#closed) return Promise.resolve();
    for (const bus of [...this.hub.buses]) bus.#listeners.deliver(event);
    return Promise.resolve();
  }

  subscribe(listener: BusListener): () => void {
    return this.#listeners.add(listener);
  }
  close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.hub.buses.delete(this);
    return Promise.resolve();
  }
}
