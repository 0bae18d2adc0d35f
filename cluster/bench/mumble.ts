/**
 * Side by side with Mumble: the same load (channels of 10, 2 speaking the same 32 kbit/s Opus
 * frames at 20 ms, at 10 phases over the frame, everyone receiving over UDP) against murmurd 1.3
 * (Debian's `mumble-server`, for this benchmark only) and against this server (the capacity
 * bench's step), one after the other on the same machine; the load generator runs niced in its own
 * process either way. Mumble relays each speaker's packet to each listener (no mixing, no
 * decoding); so does this server for members that ask for streams (`--streams 4`, the default: each
 * speaker forwarded as STREAM packets, nothing decoded or encoded); with `--streams 1` it decodes,
 * mixes and encodes once per channel and tick, and forwards a lone speaker. CPU is the server
 * process's, all threads, over the same steady window.
 *
 *   node --conditions=source --import tsx cluster/bench/mumble.ts --steps 2,10,20 --seconds 10 [--streams 1]
 *     [--cpu-prof DIR]   (a V8 profile of our server's measured window; summarise with cpu-profile.ts)
 *     [--default-metrics] (our server with prom-client's process metrics, as the product runs it)
 *     [--wake timerfd|thread|timer] (what wakes our server's clock; default the product's, timerfd)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { TickerWake } from '@voice/media';
import { benchCapacity, tickerWake } from './capacity.js';
import { spawnNiced } from './niced.js';

const MURMURD = '/usr/sbin/murmurd';
const CLOCK_TICKS = 100; // USER_HZ on Linux

export interface MumbleStep {
  members: number;
  mumbleCpuPct: number;
  /** Of which in the kernel (system time): the UDP sends and receives both servers pay alike. */
  mumbleSysPct: number;
  mumbleDelivered: number;
  oursCpuPct: number;
  /** Of which the main thread's system time (the other threads' is small: the clock's wake-ups). */
  oursMainSysPct: number;
  oursDelivered: number;
  oursLatenessP99Ms: number;
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** utime and stime of a process and all its threads, in seconds. */
function cpuSeconds(pid: number): { user: number; sys: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { user: Number(fields[11]) / CLOCK_TICKS, sys: Number(fields[12]) / CLOCK_TICKS };
}

async function mumbleStep(
  channels: number,
  seconds: number,
): Promise<{ cpuPct: number; sysPct: number; delivered: number }> {
  // murmurd drops to its own user: its directory must be writable by it.
  const dir = mkdtempSync(join(tmpdir(), 'voice-mumble-'));
  chmodSync(dir, 0o777);
  const port = await freeTcpPort();
  const ini = join(dir, 'murmur.ini');
  writeFileSync(
    ini,
    [
      `database=${join(dir, 'murmur.sqlite')}`,
      'host=127.0.0.1',
      `port=${port}`,
      'users=5000',
      // Above what 32 kbit/s Opus at 20 ms costs with headers; Mumble's default is 72000.
      'bandwidth=128000',
      // Every bench member connects from 127.0.0.1.
      'autobanAttempts=0',
      // One connection (SuperUser) makes every channel: lift the per-client message rate limit.
      'messageburst=100000',
      'messagelimit=100000',
      'bonjour=false',
      'allowping=false',
      'welcometext=',
      'registerName=',
      'pidfile=',
    ].join('\n') + '\n',
  );
  const supw = spawnSync(MURMURD, ['-ini', ini, '-supw', 'bench'], { encoding: 'utf8' });
  if (supw.status !== 0) throw new Error(`murmurd -supw failed: ${supw.stderr}`);
  const murmur: ChildProcess = spawn(MURMURD, ['-fg', '-ini', ini], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  murmur.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  murmur.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  try {
    for (let i = 0; i < 100 && !log.includes('Server listening'); i++)
      await new Promise((r) => setTimeout(r, 50));
    if (!log.includes('Server listening')) throw new Error(`murmurd did not start:\n${log}`);
    const swarm = spawnNiced(join(import.meta.dirname, 'mumble-swarm.ts'), [
      '--port',
      String(port),
      '--channels',
      String(channels),
      '--seconds',
      String(seconds),
      '--supw',
      'bench',
    ]);
    let out = '';
    let err = '';
    swarm.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let window: { cpu0: { user: number; sys: number } | null; t0: number } | null = null;
    let result: { cpu: number; sys: number; wall: number } | null = null;
    swarm.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      const ready = err.split('\n').filter((l) => l.includes('ready')).length;
      if (ready >= channels && window === null) {
        window = { cpu0: null, t0: 0 };
        // As the capacity bench: 2 s for talkspurts to start, then the steady state only.
        setTimeout(() => {
          window = { cpu0: cpuSeconds(murmur.pid!), t0: performance.now() };
        }, 2_000);
      }
      if (err.includes('done sending') && result === null && window?.cpu0) {
        const now = cpuSeconds(murmur.pid!);
        result = {
          cpu: now.user + now.sys - window.cpu0.user - window.cpu0.sys,
          sys: now.sys - window.cpu0.sys,
          wall: (performance.now() - window.t0) / 1000,
        };
      }
    });
    const code = await new Promise<number | null>((r) => swarm.once('exit', r));
    if (code !== 0 || result === null)
      throw new Error(`mumble swarm failed (${code}):\n${err}\n${log.slice(-2000)}`);
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { deliveryRatio: number };
    const { cpu, sys, wall } = result as { cpu: number; sys: number; wall: number };
    return {
      cpuPct: Math.round((cpu / wall) * 1000) / 10,
      sysPct: Math.round((sys / wall) * 1000) / 10,
      delivered: Math.round(r.deliveryRatio * 1000) / 1000,
    };
  } finally {
    murmur.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 200));
    // murmurd may still be writing its database as it exits (slower on a loaded machine).
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 });
  }
}

/** Both servers at each step (channels of 10). */
export async function benchMumble(
  o: {
    steps?: number[];
    seconds?: number;
    streams?: number;
    log?: (s: MumbleStep) => void;
    /** A V8 CPU profile of our server's measured window per step, into this directory. */
    cpuProfDir?: string;
    /** Our server with prom-client's default process metrics, as the product runs it. */
    defaultMetrics?: boolean;
    /** What wakes our server's clock (default the product's, `timerfd`). */
    wake?: TickerWake;
  } = {},
): Promise<Record<string, number>> {
  const { steps = [2, 10, 20], seconds = 10, streams = 4, log = () => {}, cpuProfDir } = o;
  const defaultMetrics = o.defaultMetrics ?? false;
  const figures: Record<string, number> = {};
  const probe = spawnSync(MURMURD, ['-version'], { encoding: 'utf8' });
  if (probe.error) {
    console.log(`mumble side-by-side skipped: ${MURMURD} not found (apt-get install mumble-server)`);
    return figures;
  }
  for (const channels of steps) {
    const m = await mumbleStep(channels, seconds);
    let ours: {
      serverCpuPct: number;
      deliveryRatio: number;
      latenessP99Ms: number;
      threads: { mainSysPct: number };
    } | null = null;
    await benchCapacity({
      steps: [channels],
      seconds,
      opus: 'libopus',
      maxP99Ms: Number.POSITIVE_INFINITY,
      streams,
      defaultMetrics,
      clock: { slots: 16, wake: o.wake ?? 'timerfd' },
      ...(cpuProfDir ? { cpuProfDir } : {}),
      log: (s) => (ours = s),
    });
    const step: MumbleStep = {
      members: channels * 10,
      mumbleCpuPct: m.cpuPct,
      mumbleSysPct: m.sysPct,
      mumbleDelivered: m.delivered,
      oursCpuPct: ours!.serverCpuPct,
      oursMainSysPct: ours!.threads.mainSysPct,
      oursDelivered: ours!.deliveryRatio,
      oursLatenessP99Ms: ours!.latenessP99Ms,
    };
    log(step);
    figures[`mumble_cpu_pct_${step.members}_members`] = step.mumbleCpuPct;
    figures[`ours_cpu_pct_${step.members}_members`] = step.oursCpuPct;
    figures[`cpu_ratio_ours_to_mumble_${step.members}_members`] =
      Math.round((step.oursCpuPct / Math.max(0.1, step.mumbleCpuPct)) * 100) / 100;
  }
  return figures;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '2,10,20' },
      seconds: { type: 'string', default: '10' },
      streams: { type: 'string', default: '4' },
      'cpu-prof': { type: 'string' },
      'default-metrics': { type: 'boolean', default: false },
      wake: { type: 'string', default: 'timerfd' },
    },
  });
  const figures = await benchMumble({
    wake: tickerWake(values.wake),
    defaultMetrics: values['default-metrics'],
    ...(values['cpu-prof'] ? { cpuProfDir: values['cpu-prof'] } : {}),
    steps: values.steps.split(',').map(Number),
    seconds: Number(values.seconds),
    streams: Number(values.streams),
    log: (s) => console.log(JSON.stringify(s)),
  });
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(48)} ${v}`);
  process.exit(0);
}
