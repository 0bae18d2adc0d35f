import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { SLEEP_AFTER_MS } from '../src/voice/channel.js';
import { virtualChannel, type Sent, type VirtualChannel } from './helpers/virtual-channel.js';

/**
 * A channel nobody has spoken in for SLEEP_AFTER_MS stops ticking until the next packet
 * (ChannelCore.sleep / wake; the actor takes its clock slot back). That must be invisible to the
 * listeners: the server's real ChannelCore on a virtual clock, once ticked as the actor does
 * (no tick while asleep) and once ticked every frame, sends member 0 the same packets, stamped
 * with the same media frames, at the same instants.
 */
const F = 20;

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

/**
 * Talkspurts of `speakers` (member indices) for `frames` frames, starting at frame `from`, their
 * packets 3 ms before each tick; then `silent` frame periods of nothing. Ticks every frame period,
 * except that with `sleeps` a tick is not run while the core sleeps (the actor's rule: asleep once
 * `sleepy` after a tick, until a packet wakes it).
 */
function run(
  ch: VirtualChannel,
  sleeps: boolean,
  plan: { speakers: number[]; frames: number; silent: number }[],
) {
  let f = 100;
  const k = [0, 0, 0];
  const tick = (due: number) => {
    if (sleeps && ch.core.asleep) return;
    ch.now = due;
    ch.tick(due);
    if (sleeps && ch.core.sleepy) ch.core.sleep();
  };
  for (const { speakers, frames, silent } of plan) {
    for (let i = 0; i < frames; i++, f++) {
      ch.now = f * F - 3;
      for (const s of speakers) ch.arrive(s, k[s]!++);
      tick(f * F);
    }
    for (let i = 0; i < silent; i++, f++) tick(f * F);
  }
}

describe('a channel whose clock sleeps', () => {
  it('sends the same packets, stamped with the same frames at the same instants, as one that never sleeps', () => {
    const quiet = SLEEP_AFTER_MS / F + 150; // 3 s: long enough to sleep
    const plan = [
      { speakers: [1], frames: 50, silent: quiet }, // a lone speaker: forwarded as it arrives
      { speakers: [1], frames: 20, silent: quiet },
      { speakers: [1, 2], frames: 50, silent: quiet }, // two: mixed at the tick
      { speakers: [2, 1], frames: 30, silent: 10 },
    ];
    const sleeping = virtualChannel(opus, F, 3);
    const awake = virtualChannel(opus, F, 3);
    run(sleeping, true, plan);
    run(awake, false, plan);
    // It did sleep, three times, and woke at each talkspurt after.
    expect(sleeping.core.stats.sleeps).toBe(3);
    expect(sleeping.core.stats.wakes).toBe(3);
    expect(awake.core.stats.sleeps).toBe(0);
    // Each silence of 250 frame periods: 100 to fall asleep, a few to play out and stop speaking.
    expect(sleeping.core.stats.ticks).toBeLessThan(awake.core.stats.ticks - 3 * 100);
    const key = (s: Sent) => `${s.at} ${s.frame} ${s.onArrival}`;
    expect(awake.got.length).toBeGreaterThan(140);
    expect(sleeping.got.map(key)).toEqual(awake.got.map(key));
    sleeping.close();
    awake.close();
  });
});
