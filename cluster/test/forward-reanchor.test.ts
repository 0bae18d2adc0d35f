import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { virtualChannel, type Sent } from './helpers/virtual-channel.js';

/**
 * A forwarded stream is "every packet in is a packet out, as it arrives", whatever the server's
 * clock did. The server's real ChannelCore on a virtual clock (deterministic), fed as the ingress
 * feeds it with real Opus packets of a tone; what one listener is sent is opened with its key and
 * kept with the virtual time it left at.
 */
const FRAME_MS = 20;

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

const channel = (members: number) => virtualChannel(opus, FRAME_MS, members);

/** Media frames sent to the listener are consecutive: none repeated, none left out. */
function expectContiguous(sent: readonly Sent[]): void {
  for (let i = 1; i < sent.length; i++) expect(sent[i]!.frame - sent[i - 1]!.frame, `packet ${i}`).toBe(1);
}

describe('forwarding runs against the channel clock', () => {
  it('a run anchored to a grown jitter buffer is re-anchored: later packets go out as they arrive', () => {
    // Member 0 (the listener) and 1 talk; 1 hears 0 alone and 0 hears 1 alone: both forwarded.
    // Member 1's first five frames reach the server at once (its sender was held up), so its
    // forwarding run starts at a tick against the oldest of five buffered frames: every later
    // packet of it arrives four frames later in its timeline than the next one due.
    const ch = channel(2);
    const K1 = 6; // member 1's frame k was due at k + K1 frame periods, 7 ms before the tick
    for (let f = 0; f < 150; f++) {
      const due = f * FRAME_MS;
      ch.now = due - 13;
      ch.arrive(0, f);
      if (f === K1 + 4) for (let k = 0; k <= 4; k++) ch.arrive(1, k);
      else if (f > K1 + 4) ch.arrive(1, f - K1);
      ch.now = due;
      ch.tick(due);
    }
    const st = ch.core.stats;
    // What the listener got: every frame that arrived but those four, once, with consecutive
    // timestamps (none repeated, no gap to conceal) ...
    const got = ch.got;
    expect(got.length).toBe(144 - 4);
    expectContiguous(got);
    // ... and from frame 10 on, each one in the call of its own arrival, not at a tick.
    expect(got.slice(6).every((s) => s.onArrival)).toBe(true);
    expect(got.slice(0, 6).some((s) => s.onArrival)).toBe(false);
    // Member 1's frame 0 went out at the tick that started the run; frames 1-4 then waited in its
    // buffer, and so did each newer one, four frames behind (deferred): frames 5-9 for 100 ms,
    // until frame 10 re-anchored the run right after the newest frame sent (5, at a tick). The
    // four the buffer had added in delay (6-9) were skipped, once; none was deferred after that.
    expect(st.forwardReanchors).toBe(1);
    expect(st.forwardSkipped).toBe(4);
    expect(st.forwardDeferred).toBe(5);
    ch.close();
  });

  it('packets that arrive while a tick is late are due by the clock: forwarded as they arrive', () => {
    // A lone speaker (member 1) to a silent listener: forwarded as it arrives from its first packet.
    // Then the channel's ticks due at 1000-1080 ms do not run (the process was busy elsewhere); the
    // tick due at 1100 runs on time with the five periods made up. The speaker's packets kept
    // arriving meanwhile: each is due by the clock, however stale the last tick's media frame is.
    const ch = channel(2);
    for (let f = 0; f < 100; f++) {
      const due = f * FRAME_MS;
      ch.now = due - 13;
      ch.arrive(1, f);
      ch.now = due;
      if (due < 1000 || due > 1080) ch.tick(due, due === 1100 ? 6 : 1);
    }
    const st = ch.core.stats;
    expect(st.forwardDeferred).toBe(0);
    expect(st.forwardReanchors).toBe(0);
    // Every frame out once, in order, each as it arrived (the stall's included).
    expect(ch.got.length).toBe(100);
    expectContiguous(ch.got);
    expect(ch.got.every((s) => s.onArrival)).toBe(true);
    ch.close();
  });

  it('a sender faster than real time is still paced by the tick, never re-anchored', () => {
    // Member 1 sends two frames per period (a flood): its packets run ahead of the channel clock
    // further every period, so they wait in its buffer and the listener gets one frame a period.
    const ch = channel(2);
    let k = 0;
    for (let f = 0; f < 100; f++) {
      const due = f * FRAME_MS;
      ch.now = due - 13;
      ch.arrive(1, k++);
      ch.arrive(1, k++);
      ch.now = due;
      ch.tick(due);
    }
    const st = ch.core.stats;
    expect(st.forwardReanchors).toBe(0);
    expect(st.forwardDeferred).toBeGreaterThan(100);
    expect(ch.got.length).toBeLessThanOrEqual(100 + 2);
    expectContiguous(ch.got);
    ch.close();
  });
});
