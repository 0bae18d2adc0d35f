import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import type { MetricSink } from '../src/engine/metrics.js';
import { parseSignalingStep, parseVoiceStep } from '../src/engine/options.js';
import { runSignalingUser } from '../src/engine/signaling-user.js';
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

describe('load-test signaling user (real server)', () => {
  it('times every request of its cycles and holds its session, pinging', async () => {
    const { sink, counters, histograms, errors } = memorySink();
    const step = parseSignalingStep({ cycles: 2, channels: 1, thinkMs: 10, holdSeconds: 1.2, pingMs: 300 });
    const signal = new AbortController().signal;
    await Promise.all(
      ['a', 'b'].map((n) =>
        runSignalingUser(
          { server: srv.url, nickname: `sig-${n}`, channelPrefix: 'lt-sig', step, signal },
          sink,
        ),
      ),
    );
    expect(errors).toEqual([]);
    expect(counters.get('signaling.cycles')).toBe(4);
    for (const t of [
      'login',
      'hello',
      'channel.list',
      'channel.join',
      'voice.state',
      'ping',
      'channel.leave',
    ]) {
      expect(histograms.get(`signaling.rtt.${t}`)?.length, t).toBeGreaterThan(0);
    }
    // Two users, two cycles each: a mute and an unmute per cycle.
    expect(histograms.get('signaling.rtt.voice.state')).toHaveLength(8);
    // A cycle's ping plus the hold's pings (every 300 ms for 1.2 s: 3 or 4 each).
    expect(histograms.get('signaling.rtt.ping')!.length).toBeGreaterThanOrEqual(2 * (2 + 3));
    for (const ms of histograms.get('signaling.rtt')!) expect(ms).toBeGreaterThan(0);
    // The channel was created once and joined by both: the second joiner set a volume for the first.
    expect(histograms.get('signaling.rtt.channel.create')).toHaveLength(1);
    expect(histograms.get('signaling.rtt.voice.volume')!.length).toBeGreaterThan(0);
  });
});

describe('load-test voice user (real server, real Opus)', () => {
  it('four users in one channel: two talk in turns of 2 s, all hear every click, with a measured delay', async () => {
    const { sink, counters, histograms, errors } = memorySink();
    const step = parseVoiceStep({
      seats: 4,
      speakers: 2,
      turnMs: 2000,
      warmupSeconds: 1,
      seconds: 4,
      lingerSeconds: 1,
    });
    const bank = FrameBank.build(opus, { frameMs: 20 });
    const signal = new AbortController().signal;
    await Promise.all(
      [0, 1, 2, 3].map((seat) =>
        runVoiceUser(
          { server: srv.url, nickname: `vu-${seat}`, channel: 'lt-test', seat, step, opus, bank, signal },
          sink,
        ),
      ),
    );
    expect(errors).toEqual([]);
    expect(counters.get('voice.ready.udp')).toBe(4);
    const expected = counters.get('voice.frames_expected')!;
    expect(expected).toBeGreaterThanOrEqual(4 * 190);
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
