import type { ConnectionStats } from '@voice/protocol';
import type { Session } from '../app/sessions.js';
import type { VoiceEndpoint } from './endpoint.js';

/** How often members receive their connection figures. */
export const STATS_INTERVAL_MS = 2_000;
/** Most slices a round is cut into (a large server: no pass stalls the loop). */
export const STATS_MAX_SLICES = 20;
/**
 * Members one slice may serve before the round is cut into more. Each costs a msgpack encode and a
 * WebSocket send (20-40 µs under load): a slice of 64 held the loop 1-2.5 ms, and the channel ticks
 * due meanwhile waited (capacity bench, 250 members: tick lateness p99 2.15-3.0 ms with 16 against
 * 2.95-3.5 ms with 64, three runs each).
 */
export const STATS_MEMBERS_PER_SLICE = 16;

/**
 * Per-member connection figures (`stats` message), sent every 2 s in slices (by voice id) so no
 * single pass stalls the event loop: one slice per STATS_MEMBERS_PER_SLICE members, at most
 * STATS_MAX_SLICES. A home server with a few members wakes once per round, not 10 times a second.
 * `onRound` runs at the start of each full round. The timer runs only while someone is in a
 * channel (`running(true)`): an idle server sleeps.
 */
export class MemberStats {
  #timer: NodeJS.Timeout | null = null;
  #slice = 0;
  /** Slices of the current round (fixed for the round: a member is served once per round). */
  #slices = 1;
  #closed = false;
  /** Timer wake-ups (a test reads it: how often the figures cost a wake-up). */
  wakes = 0;

  constructor(
    private readonly endpoints: () => Iterable<VoiceEndpoint>,
    private readonly onRound: () => void,
    private readonly onError: (err: unknown) => void,
    /** Delivers a member's figures: to its connection, or to its signaling node (a shadow). */
    private readonly deliver: (session: Session, stats: ConnectionStats) => void,
    /** How many endpoints there are (sizes the round's slices). */
    private readonly count: () => number,
  ) {}

  /** Starts or stops the timer (idempotent). */
  running(on: boolean): void {
    if (on && this.#timer === null && !this.#closed) {
      this.#slice = 0;
      // The first round soon after someone joins (the phase alignment runs at each round's start),
      // as when a round was always 20 slices of 100 ms.
      this.#schedule(STATS_INTERVAL_MS / STATS_MAX_SLICES);
    } else if (!on && this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }

  #schedule(firstMs?: number): void {
    // A round's slices are fixed when it is scheduled: each member is served once per round.
    if (this.#slice === 0)
      this.#slices = Math.min(
        STATS_MAX_SLICES,
        Math.max(1, Math.ceil(this.count() / STATS_MEMBERS_PER_SLICE)),
      );
    this.#timer = setTimeout(this.#wake, firstMs ?? STATS_INTERVAL_MS / this.#slices);
    this.#timer.unref();
  }

  readonly #wake = (): void => {
    this.wakes++;
    try {
      this.#sendSlice();
    } catch (err) {
      this.onError(err);
    }
    if (this.#timer !== null && !this.#closed) this.#schedule();
  };

  #sendSlice(): void {
    if (this.#slice === 0) this.onRound();
    const slice = this.#slice;
    const slices = this.#slices;
    this.#slice = (slice + 1) % slices;
    for (const ep of this.endpoints()) {
      if (slices > 1 && ep.voiceId % slices !== slice) continue;
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
