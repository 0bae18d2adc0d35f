import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import {
  ADVANCE_WITHHELD_REASONS,
  TimingAdvance,
  type AdvanceOrder,
  type AdvanceWithheld,
} from '../src/voice/advance.js';
import { SERVER_MARGIN_MS, type VoiceMember } from '../src/voice/member.js';
import { virtualChannel, type VirtualChannel } from './helpers/virtual-channel.js';

/**
 * A timing advance (protocol README 8.7) moves a speaker's send phase so its frames reach the mix
 * just before the tick. It only helps a speaker whose frames some listener gets in a mix: one whose
 * every listener is forwarded its packets as they arrive (or streams them) waits for no tick.
 * The server's real ChannelCore on a virtual clock with real Opus packets, judged by the real
 * TimingAdvance as the voice plane runs it every 2 s.
 */
const FRAME_MS = 20;

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

/**
 * `ticks` frame periods: member 0's packets arrive 3 ms before each tick, member 1's 13 ms before
 * (a whole 10 ms more wait than it needs); others send nothing. Frame indices follow the clock.
 */
function talk(ch: VirtualChannel, from: number, ticks: number): void {
  for (let f = from; f < from + ticks; f++) {
    const due = f * FRAME_MS;
    ch.now = due - 13;
    ch.arrive(1, f);
    ch.now = due - 3;
    ch.arrive(0, f);
    ch.now = due;
    ch.tick(due);
  }
}

/** One round of the timing advance, at virtual time `now`: the orders it sent, and why others got none. */
function advise(
  ch: VirtualChannel,
  now: number,
): { orders: AdvanceOrder<VoiceMember>[]; withheld: Partial<Record<AdvanceWithheld, number>> } {
  const orders: AdvanceOrder<VoiceMember>[] = [];
  const counts = Object.fromEntries(ADVANCE_WITHHELD_REASONS.map((r) => [r, 0])) as Record<
    AdvanceWithheld,
    number
  >;
  new TimingAdvance(SERVER_MARGIN_MS).advise(ch.core, now, (o) => orders.push(o), counts);
  const withheld = Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
  return { orders, withheld };
}

describe('timing advance and forwarded speakers', () => {
  it('two speakers who each hear the other forwarded get no advance; a mixed listener brings it', () => {
    // The two speakers hear each other alone: each one's packets go to the other as they arrive.
    const ch = virtualChannel(opus, FRAME_MS, 2);
    // Clock from 10 s: the advance's rate limit (one per member per 2 s) has nothing to hold back.
    const F0 = 500;
    talk(ch, F0, 100);
    // Member 0 was forwarded member 1's packets as they arrived, every one after the first tick's.
    expect(ch.got.length).toBeGreaterThanOrEqual(99);
    expect(ch.got.slice(1).every((s) => s.onArrival)).toBe(true);
    // No frame of theirs waited for a tick: neither is judged (no phase recorded, nothing withheld).
    expect(advise(ch, (F0 + 100) * FRAME_MS)).toEqual({ orders: [], withheld: {} });

    // A third member who only listens hears both: a mix, made at the tick. Member 1's frames wait
    // about 13 ms for it: that member is told to send later, by about 10 ms (to 2.5 ms before).
    ch.join();
    talk(ch, F0 + 100, 100);
    const { orders, withheld } = advise(ch, (F0 + 200) * FRAME_MS);
    expect(orders.map((o) => o.member)).toEqual([ch.core.members[1]]);
    // Member 0, 3 ms before the tick, is where it should be.
    expect(withheld).toEqual({ on_tick: 1 });
    expect(orders[0]!.shiftUs).toBeGreaterThan(9_000);
    expect(orders[0]!.shiftUs).toBeLessThan(11_500);
    ch.close();
  });
});
