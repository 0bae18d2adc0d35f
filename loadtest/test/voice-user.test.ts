import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import type { MetricSink } from '../src/engine/metrics.js';
import { parseVoiceStep } from '../src/engine/options.js';
import { runVoiceUser } from '../src/engine/voice-user.js';
import { FrameBank } from '../src/voice/frame-bank.js';

/** A sink that keeps everything, as Artillery would. */
function memorySink() {
  const counters = new Map<string, number>();
  const histograms = new Map<string, number[]>();
  const errors: string[] = [];
  const sink: MetricSink = {
    counter: (n, v = 1) => void counters.set(n, (counters.get(n) ?? 0) + v),
    histogram: (n, v) => void (histograms.get(n) ?? histograms.set(n, []).get(n)!).push(v),
    error: (c) => void errors.push(c),
  };
  return { sink, counters, histograms, errors };
}

let srv: TestServer;
let opus: OpusFactory;
beforeAll(async () => {
  srv = await startTestServer();
  opus = await createOpus();
});
afterAll(async () => {
  await srv.stop();
});

describe('load-test voice user (real server, real Opus)', () => {
  it('three users in one channel: two talk, all hear every click, with a measured delay', async () => {
    const { sink, counters, histograms, errors } = memorySink();
    const step = parseVoiceStep({
      seats: 3,
      speakers: 2,
      turnMs: 60_000,
      warmupSeconds: 1,
      seconds: 4,
      lingerSeconds: 1,
    });
    const bank = FrameBank.build(opus, { frameMs: 20 });
    const signal = new AbortController().signal;
    await Promise.all(
      [0, 1, 2].map((seat) =>
        runVoiceUser(
          { server: srv.url, nickname: `vu-${seat}`, channel: 'lt-test', seat, step, opus, bank, signal },
          sink,
        ),
      ),
    );
    expect(errors).toEqual([]);
    expect(counters.get('voice.ready.udp')).toBe(3);
    const expected = counters.get('voice.frames_expected')!;
    expect(expected).toBeGreaterThanOrEqual(3 * 190);
    expect(counters.get('voice.frames_received')!).toBeGreaterThanOrEqual(0.9 * expected);
    expect(counters.get('voice.clicks_heard')!).toBeGreaterThanOrEqual(
      0.8 * counters.get('voice.clicks_expected')!,
    );
    const delays = histograms.get('voice.e2e_delay')!;
    // Capture to playout on loopback: at least a frame plus the two jitter buffers' first frame.
    for (const d of delays) {
      expect(d).toBeGreaterThan(20);
      expect(d).toBeLessThan(400);
    }
  });
});
