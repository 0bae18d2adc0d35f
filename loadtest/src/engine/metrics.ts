import type { EventEmitter } from 'node:events';

/** Where a virtual user's figures go: Artillery's counters and histograms (summaries). */
export interface MetricSink {
  counter(name: string, value?: number): void;
  histogram(name: string, value: number): void;
  /** An error, counted as `errors.<code>` in Artillery's report. */
  error(code: string): void;
}

/** The sink over the event emitter Artillery hands to createScenario. */
export function artillerySink(ee: EventEmitter): MetricSink {
  return {
    counter: (name, value = 1) => void ee.emit('counter', name, value),
    histogram: (name, value) => void ee.emit('histogram', name, value),
    error: (code) => void ee.emit('error', code),
  };
}

/** A stable code for an error: the wire code when the server sent one, else the error's class. */
export function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; message?: unknown; cause?: { code?: unknown } } | null;
  if (e && typeof e.code === 'string' && e.code !== '') return e.code;
  // fetch() fails with TypeError('fetch failed') and the socket's error as its cause.
  if (e && typeof e.cause?.code === 'string' && e.cause.code !== '') return e.cause.code;
  const msg = typeof e?.message === 'string' ? e.message : String(err);
  if (/timed out|within \d+ ms/.test(msg)) return 'TIMEOUT';
  if (/ECONNREFUSED/.test(msg)) return 'ECONNREFUSED';
  if (/closed/.test(msg)) return 'CONNECTION_CLOSED';
  return typeof e?.name === 'string' ? e.name : 'Error';
}

/** Connection set-up steps: timed apart from the round trips of an open session. */
const SETUP = new Set(['login', 'hello', 'connect']);

/**
 * Runs `fn` and records its duration under `signaling.rtt.<name>`, and under `signaling.rtt` (a
 * request on an open session) or `signaling.setup` (log-in over REST, WebSocket upgrade and hello).
 */
export async function timed<T>(m: MetricSink, name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const r = await fn();
  const ms = performance.now() - t0;
  m.histogram(SETUP.has(name) ? 'signaling.setup' : 'signaling.rtt', ms);
  m.histogram(`signaling.rtt.${name}`, ms);
  return r;
}
