import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, type OpusFactory } from '@voice/media';
import { ToneSource, VoiceClient } from '../../client/src/index.js';
import { launchCluster, type LaunchedCluster, type LaunchedNode } from '../../deploy/cluster/launcher.js';
import { medianToneDbfs } from '../../test-support/audio.js';
import { freePort, freeUdpPort } from '../../test-support/server.js';

/*
 * Placement right after a node stops: its registry entry outlives it (until its TTL), and
 * least-loaded placement would pick it for every channel that becomes active meanwhile. A join of
 * a new channel must not wait on it. Two ways a node stops: kill -9 (its Redis connection closes,
 * so a request finds nobody listening at once), and a hang (SIGSTOP: what a frozen process, or a
 * host that lost power or its network, looks like; its connection stays open and its request
 * subscription with it, so a request waits for its timeout).
 */

const REQUEST_TIMEOUT_MS = 2_000;
const TAKE_TIMEOUT_MS = 500;
const ANNOUNCE_MS = 2_000;
/** What a join may take: the take timeout and a second of a loaded machine, under the request timeout. */
const JOIN_BOUND_MS = TAKE_TIMEOUT_MS + 1_000;
const TONES = [440, 700, 1100, 1500, 1900] as const;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let opus: OpusFactory;
let own: LaunchedCluster | null = null;
const bots: VoiceClient[] = [];
beforeAll(async () => {
  opus = await createOpus();
});
afterEach(async () => {
  for (const b of bots.splice(0)) await b.close();
  // A stopped process takes no SIGTERM: end it first.
  for (const n of own?.nodes ?? []) if (n.process.exitCode === null) n.process.kill('SIGKILL');
  await own?.stop();
  own = null;
}, 30_000);

async function twoNodes(): Promise<LaunchedCluster> {
  return (own = await launchCluster({
    nodes: 2,
    redisPort: await freePort(),
    portsFor: async () => ({ http: await freePort(), udp: await freeUdpPort() }),
    logLevel: 'error',
    // The registry entry of a stopped node lives 12 s: long enough for every join below.
    config: {
      cluster: {
        registryTtlMs: 12_000,
        announceMs: ANNOUNCE_MS,
        requestTimeoutMs: REQUEST_TIMEOUT_MS,
        takeTimeoutMs: TAKE_TIMEOUT_MS,
      },
    },
  }));
}

async function bot(url: string, nickname: string): Promise<VoiceClient> {
  const c = await VoiceClient.connect({ server: url, nickname, opus, heartbeatMs: 500, helloRetryMs: 200 });
  bots.push(c);
  return c;
}

const fallbacks = async (url: string): Promise<Record<string, number>> => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^voice_placement_fallbacks_total\{reason="(\w+)"\} (\d+)$/gm))
    out[m[1]!] = Number(m[2]);
  return out;
};

/**
 * Two members in one channel make its owner the loaded node; the other node (load 0) is the one
 * stopped, so its registry entry names it the least loaded until the entry expires. Returns the
 * survivor, the victim, and idle bots on the survivor.
 */
async function loadedSurvivor(
  cluster: LaunchedCluster,
  idle: number,
): Promise<{ survivor: LaunchedNode; victim: LaunchedNode; idle: VoiceClient[] }> {
  const [n1, n2] = cluster.nodes;
  // Both signaled on node 1 too, so that nothing of theirs depends on the node that stops.
  const busy = [await bot(n1!.url, 'busy1'), await bot(n1!.url, 'busy2')];
  await busy[0]!.join('Busy', { create: true });
  await busy[1]!.join('Busy');
  await Promise.all(busy.map((b) => b.waitReady(5000)));
  // Equal loads (none) go to the first node id.
  expect(busy[0]!.binding!.udpPort).toBe(n1!.udpPort);
  const survivor = n1!;
  const victim = n2!;
  const bots = [];
  for (let i = 0; i < idle; i++) bots.push(await bot(survivor.url, `idle${i}`));
  // Both announce their loads (every period) before the victim stops.
  await sleep(ANNOUNCE_MS + 500);
  return { survivor, victim, idle: bots };
}

/** Joins `channel` (created), timed: the join's round trip as the user waits for it. */
async function timedJoin(c: VoiceClient, channel: string, survivor: LaunchedNode): Promise<number> {
  const t0 = performance.now();
  await c.join(channel, { create: true });
  const ms = performance.now() - t0;
  expect(c.binding!.udpPort, `${channel} is mixed by the survivor`).toBe(survivor.udpPort);
  return ms;
}

/** In each channel, a second member hears the first one's tone at level. */
async function audioFlows(speakers: VoiceClient[], channels: string[], url: string): Promise<void> {
  const ears = await Promise.all(speakers.map((_, i) => bot(url, `ear${i}`)));
  await Promise.all(ears.map((e, i) => e.join(channels[i]!)));
  await Promise.all([...speakers, ...ears].map((x) => x.waitReady(5000)));
  speakers.forEach((s, i) => s.startVoice(new ToneSource(TONES[i]!, -20)));
  await sleep(800);
  for (const e of ears) e.clearRecording();
  await sleep(1100);
  for (const [i, e] of ears.entries())
    expect(
      medianToneDbfs(e.recording().samples, TONES[i]!, 1000),
      `${channels[i]} carries audio`,
    ).toBeGreaterThan(-23);
}

describe('placement after a node stops', () => {
  it(
    'a hung node (SIGSTOP): the first new channel waits at most the take timeout, the next ones skip it (suspect, then stale), and all carry audio',
    { timeout: 120_000 },
    async () => {
      const { survivor, victim, idle } = await loadedSurvivor(await twoNodes(), 5);
      victim.process.kill('SIGSTOP');

      // Right after the hang: the first join asks the hung node and gives up after the take
      // timeout; the hung node is then suspect and the next joins do not ask it.
      const took: number[] = [];
      for (let i = 0; i < 4; i++) took.push(await timedJoin(idle[i]!, `Fresh${i}`, survivor));
      // Once the suspicion has ended (two announce periods), the hung node's entry has missed two
      // refreshes and is passed over as stale, though the entry lives on (12 s TTL).
      await sleep(2 * ANNOUNCE_MS + 500);
      took.push(await timedJoin(idle[4]!, 'Fresh4', survivor));
      console.log(`joins of new channels after SIGSTOP: ${took.map((t) => t.toFixed(0)).join(', ')} ms`);

      // Waiting one request timeout (2 s) fails each bound; the first join waits the take timeout
      // (0.5 s), and each has up to a second more for a loaded machine.
      for (const [i, t] of took.entries()) expect(t, `join of Fresh${i}`).toBeLessThan(JOIN_BOUND_MS);
      // Only one of the four joins right after the hang waited on it: asking it each time takes
      // four take timeouts and more, and fails this.
      expect(took.slice(0, 4).reduce((a, b) => a + b)).toBeLessThan(TAKE_TIMEOUT_MS * 4);
      expect(await fallbacks(survivor.url)).toEqual({ timeout: 1, suspect: 3, stale: 1 });

      await audioFlows(idle, ['Fresh0', 'Fresh1', 'Fresh2', 'Fresh3', 'Fresh4'], survivor.url);
    },
  );

  it(
    'kill -9: a join asks the dead node at most once (nobody listens: it fails at once), the next ones skip it, and all carry audio',
    { timeout: 120_000 },
    async () => {
      const { survivor, victim, idle } = await loadedSurvivor(await twoNodes(), 3);
      victim.process.kill('SIGKILL');
      await victim.exited;
      const took: number[] = [];
      for (let i = 0; i < 3; i++) took.push(await timedJoin(idle[i]!, `Fresh${i}`, survivor));
      console.log(`joins of new channels after kill -9: ${took.map((t) => t.toFixed(0)).join(', ')} ms`);
      for (const [i, t] of took.entries()) expect(t, `join of Fresh${i}`).toBeLessThan(JOIN_BOUND_MS);
      // (Redis drops the dead node's subscription as soon as it reads the closed connection; a join
      // racing that read finds it listening and waits the take timeout instead.)
      const f = await fallbacks(survivor.url);
      expect((f['unreachable'] ?? 0) + (f['timeout'] ?? 0)).toBe(1);
      expect(f['suspect']).toBe(2);
      await audioFlows(idle, ['Fresh0', 'Fresh1', 'Fresh2'], survivor.url);
    },
  );
});
