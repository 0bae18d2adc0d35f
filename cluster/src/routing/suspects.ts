export interface SuspectNodesOptions {
  /** How long a node stays suspect after its last failure, ms. */
  holdMs: number;
  /** Nodes held at once; the oldest suspicion is forgotten first beyond it. Default 256. */
  max?: number;
  now?: () => number;
}

/**
 * Nodes this process found not answering (a request timed out or found nobody listening), each
 * for a while: placement passes them over rather than wait on them again. Local knowledge only;
 * the registry and the leases stay the shared truth, and a suspicion simply expires.
 */
export class SuspectNodes {
  readonly #holdMs: number;
  readonly #max: number;
  readonly #now: () => number;
  /** Node id to the time its suspicion ends, in insertion order (oldest first). */
  readonly #until = new Map<string, number>();

  constructor(opts: SuspectNodesOptions) {
    if (!Number.isFinite(opts.holdMs) || opts.holdMs <= 0) throw new TypeError('holdMs must be positive');
    const max = opts.max ?? 256;
    if (!Number.isInteger(max) || max < 1) throw new TypeError('max must be a positive integer');
    this.#holdMs = opts.holdMs;
    this.#max = max;
    this.#now = opts.now ?? Date.now;
  }

  /** `nodeId` failed to answer: suspect from now for the hold time. */
  mark(nodeId: string): void {
    this.#until.delete(nodeId);
    if (this.#until.size >= this.#max) this.#until.delete(this.#until.keys().next().value!);
    this.#until.set(nodeId, this.#now() + this.#holdMs);
  }

  has(nodeId: string): boolean {
    const until = this.#until.get(nodeId);
    if (until === undefined) return false;
    if (until > this.#now()) return true;
    this.#until.delete(nodeId);
    return false;
  }

  /** It answered: no longer suspect. */
  clear(nodeId: string): void {
    this.#until.delete(nodeId);
  }

  get size(): number {
    return this.#until.size;
  }
}
