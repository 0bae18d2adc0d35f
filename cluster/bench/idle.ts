/**
 * The fixed cost of a small server (issue 7: "an idle server near 0 % CPU"): the real server in a
 * process of its own, with the product's defaults (default metrics on, the configured clock), read
 * from /proc over each window: CPU (utime + stime, all threads) and wake-ups (context switches, all
 * threads). Three windows: nobody connected; 5 members in one channel, nobody speaking; 5 members,
 * 1 speaking. The members are the load-test swarm, niced, in another process.
 *
 *   node --conditions=source --import tsx cluster/bench/idle.ts [--seconds 60]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startLoopbackServer } from './loopback-server.js';
import { spawnNiced } from './niced.js';

const CLOCK_TICKS = 100; // USER_HZ on Linux

export interface ProcessSample {
  /** utime + stime of every thread, seconds. */
  cpuS: number;
  /** Voluntary and involuntary context switches of every thread (each is a wake-up or a preemption). */
  switches: number;
  /** By thread id: its name and context switches (to tell the main loop from the metronome and the pool). */
  byThread: Map<string, { name: string; switches: number }>;
}

/** CPU and context switches of `pid`, all its threads (threads that ended are not counted). */
export function sampleProcess(pid: number): ProcessSample {
  let cpuS = 0;
  let switches = 0;
  const byThread = new Map<string, { name: string; switches: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpuS += (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      const v = Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      const n = Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(status)?.[1] ?? 0);
      switches += v + n;
      const name = `${stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))}${tid === String(pid) ? '(main)' : ''}`;
      byThread.set(tid, { name, switches: v + n });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return { cpuS, switches, byThread };
}

async function window(pid: number, seconds: number): Promise<Record<string, unknown>> {
  const a = sampleProcess(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const b = sampleProcess(pid);
  const wallS = (performance.now() - t0) / 1000;
  // Per thread: a thread that ended in the window is not counted, one that started counts from 0.
  const threads: Record<string, number> = {};
  let switches = 0;
  for (const [tid, t] of b.byThread) {
    const d = t.switches - (a.byThread.get(tid)?.switches ?? 0);
    switches += d;
    if (d / wallS >= 0.5) threads[`${t.name}:${tid}`] = Math.round((d / wallS) * 10) / 10;
  }
  return {
    cpuPct: Math.round(((b.cpuS - a.cpuS) / wallS) * 1000) / 10,
    wakeupsPerS: Math.round((switches / wallS) * 10) / 10,
    threads,
  };
}

async function childServer(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-idle-'));
  // The product's defaults: default metrics on, as main.ts runs it.
  const server = await startLoopbackServer(dir, { defaultMetrics: true });
  process.stdout.write(`${server.url}\n`);
  process.stdin.on('end', () => {
    void server.close().finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
  process.stdin.resume();
}

async function swarmWindow(url: string, pid: number, speakers: number, seconds: number) {
  const child = spawnNiced(join(import.meta.dirname, '../../loadtest/src/swarm.ts'), [
    '--server',
    url,
    '--channels',
    '1',
    '--members',
    '5',
    '--speakers',
    String(speakers),
    '--seconds',
    String(seconds + 3),
    '--prefix',
    `s${speakers}`,
  ]);
  child.stdout.resume();
  await new Promise<void>((resolve) => {
    child.stderr.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) resolve();
    });
  });
  await new Promise((r) => setTimeout(r, 2_000));
  const w = await window(pid, seconds);
  await new Promise<void>((r) => child.once('exit', () => r()));
  return w;
}

async function main(seconds: number): Promise<void> {
  const server = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', import.meta.filename, '--child'],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const url = await new Promise<string>((resolve) => {
    let out = '';
    server.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) resolve(out.trim());
    });
  });
  const pid = server.pid!;
  await new Promise((r) => setTimeout(r, 3_000));
  console.log(JSON.stringify({ window: 'idle, nobody connected', ...(await window(pid, seconds)) }));
  console.log(
    JSON.stringify({ window: '5 members, nobody speaking', ...(await swarmWindow(url, pid, 0, seconds)) }),
  );
  console.log(
    JSON.stringify({ window: '5 members, 1 speaking', ...(await swarmWindow(url, pid, 1, seconds)) }),
  );
  // The swarm's members just vanish: their sessions (and seats) last the 20 s grace period.
  await new Promise((r) => setTimeout(r, 23_000));
  console.log(JSON.stringify({ window: 'idle again, after they left', ...(await window(pid, seconds)) }));
  server.stdin.end();
  await new Promise<void>((r) => server.once('exit', () => r()));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: { seconds: { type: 'string', default: '60' }, child: { type: 'boolean', default: false } },
  });
  if (values.child) await childServer();
  else await main(Number(values.seconds));
}
