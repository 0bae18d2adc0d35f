import { describe, expect, it } from 'vitest';
import type { VoiceMember } from '../src/voice/member.js';
import { routeStreams } from '../src/voice/stream-routing.js';

/** Only what the routing reads of a member. */
function member(
  userId: string,
  o: { streams?: number; deaf?: boolean; transport?: 'udp' | 'none'; gains?: Record<string, number> } = {},
): VoiceMember {
  return {
    userId,
    streams: o.streams ?? 1,
    deaf: o.deaf ?? false,
    endpoint: { transport: o.transport ?? 'udp' },
    gains: o.gains ? new Map(Object.entries(o.gains)) : undefined,
    streamMode: false,
    inMix: false,
  } as unknown as VoiceMember;
}

describe('routeStreams (protocol README 8.8)', () => {
  it('streams a listener while it hears at most its grant at volume 100; mixes beyond', () => {
    const [a, b, c] = [member('a'), member('b'), member('c')];
    const two = member('l2', { streams: 2 });
    const three = member('l3', { streams: 3 });
    const members = [a, b, c, two, three];
    // Three senders: over the grant of 2, within the grant of 3.
    expect(routeStreams(members, [a, b, c], 3)).toBe(true);
    expect(two.streamMode).toBe(false);
    expect(three.streamMode).toBe(true);
    // The senders themselves, granted 1, get the mix (each hears the two others).
    expect(a.streamMode).toBe(false);
    expect([a, b, c].map((s) => s.inMix)).toEqual([true, true, true]);
    // Two senders: both listeners stream; a sender does not count itself.
    const granted = [member('a', { streams: 2 }), member('b', { streams: 2 })];
    expect(routeStreams([...granted, two, three], granted, 2)).toBe(false);
    expect([...granted, two, three].map((m) => m.streamMode)).toEqual([true, true, true, true]);
    expect(granted.map((s) => s.inMix)).toEqual([false, false]);
  });

  it('a volume set for a speaker it hears gives the mix; 0 for one it does not need keeps it out of the mix', () => {
    const [a, b] = [member('a', { streams: 4 }), member('b', { streams: 4 })];
    const half = member('l', { streams: 4, gains: { a: 0.5 } });
    expect(routeStreams([a, b, half], [a, b], 2)).toBe(true);
    expect(half.streamMode).toBe(false);
    expect([a.inMix, b.inMix]).toEqual([true, true]);
    const silenced = member('l', { streams: 4, gains: { a: 0 } });
    expect(routeStreams([a, b, silenced], [a, b], 2)).toBe(true);
    expect(silenced.streamMode).toBe(false);
    // Its mix holds b only: a, whom nobody hears in a mix, is not decoded.
    expect([a.inMix, b.inMix]).toEqual([false, true]);
  });

  it('a deafened listener, or one without a transport, neither streams nor needs a mix', () => {
    const [a, b] = [member('a', { streams: 4 }), member('b', { streams: 4 })];
    const deaf = member('d', { deaf: true });
    const gone = member('g', { transport: 'none' });
    expect(routeStreams([a, b, deaf, gone], [a, b], 2)).toBe(false);
    expect([deaf.streamMode, gone.streamMode]).toEqual([false, false]);
    expect([a.inMix, b.inMix]).toEqual([false, false]);
  });

  it('with nobody sending every granted listener streams (a first packet is forwarded at once)', () => {
    const l = member('l', { streams: 2 });
    const old = member('o');
    expect(routeStreams([l, old], [], 0)).toBe(false);
    expect(l.streamMode).toBe(true);
    expect(old.streamMode).toBe(false);
  });
});
