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
  it('a member who starts talking while another talks is forwarded from its first packet', () => {
    // Members 0 (the listener) and 1 talk, each hearing the other alone: both forwarded. Member 1's
    // first talkspurt arrives jittery (every third packet 30 ms late), so its jitter buffer on the
    // server grows; after a pause it talks again, evenly, while member 0 still talks. A forwarding
    // run that started at a tick would take its offset from the first frame that grown buffer
    // plays, frames after the arrivals: every packet of the talkspurt would then wait in the
    // buffer, "ahead" of the channel clock, for good. Started on its first packet, none waits.
    const ch = channel(2);
    const arrivals: { at: number; k: number }[] = [];
    for (let f = 0; f < 100; f++) arrivals.push({ at: f * FRAME_MS - 13 + (f % 3 === 0 ? 30 : 0), k: f });
    for (let f = 140; f < 240; f++) arrivals.push({ at: f * FRAME_MS - 7, k: f });
    arrivals.sort((x, y) => x.at - y.at);
    let next = 0;
    let second = -1;
    let deferredBefore = -1;
    for (let f = 0; f < 245; f++) {
      const due = f * FRAME_MS;
      for (; next < arrivals.length && arrivals[next]!.at <= due - 3; next++) {
        ch.now = arrivals[next]!.at;
        if (arrivals[next]!.k === 140) {
          second = ch.got.length;
          deferredBefore = ch.core.stats.forwardDeferred;
        }
        ch.arrive(1, arrivals[next]!.k);
      }
      ch.now = due - 3;
      ch.arrive(0, f);
      ch.now = due;
      ch.tick(due);
    }
    expect(second).toBeGreaterThan(0);
    // The second talkspurt: every one of its 100 frames, once, in order, each as it arrived.
    const talk = ch.got.slice(second);
    expect(talk.length).toBe(100);
    expectContiguous(talk);
    expect(talk.every((s) => s.onArrival)).toBe(true);
    expect(ch.core.stats.forwardDeferred).toBe(deferredBefore);
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
    // Every frame out once, in order, each as it arrived (the stall's included).
    expect(ch.got.length).toBe(100);
    expectContiguous(ch.got);
    expect(ch.got.every((s) => s.onArrival)).toBe(true);
    ch.close();
  });

  it("a speaker's catch-up burst after its stall resumes its forwarding, as it arrives", () => {
    // Members 0 (the listener) and 1 talk, each hearing the other alone. Member 1's sender stalls
    // for 200 ms (its frames 100-109 are not sent on time): its buffer on the server runs dry and
    // its forwarding run breaks off. Then it catches up, frames 100-110 in one burst, and goes on
    // in real time. On its old offset the burst is due and goes out as it arrived; anchored on the
    // burst's first packet, the rest would be ahead of the clock and wait in the buffer for good.
    const ch = channel(2);
    for (let f = 0; f < 200; f++) {
      const due = f * FRAME_MS;
      ch.now = due - 7;
      if (f === 110) for (let k = 100; k <= 110; k++) ch.arrive(1, k);
      else if (f < 100 || f > 110) ch.arrive(1, f);
      ch.now = due - 3;
      ch.arrive(0, f);
      ch.now = due;
      ch.tick(due);
    }
    // Every frame of member 1, once, in order, on one timeline (no repeat, no jump) ...
    expect(ch.got.length).toBe(200);
    expectContiguous(ch.got);
    // ... each as it arrived, the burst included (eleven at once, 7 ms before the tick at 2.2 s).
    expect(ch.got.every((s) => s.onArrival)).toBe(true);
    expect(ch.got.slice(100, 111).map((s) => s.at)).toEqual(Array(11).fill(2193));
    expect(ch.core.stats.forwardDeferred).toBe(0);
    ch.close();
  });

  it('a sender faster than real time is still paced by the tick', () => {
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
    expect(st.forwardDeferred).toBeGreaterThan(100);
    expect(ch.got.length).toBeLessThanOrEqual(100 + 2);
    expectContiguous(ch.got);
    ch.close();
  });

  it('a listener granted streams never gets AUDIO forwarded, even from a packet before its first tick', () => {
    // Both members are granted 4 streams, as the desktop app asks. Member 1's first packet arrives
    // before any tick has routed member 0: a forwarding run started then sent member 0 the speaker
    // as AUDIO while the ticks sent it STREAM packets, and a tick that mixes nothing (everyone
    // streams) never ended that run: the client played both, the tone 6 dB too loud.
    const ch = virtualChannel(opus, FRAME_MS, 2, 4);
    // The virtual clock starts after the real one the speakers' STREAM budgets were created on.
    const t0 = Math.ceil(performance.now() / FRAME_MS + 50) * FRAME_MS;
    for (let f = 0; f < 60; f++) {
      const due = t0 + f * FRAME_MS;
      ch.now = due - 7;
      ch.arrive(1, f);
      ch.now = due;
      ch.tick(due);
    }
    expect(ch.got).toEqual([]);
    // Every packet went as a STREAM packet, the first one too.
    expect(ch.core.stats.streamed).toBe(60);
    ch.close();
  });
});
