import type { ProtocolError } from '@voice/protocol';
import { wireError } from './errors.js';
import type { Logger } from './log.js';
import type { Metrics } from './metrics.js';
import { TokenBucket } from './ratelimit.js';

/** Log lines per boundary: a burst, then this many a minute; the rest are counted, not written. */
const LOG_BURST = 5;
const LOGS_PER_MINUTE = 6;
/** Boundaries are a fixed set of names in our code; the bound only guards against a naming bug. */
const MAX_BOUNDARIES = 64;

/**
 * Where input enters the server (a uWS callback, a timer, a bus listener) nothing may escape: an
 * exception there would reach uWS or the event loop and end the process. Each boundary reports
 * what it caught here: counted always, logged at a bounded rate (a flood of one bad request must
 * not become a flood of log lines), and mapped to the wire error the caller should answer with.
 */
export class Boundary {
  readonly #logBudget = new Map<string, { bucket: TokenBucket; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Milliseconds, monotonic (tests pass their own). */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Counts and (rate-limited) logs an exception caught at `where`; returns the error to answer
   * with: the ProtocolError itself, STORAGE_FULL for a full disk, else INTERNAL.
   */
  report(where: string, err: unknown): ProtocolError {
    const wire = wireError(err);
    // A ProtocolError thrown on purpose is an answer, not a fault: only the others are counted here.
    if (wire !== err) {
      this.metrics.boundaryErrors.inc({ boundary: where, code: wire.code });
      this.#log(where, err, wire);
    }
    return wire;
  }

  /** `fn` with every exception reported at `where` instead of thrown (uWS and timer callbacks). */
  guard<A extends unknown[]>(where: string, fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => {
      try {
        fn(...args);
      } catch (err) {
        this.report(where, err);
      }
    };
  }

  #log(where: string, err: unknown, wire: ProtocolError): void {
    let e = this.#logBudget.get(where);
    if (!e) {
      if (this.#logBudget.size >= MAX_BOUNDARIES) return;
      e = { bucket: new TokenBucket(LOGS_PER_MINUTE / 60, LOG_BURST, this.now()), suppressed: 0 };
      this.#logBudget.set(where, e);
    }
    if (!e.bucket.take(this.now())) {
      e.suppressed++;
      return;
    }
    const suppressed = e.suppressed;
    e.suppressed = 0;
    this.log.error({ err, boundary: where, code: wire.code, suppressed }, 'exception caught at a boundary');
  }
}
