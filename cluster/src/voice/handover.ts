import type { Session } from '../app/sessions.js';
import type { VoiceEndpoint } from './endpoint.js';

/** How long a replaced binding stays live at most (protocol README 8.4), ms. */
export const HANDOVER_MAX_MS = 3_000;

/** One session's handover: `from` stays live until `to` carries audio, or the deadline. */
export interface Handover {
  readonly from: VoiceEndpoint;
  /** The binding that replaces it on this node; null when the session moved to another node. */
  to: VoiceEndpoint | null;
  readonly timer: NodeJS.Timeout;
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
    const timer = setTimeout(() => {
      const h = this.#bySession.get(session);
      if (h?.from !== from) return;
      this.#bySession.delete(session);
      this.onDeadline(session, h);
    }, this.maxMs);
    timer.unref();
    this.#bySession.set(session, { from, to, timer });
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
