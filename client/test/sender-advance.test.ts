import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { Sender } from '../src/voice/sender.js';
import { ToneSource, type ClockedAudioSource } from '../src/voice/sources.js';

/**
 * A timing advance (`voice.advance`) on the sender: the send schedule moves, the timestamps do not.
 * Real timers and a real Opus encoder; the packets are caught where the transport would take them.
 */

let opus: OpusFactory;
const senders: Sender[] = [];

beforeAll(async () => {
  opus = await createOpus();
});
afterEach(() => {
  for (const s of senders.splice(0)) s.close();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const FRAME_MS = 20;

interface Sent {
  ts: number;
  at: number;
}

function sender(source: ToneSource | ClockedAudioSource, out: Sent[]): Sender {
  const s = new Sender({
    frameMs: FRAME_MS,
    encoder: opus.createEncoder({ frameSamples: FRAME_MS * 48 }),
    source,
    send: (_flags, ts) => {
      out.push({ ts, at: performance.now() });
      return out.length - 1;
    },
    firstTimestamp: 0,
    muted: () => false,
    sentLog: null,
  });
  senders.push(s);
  return s;
}

describe('Sender.advance', () => {
  it('moves every later send by the shift, keeps the timestamps one frame apart, and wraps at a frame', async () => {
    const sent: Sent[] = [];
    const s = sender(new ToneSource(440, -20), sent);
    s.start();
    await sleep(210);
    const before = sent.length;
    expect(s.advance(7)).toBe(true);
    await sleep(210);
    const middle = sent.length;
    // -32 is -12 modulo a frame: 12 ms earlier than the grid moved by 7, so 5 ms before the old one.
    expect(s.advance(-32)).toBe(true);
    await sleep(210);
    s.close();
    // Timestamps: one frame per packet, no gap and no overlap across both moves.
    sent.forEach((p, i) => expect(p.ts).toBe(i * FRAME_MS * 48));
    // Send times against the first packet's grid: 0, then +7 ms, then -5 ms (medians, since each
    // send runs a little late on timers).
    const offset = (from: number, to: number): number => {
      const t0 = sent[0]!.at;
      const d = sent
        .slice(from, to)
        .map((p, i) => p.at - t0 - (from + i) * FRAME_MS)
        .sort((x, y) => x - y);
      return d[d.length >> 1]!;
    };
    expect(before).toBeGreaterThan(4);
    expect(middle - before).toBeGreaterThan(4);
    expect(sent.length - middle).toBeGreaterThan(4);
    const base = offset(1, before);
    expect(offset(before + 1, middle) - base).toBeGreaterThan(7 - 1.5);
    expect(offset(before + 1, middle) - base).toBeLessThan(7 + 1.5);
    expect(offset(middle + 1, sent.length) - base).toBeGreaterThan(-5 - 1.5);
    expect(offset(middle + 1, sent.length) - base).toBeLessThan(-5 + 1.5);
    expect(s.stats()).toMatchObject({ advances: 2, advancesIgnored: 0 });
    expect(s.stats().advancedMs).toBeCloseTo(7 - 12, 9);
    expect(() => s.advance(Number.NaN)).toThrow(TypeError);
  });

  it('counts, and does not apply, an advance a clocked source cannot make (no shift)', () => {
    // The desktop app's ClockedSource can (clocked-advance.test.ts); a device source written
    // without `shift` keeps its own cut, and the sender says so.
    const sent: Sent[] = [];
    let deliver: ((pcm: Int16Array, at: number, active: boolean) => void) | null = null;
    const device: ClockedAudioSource = {
      name: 'fixed device',
      clocked: true,
      lastCaptureTime: 0,
      attach: (_n, onFrame) => void (deliver = onFrame),
      detach: () => void (deliver = null),
      read: () => false,
    };
    const s = sender(device, sent);
    s.start();
    expect(s.advance(5)).toBe(false);
    const pcm = new Int16Array(960).fill(1000);
    for (let i = 0; i < 2; i++) deliver!(pcm, performance.now(), true);
    expect(sent.map((p) => p.ts)).toEqual([0, 960]);
    expect(s.stats()).toMatchObject({ advances: 0, advancesIgnored: 1 });
  });
});
