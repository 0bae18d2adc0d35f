import { beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { switchClicks } from '../bench/switch-clicks.js';

/**
 * A listener's stream changes encoder when the set of speakers changes: a forwarded speaker, the
 * shared mix, its own mix-minus. Each new encoder is primed with the frame the listener's decoder
 * last played, so the switch overlap-adds cleanly. The server's real ChannelCore on a virtual clock
 * (deterministic), the listener's packets through the product's FramePlayout; tones checked by
 * Goertzel, clicks as broadband energy (the output's second difference) near each switch against
 * the rest of the stream.
 */
let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

describe('stream switches at the listener', () => {
  for (const scenario of ['forward', 'own', 'turns'] as const) {
    for (const frameMs of [20, 10] as const) {
      it(`${scenario}, ${frameMs} ms frames: no click where the listener's stream changes encoder`, () => {
        const r = switchClicks(opus, frameMs, scenario);
        expect(r.switches).toBe(5);
        // The listener heard what it should, at level: A and B while they speak, never itself.
        expect(Math.abs(r.aDb + 20)).toBeLessThan(1.5);
        expect(Math.abs(r.bDb + 20)).toBeLessThan(1.5);
        if (scenario === 'own') expect(r.ownDb).toBeLessThan(-40);
        // The stream away from switches is clean (Opus's own floor, about -62 dB here) ...
        expect(r.steadyDb).toBeLessThan(-55);
        // ... and the switches are too: without priming they reach -32 to -50 dB (12-33 dB over
        // the floor); primed, within 7 dB of it (turns: from one client's encoder to another's).
        expect(r.primes).toBeGreaterThan(0);
        expect(r.switchDb).toBeLessThan(r.steadyDb + 8);
      });
    }
  }
});
