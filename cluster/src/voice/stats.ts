import type { ConnectionStats } from '@voice/protocol';
import type { Session } from '../app/sessions.js';
import type { VoiceEndpoint } from './endpoint.js';

/** How often members receive their connection figures. */
export const STATS_INTERVAL_MS = 2_000;
const STATS_SLICES = 20;

/**
 * Per-member connection figures (`stats` message), sent every 2 s in STATS_SLICES slices (by voice
 * id) so no single pass stalls the event loop. `onRound` runs at the start of each full round.
 * The timer runs only while someone is in a channel (`running(true)`): an idle server sleeps.
 */
export class MemberStats {
  #timer: NodeJS.Timeout | null = null;
  #slice = 0;
  #closed = false;

  constructor(
    private readonly endpoints: () => Iterable<VoiceEndpoint>,
    private readonly onRound: () => void,
    private readonly onError: (err: unknown) => void,
    /** Delivers a member's figures: to its connection, or to its signaling node (a shadow). */
    private readonly deliver: (session: Session, stats: ConnectionStats) => void,
  ) {}

  /** Starts or stops the timer (idempotent). */
  running(on: boolean): void {
    if (on && this.#timer === null && !this.#closed) {
      this.#slice = 0;
      this.#timer = setInterval(() => {
        try {
          this.#sendSlice();
        } catch (err) {
          this.onError(err);
        }
      }, STATS_INTERVAL_MS / STATS_SLICES);
      this.#timer.unref();
    } else if (!on && this.#timer !== null) {
      clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  #sendSlice(): void {
    const slice = this.#slice;
    this.#slice = (slice + 1) % STATS_SLICES;
    if (slice === 0) this.onRound();
    for (const ep of this.endpoints()) {
      if (ep.voiceId % STATS_SLICES !== slice) continue;
      const m = ep.member;
      // A binding being handed over reports nothing: its session's figures come from the new one.
      if (!m || ep.retiring || (!ep.session.conn && ep.session.remoteNode === null)) continue;
      const w = ep.cipher.replay;
      const dr = w.received - ep.statsReceived;
      const dl = w.lost - ep.statsLost;
      ep.statsReceived = w.received;
      ep.statsLost = w.lost;
      const js = m.jitter.stats();
      this.deliver(ep.session, {
        rttMs: null,
        lossUp: dr + dl > 0 ? dl / (dr + dl) : 0,
        jitterMs: js.jitterMs,
        bufferMs: js.depth * ep.channel.settings.frameMs,
        packetsIn: m.packetsIn,
        packetsOut: m.packetsOut,
        concealed: js.concealed,
      });
    }
  }

  close(): void {
    this.running(false);
    this.#closed = true;
  }
}
