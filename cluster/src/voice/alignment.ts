import type { ChannelActor } from './channel-actor.js';
import type { VoiceCounters } from './counters.js';

/** Hold times a channel needs before its phase is judged. */
const MIN_SAMPLES = 50;

/**
 * Phase alignment: when every frame of a channel waited at least a few clock slots before its
 * tick (5th percentile of hold time), tick that much earlier, keeping one slot of margin. The
 * server-added delay then approaches the slot size instead of up to a whole frame.
 */
export function alignPhases(channels: Iterable<ChannelActor>, counters: VoiceCounters): void {
  for (const ch of channels) {
    const hist = ch.core.alignHold;
    if (hist.count >= MIN_SAMPLES && ch.schedule) {
      const slots = Math.floor(hist.percentile(5) / ch.slotMs) - 1;
      if (slots > 0 && ch.schedule.advance(slots) > 0) counters.realigns++;
    }
    hist.reset();
  }
}
