import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { virtualChannel, type Sent } from './helpers/virtual-channel.js';

/**
 * A listener moves from a forwarding run (one speaker's own packets, sent as they arrive) to the
 * mix (a second speaker starts) and back (it stops): its stream must go on frame after frame, no
 * timestamp sent twice and none left out. The server's real ChannelCore on a virtual clock, fed
 * real Opus packets as the ingress feeds it; what member 0 (a silent listener) is sent is kept.
 */
const FRAME_MS = 20;

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

/** Each packet plays at the frame after the one before: none repeated, none left out. */
function expectContiguous(sent: readonly Sent[]): void {
  for (let i = 1; i < sent.length; i++) {
    expect(sent[i]!.frame - sent[i - 1]!.frame, `packet ${i} (frame ${sent[i]!.frame})`).toBe(1);
  }
}

/**
 * Member 1 talks for 200 frames, arriving `phaseA` ms before each tick; member 2 talks over it for
 * frames 50-99 and 130-159, arriving `phaseB` ms before each tick. Member 0 listens.
 */
function run(phaseA: number, phaseB: number): { got: readonly Sent[]; skipped: number } {
  const ch = virtualChannel(opus, FRAME_MS, 3);
  const talksB = (f: number): boolean => (f >= 50 && f < 100) || (f >= 130 && f < 160);
  for (let f = 0; f < 200; f++) {
    const due = f * FRAME_MS;
    const order = phaseA >= phaseB ? [1, 2] : [2, 1]; // the earlier arrival first
    for (const i of order) {
      if (i === 2 && !talksB(f)) continue;
      ch.now = due - (i === 1 ? phaseA : phaseB);
      ch.arrive(i, f);
    }
    ch.now = due;
    ch.tick(due);
  }
  const out = { got: [...ch.got], skipped: ch.core.stats.mixRepeatsSkipped };
  ch.close();
  return out;
}

describe('forward -> mix -> forward transitions', () => {
  for (const [a, b] of [
    [5, 4],
    [4, 5],
    [17, 3],
    [3, 17],
    [11, 11],
  ] as const) {
    it(`one timeline for the listener (speakers ${a} and ${b} ms before the tick)`, () => {
      const { got, skipped } = run(a, b);
      expectContiguous(got);
      // Forwarded while one talks, mixed at the tick while two do: both transitions happened twice.
      const kinds = got.map((s) => (s.onArrival ? 'a' : 't')).join('');
      expect(kinds).toMatch(/^a+t+a+t+a+$/);
      // Every frame of member 1's 200 reached the listener once (its first opens the run).
      expect(got.length).toBe(200);
      // Member 2's first packet (frame 50) comes before the tick that plays media frame 51. When it
      // came before member 1's packet for that frame too, the listener left member 1's run then and
      // gets that tick's mix, with member 2's first frame in it. When it came after, member 1's
      // packet went out first: the mix of that frame is not sent (the listener has the frame), and
      // the mixes start a frame later, at each of the two overlaps.
      const bFirst = b > a;
      const firstMix = got.find((s) => !s.onArrival)!;
      expect(firstMix.frame).toBe(bFirst ? 51 : 52);
      // A mix (the channel's first encode: a lone speaker is forwarded, never encoded), not the
      // first speaker's packet sent at the tick.
      expect(firstMix.encodes).toBe(bFirst ? 1 : 2);
      expect(skipped).toBe(bFirst ? 0 : 2);
    });
  }
});

describe('two speakers starting together while the server buffers wait', () => {
  it("the listener keeps the first one's packets until the mix comes, with no gap", () => {
    // Server buffers that target 3 frames (as a loaded server's grow to): a talkspurt's first packet
    // waits two ticks before its buffer plays. Member 1 starts at frame 0, 5 ms before each tick;
    // member 2 one frame later, 12 ms before each tick: its first packet comes before member 1's
    // second, while neither buffer plays yet. Had the listener left member 1's run for a mix then,
    // it would get nothing until both buffers played (the 4-8 frame gaps the clean-link test saw
    // under load); it keeps the run, and the mix follows the run's newest frame.
    const ch = virtualChannel(opus, FRAME_MS, 3, 1, 3);
    for (let f = 0; f < 60; f++) {
      const due = f * FRAME_MS;
      ch.now = due - 12;
      if (f >= 1) ch.arrive(2, f);
      ch.now = due - 5;
      ch.arrive(1, f);
      ch.now = due;
      ch.tick(due);
    }
    const got = [...ch.got];
    const restored = ch.core.stats.cutsRestored;
    ch.close();
    expectContiguous(got);
    expect(got[0]!.onArrival, 'the run starts on the first packet').toBe(true);
    const kinds = got.map((s) => (s.onArrival ? 'a' : 't')).join('');
    expect(kinds, 'forwarded, then mixed').toMatch(/^a+t+$/);
    expect(restored, 'no cut had to be undone').toBe(0);
  });
});

describe('a forwarded speaker that rebinds (a rekey or a resume)', () => {
  for (const lead of [15, 5]) {
    it(`its listener's stream goes on without a gap or a repeat (packets ${lead} ms before the tick)`, () => {
      // Member 1 talks and member 0 hears it alone (forwarded). At frame 50 member 1's session takes
      // a new binding: its packets come on it from then on. The new binding is the same person, not
      // a second speaker: the run goes on (#takeOverRun); the listener is not cut from it for a mix.
      // Until the new binding is acknowledged the client sends each frame on both (the new one first
      // here), as make-before-break does.
      const ch = virtualChannel(opus, FRAME_MS, 2);
      for (let f = 0; f < 100; f++) {
        if (f === 50) ch.rebind(1);
        const due = f * FRAME_MS;
        ch.now = due - lead;
        ch.arrive(1, f);
        if (f >= 50 && f < 55) {
          ch.now = due - lead + 1;
          ch.arrive(1, f, 'old');
        }
        ch.now = due;
        ch.tick(due);
      }
      const got = [...ch.got];
      ch.close();
      expectContiguous(got);
      expect(got.length).toBe(100);
      expect(
        got.every((s) => s.encodes === 0),
        'never a mix',
      ).toBe(true);
    });
  }
});

describe('a forwarded speaker whose server buffer grew', () => {
  it('never repeats a timestamp to its listener across short overlaps', () => {
    // Member 1's packets come with jitter (every third 30 ms late, so some arrive reordered), and its
    // buffer on the server holds more than a frame: its packets, forwarded as they arrive, lead the
    // tick that plays them. Member 2 says a word of 1-3 frames now and then: the listener moves to
    // the mix and back. Mixes for frames it already has are not sent (a reordered older frame it
    // lacks still is), and the run that starts at the tick after a word goes on after the newest
    // frame the listener has, not from the channel clock behind it.
    const ch = virtualChannel(opus, FRAME_MS, 3);
    // Member 2 hears member 1 at 50 %: always in a mix, so member 1's run is the listener's alone
    // and ends with each word (a new one starts at the tick after it).
    const b = ch.core.members[2]!;
    b.endpoint.session.volumes.set(ch.core.members[1]!.userId, 50);
    ch.core.updateMember(b);
    const arrivals: { at: number; i: number; k: number }[] = [];
    for (let f = 0; f < 300; f++)
      arrivals.push({ at: f * FRAME_MS - 13 + (f % 3 === 0 ? 30 : 0), i: 1, k: f });
    for (let w = 60; w < 300; w += 40)
      for (let f = w; f < w + 1 + (w % 3); f++) arrivals.push({ at: f * FRAME_MS - 6, i: 2, k: f });
    arrivals.sort((x, y) => x.at - y.at);
    let next = 0;
    for (let f = 0; f < 320; f++) {
      const due = f * FRAME_MS;
      for (; next < arrivals.length && arrivals[next]!.at <= due - 1; next++) {
        ch.now = arrivals[next]!.at;
        ch.arrive(arrivals[next]!.i, arrivals[next]!.k);
      }
      ch.now = due;
      ch.tick(due);
    }
    const frames = ch.got.map((s) => s.frame);
    const repeats = frames.filter((x, i) => frames.indexOf(x) !== i);
    expect(repeats, 'media frames the listener was sent twice').toEqual([]);
    // Reordered arrivals go out reordered (as they arrive), but no media frame is left out.
    const sorted = [...frames].sort((a, b) => a - b);
    expect(sorted.at(-1)! - sorted[0]! + 1, 'media frames from first to last').toBe(frames.length);
    ch.close();
  });
});
