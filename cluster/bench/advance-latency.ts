/**
 * End to end with two speakers, with and without the timing advance (`clock.advance`): two bots
 * click every 500 ms (a quarter second apart), their timer-driven senders cutting 20 ms frames half
 * a frame apart, and a third bot hears the server's mix. Per run and per setting: each speaker's
 * click delay p50 (from the click's capture to its onset played by the listener) and the server's
 * hold p50 of its mixed frames, after 7 s for the phase rounds to settle.
 *
 * With `--streams`, a third setting: the listener asks for 4 streams (protocol README 8.8) and mixes
 * the two speakers itself, as each packet arrives (no tick, no re-encode).
 *
 * `--mix-on-ready on` runs a tick once the frames it mixes are in (config `clock.mixOnReady`; default
 * off, as the server ships: every tick at its phase).
 *
 *   node --conditions=source --import tsx cluster/bench/advance-latency.ts [--runs 3] [--seconds 6] [--streams]
 *     [--mix-on-ready on|off]
 */
import { parseArgs } from 'node:util';
import { createOpus, type OpusFactory } from '@voice/media';
import { ClickSource, VoiceClient } from '../../client/src/index.js';
import { clickDelays, quantile } from '../../test-support/audio.js';
import { startTestServer } from '../../test-support/server.js';

const FRAME_MS = 20;
const PERIOD_MS = 500;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Figures {
  clickP50: number[];
  missed: number;
  holdP50: number[];
  advances: number;
  earlyTicks: number;
}

async function once(
  opus: OpusFactory,
  advance: boolean,
  seconds: number,
  streams = 1,
  mixOnReady = false,
): Promise<Figures> {
  const srv = await startTestServer({ clock: { advance, mixOnReady } });
  const bots: VoiceClient[] = [];
  try {
    for (const [i, nickname] of ['lat-a', 'lat-b', 'lat-ear'].entries()) {
      bots.push(
        await VoiceClient.connect({
          server: srv.url,
          nickname,
          opus,
          channel: 'Latency',
          ...(i === 2 ? { streams } : {}),
          ...(i === 0 ? { create: true, voice: { frameMs: FRAME_MS } } : {}),
        }),
      );
    }
    await Promise.all(bots.map((b) => b.waitReady(3000)));
    const [a, b, ear] = bots as [VoiceClient, VoiceClient, VoiceClient];
    const clicks = [
      new ClickSource({ atMs: 600, periodMs: PERIOD_MS }),
      new ClickSource({ atMs: 600 + PERIOD_MS / 2, periodMs: PERIOD_MS }),
    ];
    const t0 = performance.now();
    a.startVoice(clicks[0]);
    while (performance.now() < t0 + FRAME_MS / 2) {
      // half a frame apart
    }
    b.startVoice(clicks[1]);
    await sleep(7_000);
    const core = srv.voice.channelStats()[0]!.core;
    const members = [a, b].map((bot) => core.members.find((m) => m.userId === bot.user.id)!);
    for (const m of members) m.tickHoldMs.reset();
    const from = clicks.map((c) => c.position);
    ear.clearRecording();
    await sleep(seconds * 1000);
    const holdP50 = members.map((m) => m.tickHoldMs.percentile(50));
    const upTo = clicks.map((c) => c.position - 48 * 300);
    await sleep(PERIOD_MS);
    let missed = 0;
    const clickP50 = [a, b].map((bot, i) => {
      const own = clicks[i]!.clickSamples(upTo[i]!).filter((s) => s >= from[i]!);
      const r = clickDelays(own, bot.sentLog, FRAME_MS * 48, ear.recording(), PERIOD_MS / 2 - 10);
      missed += r.missed.length;
      return r.delays.length > 0 ? quantile(r.delays, 0.5) : Number.NaN;
    });
    return {
      clickP50,
      missed,
      holdP50,
      advances: srv.voice.counters.advances,
      earlyTicks: core.stats.earlyTicks,
    };
  } finally {
    for (const bot of bots) await bot.close();
    await srv.stop();
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      seconds: { type: 'string', default: '6' },
      streams: { type: 'boolean', default: false },
      'mix-on-ready': { type: 'string', default: 'off' },
    },
  });
  const runs = Number(values.runs);
  const seconds = Number(values.seconds);
  const mixOnReady = values['mix-on-ready'] === 'on';
  if (!(Number.isInteger(runs) && runs > 0) || !(seconds > 0)) throw new TypeError('--runs and --seconds');
  const opus = await createOpus();
  const f = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ');
  for (let r = 1; r <= runs; r++) {
    const settings = [
      { advance: false, streams: 1 },
      { advance: true, streams: 1 },
      ...(values.streams ? [{ advance: true, streams: 4 }] : []),
    ];
    for (const { advance, streams } of settings) {
      const x = await once(opus, advance, seconds, streams, mixOnReady);
      const name = streams > 1 ? 'streams   ' : `advance ${advance ? 'on ' : 'off'}`;
      console.log(
        `run ${r} ${name}: click p50 ${f(x.clickP50)} ms ` +
          `(missed ${x.missed}), server hold p50 ${f(x.holdP50)} ms, advances ${x.advances}, ` +
          `early ticks ${x.earlyTicks}`,
      );
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
