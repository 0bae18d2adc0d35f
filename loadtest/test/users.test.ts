import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import type { MetricSink } from '../src/engine/metrics.js';
import { parseSignalingStep, parseVoiceStep } from '../src/engine/options.js';
import { runSignalingUser } from '../src/engine/signaling-user.js';
import { ChannelBook } from '../src/engine/session.js';
import { runLeanUser } from '../src/engine/lean-user.js';
import { parseLeanStep } from '../src/engine/options.js';
import { LeanPlane } from '../src/voice/lean-plane.js';
import { runSwarm } from '../src/swarm.js';
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
  // Load-test users log in from one address: raise the per-address limits, as the runner does.
  srv = await startTestServer({
    limits: {
      loginsPerMinute: 10_000,
      loginBurst: 10_000,
      connectionsPerAddress: 10_000,
      messagesPerSecond: 10_000,
      messageBurst: 10_000,
    },
  });
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
    // Log-in and hello are set-up, apart from the session's round trips.
    expect(histograms.get('signaling.setup')).toHaveLength(4);
    expect(histograms.get('signaling.rtt')!.length).toBe(
      [...histograms.entries()]
        .filter(
          ([k]) =>
            k.startsWith('signaling.rtt.') && k !== 'signaling.rtt.login' && k !== 'signaling.rtt.hello',
        )
        .reduce((a, [, v]) => a + v.length, 0),
    );
    // The channel was created once and joined by both: the second joiner set a volume for the first.
    expect(histograms.get('signaling.rtt.channel.create')).toHaveLength(1);
    expect(histograms.get('signaling.rtt.voice.volume')!.length).toBeGreaterThan(0);
  });
});

describe('ChannelBook', () => {
  it('finds a channel another user created on a later page of channel.list', async () => {
    const admin = await srv.user('lt-admin', { admin: true });
    const ids: string[] = [];
    for (let i = 0; i < 120; i++)
      ids.push((await admin.ws.request('channel.create', { name: `pg-${i}` })).channel.id);
    const b = await srv.user('lt-pager');
    const { sink, counters, histograms } = memorySink();
    const book = new ChannelBook();
    const first = (await b.ws.request('channel.list', {})).channels;
    book.learn(first);
    const seen = new Set(first.map((c) => c.name));
    const far = ids.findIndex((_, i) => !seen.has(`pg-${i}`));
    const near = ids.findIndex((_, i) => seen.has(`pg-${i}`));
    expect(far).toBeGreaterThanOrEqual(0);
    expect(await book.idOf(b.ws, `pg-${far}`, sink)).toBe(ids[far]);
    // Not on the first page: the create was refused (counted, not timed), then the list paged.
    expect(counters.get('signaling.channel_create_raced')).toBe(1);
    expect(histograms.get('signaling.rtt.channel.create')).toBeUndefined();
    expect(histograms.get('signaling.rtt.channel.list')!.length).toBeGreaterThanOrEqual(1);
    // Known from the first page: no request at all.
    const lists = histograms.get('signaling.rtt.channel.list')!.length;
    expect(await book.idOf(b.ws, `pg-${near}`, sink)).toBe(ids[near]);
    expect(counters.get('signaling.channel_create_raced')).toBe(1);
    expect(histograms.get('signaling.rtt.channel.list')).toHaveLength(lists);
  });
});

/** Four voice users in one channel, two talking in turns of 2 s, 4 s counted. */
async function fourVoiceUsers(
  extra: Record<string, unknown>,
  prefix: string,
  channel: string,
  sink: Parameters<typeof runVoiceUser>[1],
): Promise<void> {
  const step = parseVoiceStep({
    seats: 4,
    speakers: 2,
    turnMs: 2000,
    warmupSeconds: 1,
    seconds: 4,
    lingerSeconds: 1,
    ...extra,
  });
  const bank = FrameBank.build(opus, { frameMs: 20 });
  const signal = new AbortController().signal;
  await Promise.all(
    [0, 1, 2, 3].map((seat) =>
      runVoiceUser(
        { server: srv.url, nickname: `${prefix}-${seat}`, channel, seat, step, opus, bank, signal },
        sink,
      ),
    ),
  );
}

describe('load-test voice user (real server, real Opus)', () => {
  it('four users in one channel: two talk in turns of 2 s, all hear every click, with a measured delay', async () => {
    const { sink, counters, histograms, errors } = memorySink();
    await fourVoiceUsers({}, 'vu', 'lt-test', sink);
    expect(errors).toEqual([]);
    expect(counters.get('voice.ready.udp')).toBe(4);
    const expected = counters.get('voice.frames_expected')!;
    expect(expected).toBeGreaterThanOrEqual(4 * 190);
    // Server and users share this test's process beside the rest of the suite: the bounds say the
    // path works and is measured (a broken one gives 0), not how fast it is; the smoke runs in
    // .ci/run (their own processes, nothing beside them) hold the performance thresholds.
    expect(counters.get('voice.frames_received')!).toBeGreaterThanOrEqual(0.5 * expected);
    expect(counters.get('voice.clicks_heard')!).toBeGreaterThanOrEqual(
      0.5 * counters.get('voice.clicks_expected')!,
    );
    const delays = histograms.get('voice.e2e_delay')!;
    // Capture to playout on loopback: at least a frame plus the two jitter buffers' first frame.
    for (const d of delays) {
      expect(d).toBeGreaterThan(20);
      expect(d).toBeLessThan(900);
    }
    // Each click's listener part (its frame's wait in the jitter buffer beyond the earliest
    // arrival) is recorded with it; what is left is the capture frame, the Opus look-ahead (6.5 ms
    // per encode) and the transit, so at least 20 + 6.5 ms (less half a millisecond of onset).
    const waits = histograms.get('voice.e2e_part.listener_wait')!;
    expect(waits).toHaveLength(delays.length);
    const rest = histograms.get('voice.e2e_part.before_listener')!;
    expect(rest).toEqual(delays.map((d, i) => d - waits[i]!));
    expect([...rest].sort((a, b) => a - b)[Math.floor(rest.length / 2)]).toBeGreaterThan(26);
    expect(histograms.get('voice.e2e_part.listener_target')).toHaveLength(delays.length);
    expect(histograms.get('voice.playout.target_delay_ms')).toHaveLength(4);
  });
});

describe('load-test voice user with streams (real server, real Opus)', () => {
  it('four users asking for streams count each talker’s frames: a talker hears one stream, the others two', async () => {
    const { sink, counters, errors } = memorySink();
    expect(parseVoiceStep({ streams: 4 }).streams).toBe(4);
    expect(() => parseVoiceStep({ streams: 9 })).toThrow(TypeError);
    await fourVoiceUsers({ streams: 4 }, 'vs', 'lt-streams', sink);
    expect(errors).toEqual([]);
    const expected = counters.get('voice.frames_expected')!;
    const sent = counters.get('voice.audio_sent')!;
    // 4 users x 200 periods x 2 talkers, less the talkers' own periods (what they sent).
    expect(expected + sent).toBeGreaterThanOrEqual(4 * 190 * 2);
    expect(sent).toBeGreaterThanOrEqual(2 * 190);
    // The talkers' STREAM packets are what is received: about the expected count, not half of it
    // (the mix's one frame per period) nor twice it.
    const received = counters.get('voice.frames_received')!;
    expect(received).toBeGreaterThanOrEqual(0.5 * expected);
    expect(received).toBeLessThanOrEqual(1.1 * expected);
    expect(counters.get('voice.clicks_heard')!).toBeGreaterThanOrEqual(
      0.5 * counters.get('voice.clicks_expected')!,
    );
  });
});

describe('lean users and the swarm (capacity runs, real server)', () => {
  it('four lean users in one channel: the two talkers are mixed for everyone, one mix per frame', async () => {
    const { sink, counters, errors } = memorySink();
    const step = parseLeanStep({ seats: 4, speakers: 2, warmupSeconds: 0.5, seconds: 2, lingerSeconds: 0.5 });
    const plane = new LeanPlane({ opus });
    const signal = new AbortController().signal;
    await Promise.all(
      [0, 1, 2, 3].map((seat) =>
        runLeanUser(
          { server: srv.url, nickname: `lean-${seat}`, channel: 'lt-lean', seat, step, plane, signal },
          sink,
        ),
      ),
    );
    expect(errors).toEqual([]);
    // Everyone left: the plane stopped its clock by itself.
    expect(plane.size).toBe(0);
    const expected = counters.get('voice.lean_expected')!;
    expect(expected).toBeGreaterThanOrEqual(4 * 90);
    expect(counters.get('voice.lean_received')!).toBeGreaterThanOrEqual(0.9 * expected);
    // Not more than one packet per frame each (plus heartbeat acks and the window's edges).
    expect(counters.get('voice.lean_received')!).toBeLessThanOrEqual(1.1 * expected);
  });

  it('runSwarm keeps the API the capacity benchmark uses', async () => {
    const lines: string[] = [];
    const r = await runSwarm({
      server: srv.url,
      channels: 2,
      members: 3,
      speakers: 2,
      seconds: 2,
      prefix: 'swt',
      log: (l) => lines.push(l),
    });
    expect(lines).toEqual(['channel 1/2 ready', 'channel 2/2 ready', 'done sending']);
    expect(r.members).toBe(6);
    // One HELLO each, then the talkers' frames (the swarm's clock skips ticks when the process is
    // late, so how many depends on the load; delivery is counted against the frames really sent).
    expect(r.packetsSent).toBeGreaterThan(6 + 4 * 10);
    expect(r.deliveryRatio).toBeGreaterThan(0.9);
    expect(r.deliveryRatio).toBeLessThan(1.15);
  });
});
