import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VoiceFlags, decodeRed } from '@voice/protocol';
import { createOpus, sineInt16, type OpusFactory } from '@voice/media';
import { RED_HOLD_MS, Sender, type Redundancy } from '../src/voice/sender.js';
import { ClockedSource } from '../src/voice/sources.js';

/**
 * The sender's redundancy (RED, protocol README 9.1), driven frame by frame by a device-clocked
 * source: which packets carry the previous frame, that the copy is exactly the previous packet's
 * Opus bytes, and when 'auto' turns it on and off. Real Opus encoder; packets caught where the
 * transport would take them.
 */

const FRAME = 960;
let opus: OpusFactory;
const senders: Sender[] = [];
beforeAll(async () => {
  opus = await createOpus();
});
afterEach(() => {
  for (const s of senders.splice(0)) s.close();
});

interface Sent {
  flags: number;
  ts: number;
  bytes: Uint8Array;
}

function rig(redundancy: Redundancy) {
  const device = new ClockedSource();
  const sent: Sent[] = [];
  const s = new Sender({
    frameMs: 20,
    encoder: opus.createEncoder({ frameSamples: FRAME }),
    source: device,
    send: (flags, ts, payload, len) => {
      sent.push({ flags, ts, bytes: payload.slice(0, len) });
      return sent.length - 1;
    },
    firstTimestamp: 0,
    muted: () => false,
    sentLog: null,
    redundancy,
  });
  senders.push(s);
  s.start();
  const tone = sineInt16(FRAME, 440, -20);
  /** One frame from the device: sound, or a pause. */
  const frame = (active = true) => device.deliver(tone, performance.now(), active);
  return { s, sent, frame };
}

/** The primary Opus bytes of a sent packet (the whole payload unless it is RED). */
const primary = (p: Sent): Uint8Array =>
  (p.flags & VoiceFlags.RED) !== 0 ? decodeRed(p.bytes)!.primary : p.bytes;

describe('Sender redundancy (RED)', () => {
  it("'on': every packet but a talkspurt's first carries the previous packet's exact bytes; a pause breaks the chain", () => {
    const { s, sent, frame } = rig('on');
    for (let i = 0; i < 5; i++) frame();
    frame(false); // a pause: the next packet starts a talkspurt
    for (let i = 0; i < 3; i++) frame();
    expect(sent.map((p) => p.flags)).toEqual([
      VoiceFlags.MARKER,
      VoiceFlags.RED,
      VoiceFlags.RED,
      VoiceFlags.RED,
      VoiceFlags.RED,
      VoiceFlags.MARKER,
      VoiceFlags.RED,
      VoiceFlags.RED,
    ]);
    for (let i = 1; i < sent.length; i++) {
      if ((sent[i]!.flags & VoiceFlags.RED) === 0) continue;
      const d = decodeRed(sent[i]!.bytes)!;
      expect(sent[i]!.ts - sent[i - 1]!.ts).toBe(FRAME);
      expect([...d.red]).toEqual([...primary(sent[i - 1]!)]);
    }
    expect(s.stats().redSent).toBe(6);
  });

  it("'off' never adds it; 'auto' adds it after an ACK reports loss over 1 %, until the hold ends", () => {
    const off = rig('off');
    off.s.noteUpstreamLoss(0.5, performance.now());
    for (let i = 0; i < 4; i++) off.frame();
    expect(off.sent.every((p) => p.flags !== VoiceFlags.RED && (p.flags & VoiceFlags.RED) === 0)).toBe(true);

    const auto = rig('auto');
    for (let i = 0; i < 3; i++) auto.frame();
    // A clean interval (1 %: not over the threshold) changes nothing.
    auto.s.noteUpstreamLoss(0.01, performance.now());
    for (let i = 0; i < 3; i++) auto.frame();
    expect(auto.s.stats().redSent).toBe(0);
    auto.s.noteUpstreamLoss(0.03, performance.now());
    for (let i = 0; i < 3; i++) auto.frame();
    expect(auto.s.stats().redSent).toBe(3);
    expect(auto.s.redundant(performance.now() + RED_HOLD_MS - 100)).toBe(true);
    // A later clean report does not turn it off: only the hold running out does.
    auto.s.noteUpstreamLoss(0, performance.now());
    expect(auto.s.redundant(performance.now() + RED_HOLD_MS - 100)).toBe(true);
    expect(auto.s.redundant(performance.now() + RED_HOLD_MS + 100)).toBe(false);
  });
});
