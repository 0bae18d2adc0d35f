import type { Session } from '../app/sessions.js';
import type { VoiceEndpoint } from './endpoint.js';

/** How long a replaced binding stays live at most (protocol README 8.4), ms. */
export const HANDOVER_MAX_MS = 3_000;
/**
 * How long the replaced binding is still sent the session's audio after its upstream ended (the
 * new binding's first AUDIO), ms: the client plays it until the new session's first frame plays,
 * which its new jitter buffer may hold back a frame or two more on a loaded machine.
 */
export const DOWNSTREAM_GRACE_MS = 200;

/** One session's handover: `from` stays live until `to` carries audio, or the deadline. */
export interface Handover {
  readonly from: VoiceEndpoint;
  /** The binding that replaces it on this node; null when the session moved to another node. */
  to: VoiceEndpoint | null;
  timer: NodeJS.Timeout;
}

/**
 * Bindings being handed over, one per session at most (make-before-break, as cellular handovers
 * do): the replaced binding keeps working until the new one is in use, and is void at the latest
 * `maxMs` after it was replaced, so a session never has two live bindings beyond that window.
 * Bounded by the sessions of this node; each entry holds one unref'd timer.
 */
export class Handovers {
  readonly #bySession = new Map<Session, Handover>();

  constructor(
    /** Called when an entry's deadline passes (the entry is already gone). */
    private readonly onDeadline: (session: Session, h: Handover) => void,
    private readonly maxMs = HANDOVER_MAX_MS,
  ) {}

  get size(): number {
    return this.#bySession.size;
  }

  get(session: Session): Handover | undefined {
    return this.#bySession.get(session);
  }

  /**
   * `from` stays live for `session` until the handover ends. A handover from the same binding
   * already under way keeps its deadline: repeated rekeys never stretch the window.
   */
  start(session: Session, from: VoiceEndpoint, to: VoiceEndpoint | null): void {
    const running = this.#bySession.get(session);
    if (running?.from === from) {
      running.to = to;
      return;
    }
    if (running) clearTimeout(running.timer);
    this.#bySession.set(session, { from, to, timer: this.#arm(session, from, this.maxMs) });
  }

  #arm(session: Session, from: VoiceEndpoint, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => {
      const h = this.#bySession.get(session);
      if (h?.from !== from) return;
      this.#bySession.delete(session);
      this.onDeadline(session, h);
    }, ms);
    timer.unref();
    return timer;
  }

  /** Brings `session`'s handover from `from` to its end in `ms` (never later than it was due). */
  shorten(session: Session, from: VoiceEndpoint, ms: number): void {
    const h = this.#bySession.get(session);
    if (h?.from !== from) return;
    clearTimeout(h.timer);
    h.timer = this.#arm(session, from, ms);
  }

  /** Ends `session`'s handover (if any) and returns it; the caller voids its `from`. */
  end(session: Session): Handover | undefined {
    const h = this.#bySession.get(session);
    if (!h) return undefined;
    clearTimeout(h.timer);
    this.#bySession.delete(session);
    return h;
  }

  /** Every handover, ended (the plane closes). */
  clear(): Handover[] {
    const all = [...this.#bySession.values()];
    for (const h of all) clearTimeout(h.timer);
    this.#bySession.clear();
    return all;
  }
}
