/**
 * The load test's end-to-end delay broken into its parts, without Artillery: `--channels` channels
 * of `--seats` load-test voice users (the engine's own `runVoiceUser`: Talker, pre-encoded frames,
 * ClickMeter, a real VoiceClient each), all in this process, against a server started in this
 * process or given by --target. Per click heard:
 *
 *   delay = capture frame (the click waits for its frame to end) + Opus look-ahead (6.5 ms per
 *           encode: one forwarded, two through the server's mix) + server hold + loopback
 *           + the listener's wait (jitter buffer and playout tick: the jitter buffer's `delayMs`)
 *
 * and the run prints each part's p50 next to the delay's, and what is left over.
 *
 *   node --conditions=source --import tsx loadtest/src/e2e-parts.ts [--channels 1] [--seats 2]
 *     [--speakers 1] [--seconds 10] [--frame-ms 20] [--turn-ms 3600000] [--click-ms 500]
 *     [--warmup 3] [--peak-min-ms N] [--target URL]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createOpus } from '@voice/media';
import { startLoopbackServer } from '../../cluster/bench/loopback-server.js';
import type { MetricSink } from './engine/metrics.js';
import { parseVoiceStep } from './engine/options.js';
import { runVoiceUser } from './engine/voice-user.js';
import { monoMs } from './voice/clock.js';
import { FrameBank } from './voice/frame-bank.js';

const { values: v } = parseArgs({
  options: {
    channels: { type: 'string', default: '1' },
    seats: { type: 'string', default: '2' },
    speakers: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '10' },
    'frame-ms': { type: 'string', default: '20' },
    'turn-ms': { type: 'string', default: '3600000' },
    'click-ms': { type: 'string', default: '500' },
    warmup: { type: 'string', default: '3' },
    // A/B: a relative delay counts as a peak only this far above the target (the default 0 counts
    // every late packet; a large value turns the jitter buffer's peak mode off).
    'peak-min-ms': { type: 'string' },
    target: { type: 'string' },
  },
});

const channels = Number(v.channels);
const step = parseVoiceStep({
  seats: Number(v.seats),
  speakers: Number(v.speakers),
  seconds: Number(v.seconds),
  frameMs: Number(v['frame-ms']),
  // Default: one turn for the whole run, the same members talk throughout (the voice-udp scenario
  // takes turns of 4 s with a click every second: --turn-ms 4000 --click-ms 1000).
  turnMs: Number(v['turn-ms']),
  clickPeriodMs: Number(v['click-ms']),
  warmupSeconds: Number(v.warmup),
  lingerSeconds: 1,
});

/** A sink that keeps every histogram value and counter. */
const hist = new Map<string, number[]>();
const counters = new Map<string, number>();
/** Which second of its turn the last click heard was captured in (turns start on the shared clock). */
let turnSecond = 0;
const sink: MetricSink = {
  counter: (name, value = 1) => void counters.set(name, (counters.get(name) ?? 0) + value),
  histogram: (name, value) => {
    // The meter reports a click as it plays: its capture was `value` ms ago.
    if (name === 'voice.e2e_delay') turnSecond = Math.floor(((monoMs() - value) % step.turnMs) / 1000);
    const key = name.startsWith('voice.e2e') ? `${name}.turn_s${turnSecond}` : null;
    for (const k of key ? [name, key] : [name]) {
      let h = hist.get(k);
      if (!h) hist.set(k, (h = []));
      h.push(value);
    }
  },
  error: (code) => void counters.set(`errors.${code}`, (counters.get(`errors.${code}`) ?? 0) + 1),
};
const q = (name: string, p: number): number => {
  const xs = [...(hist.get(name) ?? [])].sort((a, b) => a - b);
  return xs.length === 0 ? Number.NaN : xs[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;
};

/** The channels' hold (arrival at the server to the packet leaving it), p50 per channel, from /metrics. */
async function holdP50s(url: string): Promise<number[]> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^voice_channel_hold_p50_ms\{[^}]*\} ([0-9.eE+-]+)$/gm)].map((m) => Number(m[1]));
}

const dir = mkdtempSync(join(tmpdir(), 'voice-e2e-parts-'));
const server = v.target ? null : await startLoopbackServer(dir);
const url = v.target ?? server!.url;
const opus = await createOpus();
const bank = FrameBank.build(opus, { frameMs: step.frameMs });
const stop = new AbortController();
const run = Date.now().toString(36).slice(-5);
let holds: number[] = [];
try {
  const users: Promise<void>[] = [];
  for (let c = 0; c < channels; c++) {
    for (let seat = 0; seat < step.seats; seat++) {
      users.push(
        runVoiceUser(
          {
            server: url,
            nickname: `p${run}-${c}-${seat}`,
            channel: `p${run}-${c}`,
            seat,
            step,
            opus,
            bank,
            signal: stop.signal,
            ...(v['peak-min-ms'] ? { jitter: { peakMinMs: Number(v['peak-min-ms']) } } : {}),
          },
          sink,
        ),
      );
      // Seat 0 creates the channel; the others join it.
      if (seat === 0) await new Promise((r) => setTimeout(r, 200));
    }
  }
  // Read the hold during the counting window (the channel's figures go when it empties).
  setTimeout(
    () =>
      void holdP50s(url).then((h) => {
        holds = h;
      }),
    (step.warmupSeconds + step.seconds - 1) * 1000,
  );
  await Promise.all(users);
} finally {
  stop.abort();
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
}

const f = step.frameMs;
// Listeners of a lone speaker get its packets forwarded (one encode); with two or more speakers
// every listener hears a mix the server encoded (two encodes).
const lookAhead = 6.5 * (step.speakers === 1 ? 1 : 2);
const e2e = q('voice.e2e_delay', 0.5);
const wait = q('voice.e2e_part.listener_wait', 0.5);
const sortedHolds = [...holds].sort((a, b) => a - b);
const hold = sortedHolds[Math.floor(sortedHolds.length / 2)] ?? Number.NaN;
const r = (x: number) => x.toFixed(1);
const perClick = (p: number): number => q('voice.e2e_part.before_listener', p);
/** p50 (and count) of a per-click histogram by the second of the turn the click was captured in. */
const byTurnSecond = (name: string): string =>
  [...hist.keys()]
    .filter((k) => k.startsWith(`${name}.turn_s`))
    .sort()
    .map((k) => `${k.slice(k.lastIndexOf('s') + 1)}: ${r(q(k, 0.5))} (${hist.get(k)!.length})`)
    .join(', ');
console.log(
  JSON.stringify({
    channels,
    seats: step.seats,
    speakers: step.speakers,
    frameMs: f,
    clicks: hist.get('voice.e2e_delay')?.length ?? 0,
    clicksExpected: counters.get('voice.clicks_expected') ?? 0,
    e2e_p50: r(e2e),
    e2e_p95: r(q('voice.e2e_delay', 0.95)),
    e2e_min: r(q('voice.e2e_delay', 0)),
    capture_frame: f,
    look_ahead: lookAhead,
    server_hold_p50: r(hold),
    listener_wait_p50: r(wait),
    listener_wait_min_max: `${r(q('voice.e2e_part.listener_wait', 0))}-${r(q('voice.e2e_part.listener_wait', 1))}`,
    listener_target_p50: r(q('voice.e2e_part.listener_target', 0.5)),
    listener_target_max: r(q('voice.e2e_part.listener_target', 1)),
    rest: r(e2e - f - lookAhead - hold - wait),
    before_listener_p50: r(perClick(0.5)),
    before_listener_min_max: `${r(perClick(0))}-${r(perClick(1))}`,
    // Per second of the turn the click was captured in (a new pair of talkers each turn).
    e2e_p50_by_turn_second: byTurnSecond('voice.e2e_delay'),
    before_listener_p50_by_turn_second: byTurnSecond('voice.e2e_part.before_listener'),
    listener_wait_p50_by_turn_second: byTurnSecond('voice.e2e_part.listener_wait'),
    end_target_p50_max: `${r(q('voice.playout.target_delay_ms', 0.5))}/${r(q('voice.playout.target_delay_ms', 1))}`,
    end_delay_p95_p50_max: `${r(q('voice.playout.delay_p95_ms', 0.5))}/${r(q('voice.playout.delay_p95_ms', 1))}`,
    counters: Object.fromEntries([...counters].filter(([k]) => /^(errors|voice\.playout)\./.test(k))),
  }),
);
process.exit(0);
