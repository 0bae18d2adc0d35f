import { expect } from 'vitest';
import { toneDbfs, type OpusFactory } from '@voice/media';
import { ToneSource, VoiceClient } from '../client/src/index.js';
import { join } from 'node:path';
import type { ChildServer } from './child-server.js';

/**
 * What every hostile test checks after its attack (issue 7): the process is alive, /healthz
 * answers, two bots in a channel of their own still hear each other at level, memory stayed
 * bounded, and the error metrics match the errors the attack was answered with.
 */

/** The seed of a property run: HOSTILE_SEED to replay one, else fresh. Printed so a failure can be replayed. */
export function hostileSeed(name: string): number {
  const env = process.env.HOSTILE_SEED;
  const seed = env ? Number(env) : (Date.now() ^ (process.pid << 8)) >>> 0;
  console.log(`[${name}] fast-check seed ${seed} (replay with HOSTILE_SEED=${seed})`);
  return seed;
}

/** Counts per error code, as the test saw them answered. */
export class Tally {
  readonly counts = new Map<string, number>();
  add(code: string): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + 1);
  }
  get total(): number {
    let n = 0;
    for (const v of this.counts.values()) n += v;
    return n;
  }
}

/** `voice_errors_total` per code for one transport, read from the server's /metrics. */
export async function errorMetrics(srv: ChildServer, transport: 'http' | 'ws'): Promise<Map<string, number>> {
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const out = new Map<string, number>();
  const re = /^voice_errors_total\{code="([A-Z_]+)",transport="(\w+)"\} (\d+)$/gm;
  for (const m of text.matchAll(re)) if (m[2] === transport) out.set(m[1]!, Number(m[3]));
  return out;
}

/** Every code's metric grew by exactly what the test was answered with, no more, no less. */
export function expectMetricsMatch(
  before: Map<string, number>,
  after: Map<string, number>,
  seen: Tally,
): void {
  const codes = new Set([...after.keys(), ...seen.counts.keys()]);
  const diff: Record<string, { metric: number; answered: number }> = {};
  for (const code of codes) {
    const metric = (after.get(code) ?? 0) - (before.get(code) ?? 0);
    const answered = seen.counts.get(code) ?? 0;
    if (metric !== answered) diff[code] = { metric, answered };
  }
  expect(diff, 'voice_errors_total minus the errors answered, per code').toEqual({});
}

/** Median level of `hz` over 100 ms windows of the last `ms` a bot played; throws if it played nothing. */
function heardDbfs(c: VoiceClient, hz: number, ms: number): number {
  const s = c.recording().samples;
  if (s.length < ms * 48) throw new Error(`the bot played ${s.length} samples, fewer than ${ms} ms`);
  const levels: number[] = [];
  for (let at = s.length - ms * 48; at + 4800 <= s.length; at += 4800)
    levels.push(toneDbfs(s, hz, 48_000, at, 4800));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length / 2)]!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two bots in a fresh channel, each playing a tone: each hears the other's at its level (-20 dBFS ± 3). */
export async function expectCanaryHears(srv: ChildServer, opus: OpusFactory, label: string): Promise<void> {
  const channel = `canary-${label}-${Date.now() % 100_000}`;
  const bots: VoiceClient[] = [];
  try {
    const common = { server: srv.url, opus, heartbeatMs: 500, helloRetryMs: 200, channel };
    bots.push(await VoiceClient.connect({ ...common, nickname: `${label}-a`, create: true }));
    bots.push(await VoiceClient.connect({ ...common, nickname: `${label}-b` }));
    await Promise.all(bots.map((b) => b.waitReady(5000)));
    bots[0]!.startVoice(new ToneSource(440, -20));
    bots[1]!.startVoice(new ToneSource(700, -20));
    await sleep(700);
    for (const b of bots) b.clearRecording();
    await sleep(1100);
    for (const [b, hz] of [
      [bots[0]!, 700],
      [bots[1]!, 440],
    ] as const) {
      const level = heardDbfs(b, hz, 1000);
      expect(level, `${label}: a bot hears the other at ${hz} Hz`).toBeGreaterThan(-23);
      expect(level, `${label}: a bot hears the other at ${hz} Hz`).toBeLessThan(-17);
    }
  } finally {
    for (const b of bots) await b.close();
  }
}

/** Alive, healthy, and the resident memory grew by less than `maxGrowthBytes` since `rssBefore`. */
export async function expectAlive(
  srv: ChildServer,
  rssBefore: number,
  maxGrowthBytes: number,
): Promise<void> {
  expect(srv.exited(), `the server process ended:\n${srv.output().slice(-2000)}`).toBeNull();
  const health = await fetch(`${srv.url}/healthz`);
  expect(health.status).toBe(200);
  const growth = srv.rssBytes() - rssBefore;
  console.log(
    `RSS ${(rssBefore / 1048576).toFixed(1)} MiB before, grew ${(growth / 1048576).toFixed(1)} MiB`,
  );
  expect(growth, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`).toBeLessThan(maxGrowthBytes);
  // Nothing was caught as a bug, and nothing escaped to the process handlers.
  expect(await srv.metric('voice_faults_total{event="unhandledRejection"}')).toBe(0);
  const text = await (await fetch(`${srv.url}/metrics`)).text();
  const bugs = text.split('\n').filter((l) => l.startsWith('voice_boundary_errors_total{'));
  expect(bugs, 'exceptions caught at a boundary').toEqual([]);
}

/**
 * The server's JavaScript heap in use after a full collection, in bytes: the process must run with
 * `--expose-gc` (NODE_OPTIONS) and `scripts/memprobe.mjs` preloaded. Unlike RSS (which keeps the
 * allocator's high-water mark after large native buffers, BENCHMARKS.md), this moves only when
 * objects are retained, so it can bound a leak tightly.
 */
export async function heapUsedAfterGc(srv: ChildServer): Promise<number> {
  const lines = () =>
    srv
      .output()
      .split('\n')
      .filter((l) => l.startsWith('MEMPROBE {'));
  const before = lines().length;
  srv.child.kill('SIGUSR2');
  await expect.poll(() => lines().length, { timeout: 10_000 }).toBeGreaterThan(before);
  const figures = JSON.parse(lines().at(-1)!.slice('MEMPROBE '.length)) as { heapUsed: number };
  return figures.heapUsed * 1048576;
}

/** The preload and options `heapUsedAfterGc` needs, for startChildServer. */
export const MEMPROBE = {
  env: { NODE_OPTIONS: '--expose-gc' },
  preload: [join(import.meta.dirname, '../scripts/memprobe.mjs')],
};
