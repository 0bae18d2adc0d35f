import type { ChannelId } from '@voice/protocol';
import type { ArrivalPhases } from './arrival-phases.js';
import type { VoiceMember } from './member.js';

/** What the advance reads and keeps per member (a `VoiceMember`). */
export interface AdvisedMember {
  readonly phase: ArrivalPhases;
  /** Frames concealed or packets late since the last round. */
  missedInRound: number;
  /** Last order's `seq` (per binding) and when it was sent, ms. */
  advanceSeq: number;
  advancedAt: number;
}

/** What the advance reads of a channel (a `ChannelCore`). */
export interface AdvisedChannel<M extends AdvisedMember> {
  readonly id: ChannelId;
  readonly settings: { readonly frameMs: number };
  readonly members: readonly M[];
}

/** Arrival phases a member needs in one round before it is judged (a second of 20 ms frames). */
const MIN_SAMPLES = 40;
/** Lead before the tick kept by the latest of a member's packets (its 2nd percentile), ms. */
const LEAD_MS = 1;
/** What that lead keeps above the members' jitter-buffer margin, ms (see `advanceFor`). */
const MARGIN_SLACK_MS = 0.5;
/** A member this close to its target phase is left alone (ms): no message for noise. */
const DEADBAND_MS = 1;
/** Rate limit: at most one advance per member per this many ms. */
export const ADVANCE_INTERVAL_MS = 2_000;
/**
 * Where a member's latest and earliest arrivals are read: nearly the extremes of a round (about
 * 100 frames), so that the lead covers the jitter tail, not only the bulk: a packet moved past its
 * tick is concealed, one moved across the previous tick waits a frame more.
 */
const PERCENTILES = [2, 50, 98] as const;

/**
 * Why a member judged in a round got no order; labels of voice_timing_advances_withheld_total.
 * Counted once per member per round in which it sent (had any arrival phase).
 */
export const ADVANCE_WITHHELD_REASONS = [
  /** Fewer than MIN_SAMPLES mixed arrivals in the round (a short talkspurt, or mostly forwarded). */
  'few_samples',
  /** The only member with enough samples: the tick alignment follows it. */
  'lone_sender',
  /** An order went to it less than ADVANCE_INTERVAL_MS ago. */
  'interval',
  /** Its arrivals spread over half a frame or more: no phase to move to. */
  'spread',
  /** Already within DEADBAND_MS of where it should be. */
  'on_tick',
  /** A later send, withheld because it missed a tick in the round. */
  'missed',
  /** The tick itself moved this round (alignment.ts): phases void. */
  'tick_moved',
] as const;
export type AdvanceWithheld = (typeof ADVANCE_WITHHELD_REASONS)[number];

/** Arrivals spread over half a frame or more have no phase to move to (see `advanceFor`). */
function spreadTooWide(latest: number, earliest: number, frameMs: number): boolean {
  return earliest - latest >= frameMs / 2;
}

/** One timing advance for one member: move its send schedule by `shiftUs` (positive: later). */
export interface AdvanceOrder<M extends AdvisedMember = VoiceMember> {
  member: M;
  channelId: ChannelId;
  seq: number;
  shiftUs: number;
}

/**
 * The shift (ms, positive: send later) that puts a member's latest arrivals (`latest`: a low
 * percentile of their lead before the tick) a base lead plus half its spread (`median` less
 * `latest`, its arrival jitter) before the tick, or 0 to leave it alone: the margin follows the
 * member's jitter, and its median then sits 1.5 spreads plus the base before the tick (at most a
 * quarter frame plus its spread). The base is LEAD_MS, or `marginMs` (the phase margin the
 * member's jitter buffer asks before a pop when it starts playing) plus MARGIN_SLACK_MS if more:
 * arrivals closer to the tick than that play on time while a talkspurt lasts, but a buffer that
 * starts afresh (a talkspurt after a long pause) would take the next tick, a whole frame more. A
 * later send never moves those packets past their tick; an earlier one is bounded so that the
 * earliest (`earliest`, a high percentile) do not cross the previous tick, where they would wait a
 * whole frame more. Nothing for arrivals spread over half a frame.
 */
export function advanceFor(
  latest: number,
  median: number,
  earliest: number,
  frameMs: number,
  marginMs = 0,
): number {
  // Arrivals spread over half a frame or more (a stalling machine, a jittery link) have no phase
  // to move to: an order would chase noise, and the jitter buffer covers them anyway.
  if (spreadTooWide(latest, earliest, frameMs)) return 0;
  // Half the member's spread on top of LEAD_MS: a packet later than this round's latest would
  // miss the tick, and the jitter buffer, once grown, keeps the frame it added through loud audio.
  const base = Math.max(LEAD_MS, marginMs + MARGIN_SLACK_MS);
  const lead = Math.min(base + Math.max(0, median - latest) / 2, frameMs / 4);
  let shift = Math.max(latest - lead, earliest - frameMs + LEAD_MS);
  // A sender applies it modulo a frame: whole frames of hold are the jitter buffer's to give back.
  if (shift >= frameMs) shift %= frameMs;
  return Math.abs(shift) < DEADBAND_MS ? 0 : shift;
}

/**
 * Timing advance, run once per phase round (every 2 s) for a channel whose tick did not move in
 * that round: when two or more members send, each one whose packets arrive well before the tick
 * (or around it) is told to move the instant it cuts its frames, so that every speaker's packets
 * reach the mixer just before the tick, not only the one the tick is phased to. The tick follows
 * the earliest-held member (alignment.ts); the others are advanced to the tick. A lone sender is
 * left to the tick alignment (and is forwarded on arrival anyway). Only frames some listener got
 * in a mix count (the channel records no phase for one every listener was forwarded or streamed):
 * those alone wait for a tick.
 *
 * Every member's phases are cleared after each round: the next one judges only arrivals after
 * this round's orders (a client applies one within a round trip), so orders never add up twice.
 */
export class TimingAdvance {
  readonly #pct = new Float64Array(PERCENTILES.length);

  readonly marginMs: number;

  /** `marginMs`: the members' jitter-buffer phase margin (JitterBufferOptions.marginMs). */
  constructor(marginMs = 0) {
    if (!(marginMs >= 0)) throw new TypeError('marginMs must be >= 0');
    this.marginMs = marginMs;
  }

  /**
   * Judges `core`'s members (at most one order each); returns the orders sent. `withheld` counts,
   * by reason, the members that sent in the round but got no order.
   */
  advise<M extends AdvisedMember>(
    core: AdvisedChannel<M>,
    now: number,
    send: (order: AdvanceOrder<M>) => void,
    withheld: Record<AdvanceWithheld, number>,
  ): number {
    const members = core.members;
    const frameMs = core.settings.frameMs;
    let senders = 0;
    for (const m of members) if (m.phase.count >= MIN_SAMPLES) senders++;
    let sent = 0;
    for (const m of members) {
      const h = m.phase;
      if (h.count > 0) {
        const shift = this.#judge(m, senders, now, frameMs);
        if (typeof shift === 'number') {
          m.advancedAt = now;
          send({ member: m, channelId: core.id, seq: ++m.advanceSeq, shiftUs: Math.round(shift * 1000) });
          sent++;
        } else withheld[shift]++;
      }
      h.reset();
      m.missedInRound = 0;
    }
    return sent;
  }

  /** The shift `m` is ordered (ms), or why it gets none. */
  #judge(m: AdvisedMember, senders: number, now: number, frameMs: number): number | AdvanceWithheld {
    if (m.phase.count < MIN_SAMPLES) return 'few_samples';
    if (senders < 2) return 'lone_sender';
    if (now - m.advancedAt < ADVANCE_INTERVAL_MS) return 'interval';
    if (!m.phase.percentiles(PERCENTILES, this.#pct)) return 'few_samples';
    const latest = this.#pct[0]!;
    const median = this.#pct[1]!;
    const earliest = this.#pct[2]!;
    if (spreadTooWide(latest, earliest, frameMs)) return 'spread';
    const shift = advanceFor(latest, median, earliest, frameMs, this.marginMs);
    if (shift === 0) return 'on_tick';
    // A member that missed its tick this round gets no later send: its lead is already short for
    // its jitter (an earlier send, which lengthens it, still goes).
    if (shift > 0 && m.missedInRound > 0) return 'missed';
    return shift;
  }
}

/** After the tick itself moved: the phases measured so far are void (counted in `withheld`). */
export function forgetPhases(
  core: AdvisedChannel<AdvisedMember>,
  withheld?: Record<AdvanceWithheld, number>,
): void {
  for (const m of core.members) {
    if (withheld && m.phase.count > 0) withheld.tick_moved++;
    m.phase.reset();
    m.missedInRound = 0;
  }
}
