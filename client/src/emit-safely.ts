import type { EventEmitter } from 'node:events';

/**
 * Calls every listener of `event` in order, as `emitter.emit` would, except that a listener that
 * throws is reported to `onError` and the listeners after it still run: an application's bug in
 * one handler must not break the socket callback that emitted, nor starve the other handlers.
 * `once` listeners are removed as usual. Returns whether there was any listener.
 */
export function emitSafely(
  emitter: EventEmitter,
  event: string | symbol,
  args: unknown[],
  onError: (err: unknown) => void,
): boolean {
  const listeners = emitter.rawListeners(event) as ((...a: unknown[]) => unknown)[];
  for (const listener of listeners) {
    try {
      listener.apply(emitter, args);
    } catch (err) {
      try {
        onError(err);
      } catch {
        // The report itself failed: delivery to the other listeners goes on regardless.
      }
    }
  }
  return listeners.length > 0;
}
