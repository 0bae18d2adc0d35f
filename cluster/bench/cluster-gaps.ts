/**
 * Failover and drain gaps of a real cluster (the launcher's redis-server and four server processes),
 * over repeated tries: two bots whose signaling is on processes 3 and 4 talk in one channel owned by
 * process 1 or 2; each try kills the owner (`kill -9`, failover) or sends it SIGTERM (live drain),
 * measures the longest silence each bot heard from the other (20 ms windows, Goertzel), then starts
 * the process again. The owner alternates between processes 1 and 2 (placement breaks ties by id).
 *
 * `--trace` runs the processes at debug level and prints each try's timeline: the drain's steps
 * (`drain trace` lines) and the bots' events, in ms from the signal, with where each gap fell.
 *
 *   node --conditions=source --import tsx cluster/bench/cluster-gaps.ts [--tries 10] [--only drain] [--trace]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createOpus } from '@voice/media';
import { ToneSource, VoiceClient } from '../../client/src/index.js';
import { launchCluster } from '../../deploy/cluster/launcher.js';
import { longestGap } from '../../test-support/audio.js';
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

type Kind = 'failover' | 'drain';

/** Server log lines of the trace (and lease events) since `since` (performance.now() ms), as ms from it. */
function traceLines(output: string, since: number): string[] {
  const out: string[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let e: { time?: string; msg?: string; node?: string; step?: string; user?: string };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      continue;
    }
    if (e.msg !== 'drain trace' && e.msg !== 'took channel') continue;
    const t = Date.parse(e.time ?? '') - performance.timeOrigin - since;
    if (t < -50) continue;
    out.push(`${t.toFixed(0).padStart(6)} ms ${e.node} ${e.step ?? e.msg}${e.user ? ` ${e.user}` : ''}`);
  }
  return out;
}

export async function benchClusterGaps(
  o: { tries?: number; only?: Kind; trace?: boolean; log?: (line: string) => void } = {},
): Promise<Record<string, number>> {
  const tries = o.tries ?? 10;
  const log = o.log ?? (() => {});
  const opus = await createOpus();
  const cluster = await launchCluster({
    nodes: 4,
    redisPort: await freePort(),
    portsFor: async () => ({ http: await freePort(), udp: await freeUdpPort() }),
    logLevel: o.trace ? 'debug' : 'warn',
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

    // Client-side events of the trace, in performance.now() ms.
    const events: string[] = [];
    if (o.trace) {
      for (const [x, name] of [
        [a, 'a'],
        [b, 'b'],
      ] as const) {
        x.signaling.on('voice.moved', () => events.push(`${performance.now()} ${name} voice.moved received`));
        x.on('ready', () => events.push(`${performance.now()} ${name} ready (HELLO_ACK)`));
      }
    }
    const results: Record<Kind, number[]> = { failover: [], drain: [] };
    const failed = { failover: 0, drain: 0 };
    const framesLost: Record<Kind, number[]> = { failover: [], drain: [] };
    for (const kind of o.only ? [o.only] : (['failover', 'drain'] as const)) {
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
        events.length = 0;
        // The listeners' sessions before the switch, and what their playout concealed so far.
        const before = [a.voice, b.voice];
        const concealedBefore = before.map((v) => v?.stats().playout.framesConcealed ?? 0);
        const killedAt = performance.now();
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
        const heard = [
          { who: 'b hears a', rec: b.recording(), gap: longestGap(b.recording().samples, A, at[1]!, -40) },
          { who: 'a hears b', rec: a.recording(), gap: longestGap(a.recording().samples, B, at[0]!, -40) },
        ];
        const gap = Math.max(...heard.map((h) => h.gap.ms));
        results[kind].push(gap);
        // Frames each member lost over the switch: 20 ms windows without the talker (silence) and
        // frames its playout concealed, in the old session after the signal and in the new one.
        const lost = [b, a].map((x, i) => {
          const old = before[1 - i];
          const concealed =
            (old?.stats().playout.framesConcealed ?? 0) -
            concealedBefore[1 - i]! +
            (x.voice !== old ? (x.voice?.stats().playout.framesConcealed ?? 0) : 0);
          return { silent: heard[i]!.gap.silentMs / 20, concealed };
        });
        for (const l of lost) framesLost[kind].push(l.silent + l.concealed);
        log(
          `${kind} ${t + 1}/${tries}: process ${owner + 1} stopped, gap ${gap} ms; frames lost (silent + concealed): ` +
            lost.map((l, i) => `${i === 0 ? 'b' : 'a'} ${l.silent} + ${l.concealed}`).join(', '),
        );
        if (o.trace) {
          const lines = cluster.nodes.flatMap((n) => traceLines(n.output(), killedAt));
          for (const e of events) {
            const [ms, ...rest] = e.split(' ');
            lines.push(`${(Number(ms) - killedAt).toFixed(0).padStart(6)} ms client ${rest.join(' ')}`);
          }
          for (const h of heard) {
            // Sample i of a recording played at startTime + i / 48 ms.
            const from = h.rec.startTime + h.gap.start / 48 - killedAt;
            lines.push(`${from.toFixed(0).padStart(6)} ms gap ${h.who} starts (${h.gap.ms} ms)`);
          }
          lines.sort((x, y) => parseFloat(x) - parseFloat(y));
          for (const l of lines) log(`  ${l}`);
        }
        await cluster.nodes[owner]!.exited;
        const again = await cluster.restart(owner);
        // Until its start-up CPU burst has left its announced load, placement avoids a new process.
        await settled(again.process.pid!);
        await sleep(2500);
      }
    }
    const f = summary(results.failover);
    const d = summary(results.drain);
    const dl = summary(framesLost.drain);
    return {
      failover_tries: results.failover.length,
      failover_failed: failed.failover,
      drain_tries: results.drain.length,
      drain_failed: failed.drain,
      failover_gap_p50_ms: f.p50,
      failover_gap_worst_ms: f.worst,
      drain_gap_p50_ms: d.p50,
      drain_gap_worst_ms: d.worst,
      drain_frames_lost_p50: dl.p50,
      drain_frames_lost_worst: dl.worst,
    };
  } finally {
    for (const c of bots) await c.close();
    await cluster.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      tries: { type: 'string', default: '10' },
      only: { type: 'string' },
      trace: { type: 'boolean', default: false },
    },
  });
  if (values.only !== undefined && values.only !== 'drain' && values.only !== 'failover')
    throw new TypeError('--only is drain or failover');
  const figures = await benchClusterGaps({
    tries: Number(values.tries),
    ...(values.only !== undefined && { only: values.only }),
    trace: values.trace,
    log: (l) => console.log(l),
  });
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(32)} ${v}`);
}
