/**
 * Failover and drain gaps of a real cluster (the launcher's redis-server and four server processes),
 * over repeated tries: two bots whose signaling is on processes 3 and 4 talk in one channel owned by
 * process 1 or 2; each try kills the owner (`kill -9`, failover) or sends it SIGTERM (live drain),
 * measures the longest silence each bot heard from the other (20 ms windows, Goertzel), then starts
 * the process again. The owner alternates between processes 1 and 2 (placement breaks ties by id).
 *
 *   node --conditions=source --import tsx cluster/bench/cluster-gaps.ts [--tries 10]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createOpus } from '@voice/media';
import { ToneSource, VoiceClient } from '../../client/src/index.js';
import { launchCluster } from '../../deploy/cluster/launcher.js';
import { longestGapMs } from '../../test-support/audio.js';
import { freePort, freeUdpPort } from '../../test-support/server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const A = 440;
const B = 700;

/** Waits (at most 30 s) until process `pid` uses under a third of a core over one second. */
async function settled(pid: number): Promise<void> {
  const ticks = (): number => {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return Number(f[11]) + Number(f[12]); // utime + stime, in clock ticks (100 per second)
  };
  for (let i = 0; i < 30; i++) {
    const t0 = ticks();
    await sleep(1000);
    if (ticks() - t0 < 33) return;
  }
}

function summary(gaps: number[]): { p50: number; worst: number } {
  const s = [...gaps].sort((x, y) => x - y);
  return { p50: s[Math.floor((s.length - 1) / 2)] ?? 0, worst: s[s.length - 1] ?? 0 };
}

export async function benchClusterGaps(
  o: { tries?: number; log?: (line: string) => void } = {},
): Promise<Record<string, number>> {
  const tries = o.tries ?? 10;
  const log = o.log ?? (() => {});
  const opus = await createOpus();
  const cluster = await launchCluster({
    nodes: 4,
    redisPort: await freePort(),
    portsFor: async () => ({ http: await freePort(), udp: await freeUdpPort() }),
    logLevel: 'warn',
  });
  const bots: VoiceClient[] = [];
  try {
    const connect = async (i: number, nickname: string, create: boolean): Promise<VoiceClient> => {
      const c = await VoiceClient.connect({
        server: cluster.nodes[i]!.url,
        nickname,
        opus,
        heartbeatMs: 500,
        helloRetryMs: 200,
        channel: 'Gaps',
        create,
        recordMaxSeconds: 60,
      });
      bots.push(c);
      return c;
    };
    const a = await connect(2, 'gap-a', true);
    const b = await connect(3, 'gap-b', false);
    await Promise.all([a.waitReady(5000), b.waitReady(5000)]);
    a.startVoice(new ToneSource(A, -20));
    b.startVoice(new ToneSource(B, -20));
    await sleep(1500);

    const results: Record<'failover' | 'drain', number[]> = { failover: [], drain: [] };
    const failed = { failover: 0, drain: 0 };
    for (const kind of ['failover', 'drain'] as const) {
      for (let t = 0; t < tries; t++) {
        const owner = cluster.nodes.findIndex((n) => n.udpPort === a.binding?.udpPort);
        if (owner !== 0 && owner !== 1) {
          // Placement chose a process that holds a bot's signaling: stopping it would measure a
          // reconnection, not a failover. Say so and stop here (what was measured is kept).
          log(`try ${t + 1}: the channel went to process ${owner + 1} (a bot's signaling); stopping`);
          for (const n of cluster.nodes)
            log(`  process ${n.index + 1}: ${n.output().split('\n').slice(-8).join('\n    ')}`);
          break;
        }
        const moved = [a, b].map((x) => x.signaling.waitFor('voice.moved', () => true, 15_000));
        // Each try measures its own recording (a bounded one stops growing when full).
        for (const x of [a, b]) x.clearRecording();
        await sleep(300);
        const at = [a.recording().samples.length, b.recording().samples.length];
        cluster.nodes[owner]!.process.kill(kind === 'failover' ? 'SIGKILL' : 'SIGTERM');
        const outcome = await Promise.all(moved).then(
          () => null,
          (err: unknown) => err,
        );
        if (outcome) {
          // Counted and shown, not hidden: a member that was never moved is a failed failover.
          failed[kind]++;
          log(
            `${kind} ${t + 1}/${tries}: ${outcome instanceof Error ? outcome.message : 'failed'}; bindings a ${a.binding?.udpPort} b ${b.binding?.udpPort}`,
          );
          for (const n of cluster.nodes)
            log(`  process ${n.index + 1}: ${n.output().split('\n').slice(-6).join('\n    ')}`);
          break;
        }
        await sleep(1500);
        const gap = Math.max(
          longestGapMs(b.recording().samples, A, at[1]!, -40),
          longestGapMs(a.recording().samples, B, at[0]!, -40),
        );
        results[kind].push(gap);
        log(`${kind} ${t + 1}/${tries}: process ${owner + 1} stopped, gap ${gap} ms`);
        await cluster.nodes[owner]!.exited;
        const again = await cluster.restart(owner);
        // Until its start-up CPU burst has left its announced load, placement avoids a new process.
        await settled(again.process.pid!);
        await sleep(2500);
      }
    }
    const f = summary(results.failover);
    const d = summary(results.drain);
    return {
      failover_tries: results.failover.length,
      failover_failed: failed.failover,
      drain_tries: results.drain.length,
      drain_failed: failed.drain,
      failover_gap_p50_ms: f.p50,
      failover_gap_worst_ms: f.worst,
      drain_gap_p50_ms: d.p50,
      drain_gap_worst_ms: d.worst,
    };
  } finally {
    for (const c of bots) await c.close();
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { tries: { type: 'string', default: '10' } } });
  const figures = await benchClusterGaps({ tries: Number(values.tries), log: (l) => console.log(l) });
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(32)} ${v}`);
}
