import type { RequestFrame, RequestTransport } from './request-channel.js';

/** The in-memory meeting point of local request transports: one receiver per node id. */
export class LocalRequestHub {
  readonly receivers = new Map<string, (frame: RequestFrame) => void>();
}

/**
 * Request transport inside one process. Frames are copied and delivered on a later microtask, as
 * they would be over Redis, so callers cannot depend on synchronous or shared-object delivery.
 */
export class LocalRequestTransport implements RequestTransport {
  #closed = false;
  constructor(
    private readonly hub: LocalRequestHub,
    private readonly nodeId: string,
  ) {}

  send(to: string, frame: RequestFrame): Promise<boolean> {
    const receiver = this.#closed ? undefined : this.hub.receivers.get(to);
    if (!receiver) return Promise.resolve(false);
    const copy = structuredClone(frame);
    queueMicrotask(() => receiver(copy));
    return Promise.resolve(true);
  }

  listening(to: string): Promise<boolean> {
    return Promise.resolve(!this.#closed && this.hub.receivers.has(to));
  }

  receive(onFrame: (frame: RequestFrame) => void): void {
    if (this.hub.receivers.has(this.nodeId)) throw new TypeError(`node ${this.nodeId} already receives here`);
    this.hub.receivers.set(this.nodeId, onFrame);
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.hub.receivers.delete(this.nodeId);
    }
    return Promise.resolve();
  }
}
