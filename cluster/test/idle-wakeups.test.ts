import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLoopLag } from '../src/event-loop-lag.js';

const CHILD = join(import.meta.dirname, 'helpers/idle-server-child.ts');
const WINDOW_MS = 3_000;

/** Voluntary context switches (a thread blocking, then woken) of every thread of `pid`, by thread id. */
function wakeups(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      out.set(tid, Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)![1]));
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return out;
}

// Wake-ups are read from /proc (Linux), where the server runs in production.
describe.skipIf(!existsSync('/proc/self/task'))('an idle server', () => {
  let child: ChildProcessWithoutNullStreams;
  let url = '';
  const dir = mkdtempSync(join(tmpdir(), 'voice-idle-'));

  beforeAll(async () => {
    // V8's memory reducer runs a few GCs some seconds after start-up, on its own schedule: those
    // wake-ups are V8's, not the server's, and would make the count depend on when it fires.
    child = spawn(
      process.execPath,
      ['--no-memory-reducer', '--conditions=source', '--import', 'tsx', CHILD, dir],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    url = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve(out.trim());
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code})`)));
    });
    // Start-up's compilations and GCs settle.
    await new Promise((r) => setTimeout(r, 2_000));
  }, 30_000);

  afterAll(async () => {
    const exited = new Promise((r) => child.once('exit', r));
    child.stdin.end();
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('wakes only for its coarse timers', async () => {
    const pid = child.pid!;
    const a = wakeups(pid);
    await new Promise((r) => setTimeout(r, WINDOW_MS));
    const b = wakeups(pid);
    const main = b.get(String(pid))! - a.get(String(pid))!;
    let others = 0;
    for (const [tid, n] of b) if (tid !== String(pid)) others += n - (a.get(tid) ?? 0);
    // The timers that remain on the main thread while nobody is connected, per second:
    // uWebSockets' Date-header clock (1 s): 1; the node's cluster announce (2 s, it writes the
    // registry entry and its follow-up wakes once more): 1; session-entry refresh and the foreign
    // voice-address sweep (5 s each): 0.4. That is 2.4/s, about 7 in 3 s; the bound leaves room
    // for the timers' phases and V8's own tasks. The 10 ms event-loop-lag monitor alone was 300
    // in 3 s, the clock for one silent channel 150, the owner watch (500 ms, now only while a
    // member's voice is on another node) 6.
    expect(main).toBeLessThanOrEqual(12);
    // No thread of ours runs while idle (the metronome exists only while a channel is active,
    // and then wakes 50 times a second); what is left is V8's helpers (concurrent compilation
    // and GC tasks, a few a second at most once start-up settled) and the module loader's thread.
    expect(others).toBeLessThanOrEqual(12);
  });

  it('still exports the default process metrics, with the event loop lag family', async () => {
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const name of [
      'voice_process_process_cpu_user_seconds_total',
      'voice_process_process_resident_memory_bytes',
      'voice_process_nodejs_heap_size_used_bytes',
      'voice_process_nodejs_eventloop_lag_seconds',
      'voice_process_nodejs_eventloop_lag_p99_seconds',
    ])
      expect(text).toMatch(new RegExp(`^${name} `, 'm'));
    // Nobody connected: the lag monitor slept, and an idle loop is not late.
    expect(text).toMatch(/^voice_process_nodejs_eventloop_lag_p99_seconds 0$/m);
  });
});

describe('EventLoopLag', () => {
  // A whole scrape: one metric's collect sets the family.
  const read = async (r: Registry, name: string) =>
    (await r.metrics()).split('\n').find((l) => l.startsWith(`t_${name} `))!;
  const block = (ms: number) => {
    const end = performance.now() + ms;
    while (performance.now() < end);
  };

  it('measures the loop delay while active, and sleeps while idle', async () => {
    const r = new Registry();
    const lag = new EventLoopLag(r, 't_');
    try {
      lag.active(true);
      // Let the monitor's timer run, then block the loop 60 ms: that sample is 50 ms late or more.
      await new Promise((res) => setTimeout(res, 30));
      block(60);
      await new Promise((res) => setTimeout(res, 30));
      const max = Number((await read(r, 'nodejs_eventloop_lag_max_seconds')).split(' ')[1]);
      expect(max).toBeGreaterThanOrEqual(0.045);
      expect(max).toBeLessThan(1);
      lag.active(false);
      // Idle: the same block is not seen (the monitor is off) and the scrape reports 0.
      block(60);
      await new Promise((res) => setTimeout(res, 30));
      expect(await read(r, 'nodejs_eventloop_lag_max_seconds')).toBe('t_nodejs_eventloop_lag_max_seconds 0');
      expect(await read(r, 'nodejs_eventloop_lag_p99_seconds')).toBe('t_nodejs_eventloop_lag_p99_seconds 0');
    } finally {
      lag.close();
    }
  });
});
