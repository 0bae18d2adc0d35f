import { describe, expect, it } from 'vitest';
import { sine, toneDbfs } from '@voice/media';
import { FrameFifo, PlaybackChain, type StreamFormat } from '@voice/client';

/**
 * Ten minutes of simulated time: the network delivers one 10 ms frame every 10 ms of network time;
 * the sound card asks for 10 ms of audio every 10 ms of *its* time, which runs 0.1 % fast or slow.
 * Events are replayed in time order, so the test runs in a few seconds.
 */
interface DriftRun {
  underrunsAfterSettling: number;
  maxLevelAfterSettling: number;
  minLevelAfterSettling: number;
  overflow: number;
  driftPpm: number;
  toneDb: number;
}

function simulate(deviceError: number, deviceRate: number, compensate: boolean, seconds = 600): DriftRun {
  const device: StreamFormat = { sampleRate: deviceRate, channels: 2, format: 'i16' };
  const fifo = new FrameFifo({ capacity: 48_000, target: 960 });
  const chain = new PlaybackChain({ device, frameSamples: 480, source: fifo, driftCompensation: compensate });
  const tone = new Int16Array(sine(48_000, 1000, -20).map((v) => Math.round(v * 32767)));
  const devFrames = deviceRate / 100;
  const out = new Uint8Array(devFrames * 4);
  const lastSecond = new Int16Array(deviceRate);
  const settle = 120; // s: the loop settles in about a minute
  let netK = 0;
  let devK = 0;
  let underrunsAtSettle = -1;
  let maxLevel = 0;
  let minLevel = Infinity;
  fifo.push(tone.subarray(0, 960)); // start at the target depth, as a jitter buffer would
  const end = seconds * 1000;
  for (;;) {
    const tNet = (netK + 1) * 10;
    const tDev = ((devK + 1) * 10) / (1 + deviceError);
    if (Math.min(tNet, tDev) > end) break;
    if (tNet <= tDev) {
      const at = (netK % 100) * 480;
      fifo.push(tone.subarray(at, at + 480));
      netK++;
    } else {
      chain.render(out);
      devK++;
      if (tDev >= settle * 1000) {
        if (underrunsAtSettle < 0) underrunsAtSettle = fifo.underruns;
        maxLevel = Math.max(maxLevel, fifo.buffered);
        minLevel = Math.min(minLevel, fifo.buffered);
      }
      if (tDev > end - 1000) {
        const v = new DataView(out.buffer);
        const base = ((devK - 1) % 100) * devFrames;
        for (let i = 0; i < devFrames; i++) lastSecond[base + i] = v.getInt16(i * 4, true);
      }
    }
  }
  return {
    underrunsAfterSettling: fifo.underruns - underrunsAtSettle,
    maxLevelAfterSettling: maxLevel,
    minLevelAfterSettling: minLevel,
    overflow: fifo.overflowSamples,
    driftPpm: chain.drift?.driftPpm ?? 0,
    // 100 ms window: 10 Hz wide, so the 1 Hz pitch shift of a 0.1 % clock difference does not matter.
    toneDb: toneDbfs(lastSecond, 1000, deviceRate, 0, deviceRate / 10),
  };
}

describe('drift compensation (10 minutes of simulated time)', () => {
  for (const [error, rate] of [
    [0.001, 48_000],
    [-0.001, 48_000],
    [0.001, 44_100],
  ] as const) {
    it(`device clock ${error > 0 ? 'fast' : 'slow'} by 0.1 % at ${rate} Hz: no underruns, bounded buffer, drift measured`, () => {
      const r = simulate(error, rate, true);
      expect(r.underrunsAfterSettling).toBe(0);
      expect(r.overflow).toBe(0);
      // Held near the 960-sample target: never more than two frames above it.
      expect(r.maxLevelAfterSettling).toBeLessThanOrEqual(960 + 960);
      // Measured: the device consumes 1/(1 + error) of the network's rate.
      const ppm = (1 / (1 + error) - 1) * 1e6;
      expect(r.driftPpm).toBeGreaterThan(ppm - 20);
      expect(r.driftPpm).toBeLessThan(ppm + 20);
      // The audio is intact: the tone at its level.
      expect(r.toneDb).toBeGreaterThan(-20.5);
      expect(r.toneDb).toBeLessThan(-19.5);
    });
  }

  it('without compensation the same clocks starve the device (fast) or fill the buffer (slow)', () => {
    const fast = simulate(0.001, 48_000, false, 180);
    expect(fast.underrunsAfterSettling).toBeGreaterThan(5); // one 10 ms hole every 10 s
    const slow = simulate(-0.001, 48_000, false, 180);
    expect(slow.maxLevelAfterSettling).toBeGreaterThan(960 + 48 * 60); // +48 samples per second
  });
});
