import { forgetPhases, type AdvanceOrder, type TimingAdvance } from './advance.js';
import type { ChannelActor } from './channel-actor.js';
import type { VoiceCounters } from './counters.js';

/** Hold times a channel needs before its phase is judged. */
const MIN_SAMPLES = 50;

/**
 * Phase alignment: when every frame of a channel waited at least a few clock slots before its
 * tick (5th percentile of hold time), tick that much earlier, keeping one slot of margin. The
 * server-added delay then approaches the slot size instead of up to a whole frame.
 */
export function alignPhases(
  channels: Iterable<ChannelActor>,
  counters: VoiceCounters,
  /** Timing advances (advance.ts) and where they go; null: the feature is off. */
  advance: { by: TimingAdvance; send: (order: AdvanceOrder) => void } | null,
  now: number,
): void {
  for (const ch of channels) {
    const hist = ch.core.alignHold;
    let moved = false;
    if (hist.count >= MIN_SAMPLES && ch.schedule) {
      const slots = Math.floor(hist.percentile(5) / ch.slotMs) - 1;
      moved = slots > 0 && ch.schedule.advance(slots) > 0;
      if (moved) counters.realigns++;
    }
    hist.reset();
    // The two never act in the same round: after the tick moved, the members' phases are void;
    // once it stays, the members are advanced to it.
    if (!advance) forgetPhases(ch.core);
    else if (moved) forgetPhases(ch.core, counters.advancesWithheld);
    else counters.advances += advance.by.advise(ch.core, now, advance.send, counters.advancesWithheld);
  }
}
