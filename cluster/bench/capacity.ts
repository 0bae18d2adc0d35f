/**
 * How many members one core serves: the server runs in this process (one event loop = one core),
 * the UDP swarm in a child process (the other core). Channels of 10 with 2 speaking, stepped up
 * until the p99 tick lateness (due time to actor start) crosses 2 ms or delivery drops.
 *
 *   node --conditions=source --import tsx cluster/bench/capacity.ts [--opus native|opusscript]
 *     [--udp-send dgram]   (the server sends with node:dgram instead of sendmmsg: side-by-side runs)
 *     [--streams 4]        (members ask for streams: speakers forwarded as STREAM packets, no mix)
 *     [--cpu-prof DIR]     (a V8 profile of the server's measured window per step; cpu-profile.ts sums it up)
 */
import { spawnNiced } from './niced.js';
import { startCpuProfile, type CpuProfileRun } from './cpu-profile.js';
import { threadShares, threadTimes } from './thread-cpu.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config.js';
import { startServer } from '../src/server.js';
import type { TickerWake } from '@voice/media';

interface Step {
  channels: number;
  members: number;
  latenessP50Ms: number;
  latenessP99Ms: number;
  holdP50Ms: number;
  holdP99Ms: number;
  serverCpuPct: number;
  deliveryRatio: number;
  /** AUDIO packets a member got twice for one timestamp (not counted as delivered). */
  duplicates: number;
  ticksSkipped: number;
  /** Lateness of the clock alone (its wake-up), to tell clock jitter from work queued before a tick. */
  clockP50Ms: number;
  clockP99Ms: number;
  /** V8 young-generation collections per second in the server process (allocation pressure). */
  scavengesPerS: number;
  /** Longest scavenge pause in the window, ms. */
  scavengeMaxMs: number;
  /** The server CPU split by thread (Linux): main thread user and system, the other threads. */
  threads: ReturnType<typeof threadShares>;
}

/** Counts scavenges (minor GCs) of this process from now on. */
function watchScavenges(): { reset(): void; read(): { count: number; maxMs: number }; close(): void } {
  let count = 0;
  let maxMs = 0;
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind;
      if (kind === perfConstants.NODE_PERFORMANCE_GC_MINOR) {
        count++;
        maxMs = Math.max(maxMs, e.duration);
      }
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  return {
    reset: () => {
      count = 0;
      maxMs = 0;
    },
    read: () => ({ count, maxMs }),
    close: () => obs.disconnect(),
  };
}

export interface CapacityOptions {
  /** Channel counts to step through (10 members each). */
  steps?: number[];
  seconds?: number;
  log?: (s: Step) => void;
  maxP99Ms?: number;
  opus?: 'libopus' | 'native' | 'opusscript' | 'auto';
  clock?: { slots: number; wake: TickerWake };
  /** Send phases per frame in the swarm: 10 as independent clients, 1 all at once (worst case). */
  phases?: number;
  /** The server's UDP egress: `auto` (sendmmsg where built) or `dgram` (for a side-by-side run). */
  udpSend?: UdpSendChoice;
  /** The members' hello `streams` (README 8.8): 1 mixes (default); 2+ the speakers come as STREAM packets. */
  streams?: number;
  /** Write a V8 CPU profile of the server's main thread over each step's measured window into this directory. */
  cpuProfDir?: string;
  /** prom-client's default process metrics on, as the product runs (default: off, as before). */
  defaultMetrics?: boolean;
}

type UdpSendChoice = 'auto' | 'dgram' | 'sendmmsg';

type OpusChoice = 'libopus' | 'native' | 'opusscript' | 'auto';

export function benchConfig(
  dir: string,
  opus: OpusChoice,
  clock: { slots: number; wake: TickerWake },
  udpSend: UdpSendChoice = 'auto',
) {
  return loadConfig({
    env: {},
    overrides: {
      port: 0,
      udpPort: 0,
      dataDir: dir,
      logLevel: 'silent',
      opusBackend: opus,
      clock,
      udpSend,
      limits: {
        loginsPerMinute: 1e4,
        loginBurst: 1e4,
        connectionsPerAddress: 1e5,
        requestsPerSecond: 1e5,
        requestBurst: 1e5,
        messagesPerSecond: 1e4,
        messageBurst: 1e4,
        // Every bench member logs in (and creates its channel) from 127.0.0.1.
        newUserBurstPerAddress: 1e6,
        channelCreateBurstPerAddress: 1e6,
      },
    },
  });
}

async function runStep(
  channels: number,
  seconds: number,
  opus: OpusChoice,
  clock: { slots: number; wake: TickerWake },
  phases: number,
  membersPerChannel = 10,
  udpSend: UdpSendChoice = 'auto',
  streams = 1,
  cpuProfDir?: string,
  defaultMetrics = false,
): Promise<Step> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-bench-'));
  const server = await startServer(benchConfig(dir, opus, clock, udpSend), { defaultMetrics });
  const gc = watchScavenges();
  // The swarm runs niced: on a 2-core machine it must not steal the server's core.
  const child = spawnNiced(join(import.meta.dirname, '../../loadtest/src/swarm.ts'), [
    '--server',
    server.url,
    '--channels',
    String(channels),
    '--members',
    String(membersPerChannel),
    '--speakers',
    '2',
    '--seconds',
    String(seconds),
    '--phases',
    String(phases),
    '--streams',
    String(streams),
  ]);
  let stdout = '';
  let ready = 0;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  let measureStart: Promise<void> | null = null;
  let profile: Promise<CpuProfileRun> | null = null;
  let cpu0 = process.cpuUsage();
  let threads0 = threadTimes();
  let wall0 = performance.now();
  await new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      ready += d
        .toString()
        .split('\n')
        .filter((l) => l.includes('ready')).length;
      if (ready >= channels && !measureStart) {
        // Let talkspurts start and buffers settle, then measure the steady state only.
        measureStart = new Promise<void>((r) =>
          setTimeout(() => {
            for (const s of server.voice.channelStats()) {
              s.lateness.reset();
              s.core.stats.holdMs.reset();
            }
            server.voice.resetClockLateness();
            gc.reset();
            if (cpuProfDir) profile = startCpuProfile();
            cpu0 = process.cpuUsage();
            threads0 = threadTimes();
            wall0 = performance.now();
            r();
          }, 2_000),
        );
        void measureStart.then(resolve);
      }
    });
  });
  // Figures are read when the swarm stops sending, before its 10 x N connections tear down.
  const snap = await new Promise<{
    cpu: NodeJS.CpuUsage;
    wall: number;
    late50: number;
    late99: number;
    hold50: number;
    hold99: number;
    clock50: number;
    clock99: number;
    gc: { count: number; maxMs: number };
    threads: ReturnType<typeof threadTimes>;
  }>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      if (!d.toString().includes('done sending')) return;
      const stats = server.voice.channelStats();
      const worst = (f: (s: (typeof stats)[number]) => number) => Math.max(0, ...stats.map(f));
      resolve({
        cpu: process.cpuUsage(cpu0),
        threads: threadTimes(),
        wall: performance.now() - wall0,
        late50: worst((s) => s.lateness.percentile(50)),
        late99: worst((s) => s.lateness.percentile(99)),
        hold50: worst((s) => s.core.stats.holdMs.percentile(50)),
        hold99: worst((s) => s.core.stats.holdMs.percentile(99)),
        clock50: worst((s) => s.clock.p50),
        clock99: worst((s) => s.clock.p99),
        gc: gc.read(),
      });
    });
  });
  if (profile) {
    const run = await (profile as Promise<CpuProfileRun>);
    await run.stopInto(
      join(cpuProfDir!, `capacity-${channels * membersPerChannel}-streams${streams}.cpuprofile`),
    );
  }
  await new Promise<void>((r) => child.once('exit', () => r()));
  const { cpu, wall } = snap;
  const stats = server.voice.channelStats();
  const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as {
    deliveryRatio?: number;
    duplicates?: number;
  };
  const step: Step = {
    channels,
    members: channels * membersPerChannel,
    latenessP50Ms: round(snap.late50),
    latenessP99Ms: round(snap.late99),
    holdP50Ms: round(snap.hold50),
    holdP99Ms: round(snap.hold99),
    serverCpuPct: round(((cpu.user + cpu.system) / 1000 / wall) * 100),
    deliveryRatio: round(result.deliveryRatio ?? 0),
    duplicates: result.duplicates ?? 0,
    ticksSkipped: stats.reduce((a, s) => a + s.ticksSkipped, 0),
    clockP50Ms: round(snap.clock50),
    clockP99Ms: round(snap.clock99),
    scavengesPerS: round((snap.gc.count / wall) * 1000),
    scavengeMaxMs: round(snap.gc.maxMs),
    threads: threadShares(threads0, snap.threads, wall / 1000),
  };
  gc.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  return step;
}

const round = (x: number) => Math.round(x * 100) / 100;

export async function benchCapacity(o: CapacityOptions = {}): Promise<Record<string, number>> {
  const {
    steps = [5, 10, 20, 30, 40],
    seconds = 10,
    log = () => {},
    maxP99Ms = 2,
    opus = 'auto',
    clock = { slots: 16, wake: 'timerfd' },
    phases = 10,
    udpSend = 'auto',
    streams = 1,
    cpuProfDir,
    defaultMetrics = false,
  } = o;
  let best = 0;
  let at: Step | null = null;
  // The bound (2 ms), read from the same sweep.
  let under2 = 0;
  for (const channels of steps) {
    const s = await runStep(
      channels,
      seconds,
      opus,
      clock,
      phases,
      10,
      udpSend,
      streams,
      cpuProfDir,
      defaultMetrics,
    );
    log(s);
    const ok = s.deliveryRatio > 0.98 && s.serverCpuPct < 90;
    if (ok && s.latenessP99Ms < 2 && under2 === (at?.members ?? 0)) under2 = s.members;
    if (ok && s.latenessP99Ms < maxP99Ms) {
      best = s.members;
      at = s;
    } else break;
  }
  return {
    capacity_members_per_core_p99_under_2ms: under2,
    capacity_members_per_core: best,
    capacity_tick_lateness_p99_ms: at?.latenessP99Ms ?? 0,
    capacity_server_cpu_pct: at?.serverCpuPct ?? 0,
    capacity_hold_p50_ms: at?.holdP50Ms ?? 0,
    capacity_hold_p99_ms: at?.holdP99Ms ?? 0,
    capacity_scavenges_per_s: at?.scavengesPerS ?? 0,
    capacity_delivered_ratio: at?.deliveryRatio ?? 0,
  };
}

/**
 * The fixed cost: CPU of a server nobody uses (3 s after start-up), and of a home server with one
 * channel of 5, 2 speaking (the issue: it should not pay ~8 % of a core).
 */
/** A `--wake` value (the product's default when unknown). */
export function tickerWake(v: string | undefined): TickerWake {
  return v === 'timer' || v === 'thread' ? v : 'timerfd';
}

export async function benchFixedCost(opus: OpusChoice = 'auto'): Promise<Record<string, number>> {
  const clock = { slots: 16, wake: 'timerfd' as const };
  const dir = mkdtempSync(join(tmpdir(), 'voice-bench-'));
  const server = await startServer(benchConfig(dir, opus, clock), { defaultMetrics: false });
  await new Promise((r) => setTimeout(r, 1_000));
  const cpu0 = process.cpuUsage();
  const wall0 = performance.now();
  await new Promise((r) => setTimeout(r, 3_000));
  const cpu = process.cpuUsage(cpu0);
  const idlePct = ((cpu.user + cpu.system) / 1000 / (performance.now() - wall0)) * 100;
  await server.close();
  rmSync(dir, { recursive: true, force: true });
  const five = await runStep(1, 6, opus, clock, 10, 5);
  return {
    idle_server_cpu_pct: round(idlePct),
    five_members_server_cpu_pct: five.serverCpuPct,
    five_members_tick_lateness_p99_ms: five.latenessP99Ms,
    five_members_scavenges_per_s: five.scavengesPerS,
  };
}

/** `--udp-send`: a typo must not measure another egress than the one named (sendmmsg needs the addon). */
function udpSendChoice(v: string | undefined): UdpSendChoice {
  if (v === undefined || v === 'auto' || v === 'dgram' || v === 'sendmmsg') return v ?? 'auto';
  throw new TypeError(`--udp-send must be auto, dgram or sendmmsg, not ${v}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string' },
      seconds: { type: 'string', default: '10' },
      'max-p99': { type: 'string', default: '2' },
      opus: { type: 'string', default: 'auto' },
      slots: { type: 'string', default: '16' },
      wake: { type: 'string', default: 'timerfd' },
      phases: { type: 'string', default: '10' },
      'udp-send': { type: 'string', default: 'auto' },
      streams: { type: 'string', default: '1' },
      'cpu-prof': { type: 'string' },
    },
  });
  const r = await benchCapacity({
    ...(values['cpu-prof'] ? { cpuProfDir: values['cpu-prof'] } : {}),
    ...(values.steps ? { steps: values.steps.split(',').map(Number) } : {}),
    seconds: Number(values.seconds),
    log: (s) => console.log(JSON.stringify(s)),
    maxP99Ms: Number(values['max-p99']),
    opus: values.opus as 'libopus' | 'native' | 'opusscript' | 'auto',
    clock: { slots: Number(values.slots), wake: tickerWake(values.wake) },
    phases: Number(values.phases),
    udpSend: udpSendChoice(values['udp-send']),
    streams: Number(values.streams),
  });
  for (const [k, v] of Object.entries(r)) console.log(k.padEnd(36), v);
}
