import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventLoopLag } from '../src/event-loop-lag.js';
import { TickScheduler } from '../src/voice/scheduler.js';
import { createOpus } from '@voice/media';
import { connectBot, heard, listen } from '../../test-support/bots.js';
import { ToneSource } from '../../client/src/index.js';
import { SLEEP_AFTER_MS } from '../src/voice/channel.js';
import { matchingSamples } from './scenarios/topology.js';

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

/** Wake-ups of `pid` over the next `ms`: its main thread's, and all its other threads' together. */
async function wakeupsOver(pid: number, ms: number): Promise<{ main: number; others: number }> {
  const a = wakeups(pid);
  await new Promise((r) => setTimeout(r, ms));
  const b = wakeups(pid);
  let others = 0;
  for (const [tid, n] of b) if (tid !== String(pid)) others += n - (a.get(tid) ?? 0);
  return { main: b.get(String(pid))! - a.get(String(pid))!, others };
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
    const { main, others } = await wakeupsOver(child.pid!, WINDOW_MS);
    // The timers that remain on the main thread while nobody is connected, per second:
    // uWebSockets' Date-header clock (1 s): 1; the node's cluster announce (2 s, it writes the
    // registry entry and its follow-up wakes once more): 1; session-entry refresh and the foreign
    // voice-address sweep (5 s each): 0.4. That is 2.4/s, about 7 in 3 s; the bound leaves room
    // for the timers' phases and V8's own tasks. prom-client's 10 ms event-loop-lag monitor alone was 300
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
    // Nobody connected: no clock ran, so no delay was sampled.
    expect(text).toMatch(/^voice_process_nodejs_eventloop_lag_p99_seconds 0$/m);
  });

  it('a channel whose members are silent lets its clock sleep: the process wakes as if idle, and at once for speech', async () => {
    const pid = child.pid!;
    const opus = await createOpus();
    // The product's heartbeat period (5 s), not the tests' 500 ms: each heartbeat wakes the server.
    const opts = { channel: 'Sleep', heartbeatMs: 5_000 };
    const a = await connectBot(url, 'sleep-a', opus, { ...opts, create: true });
    const b = await connectBot(url, 'sleep-b', opus, opts);
    try {
      await Promise.all([a.waitReady(3000), b.waitReady(3000)]);
      await new Promise((r) => setTimeout(r, SLEEP_AFTER_MS + 500));
      const { main, others } = await wakeupsOver(pid, WINDOW_MS);
      console.log(
        `two silent members, ${WINDOW_MS} ms: main thread ${main} wake-ups, other threads ${others}`,
      );
      // As idle (above, about 7) plus what two members bring: their heartbeats (about one each per
      // 5 s), the 2 s rounds of their stats over WebSocket: 15-18 measured. The channel's clock
      // alone woke it 150 times in 3 s before it could sleep.
      expect(main).toBeLessThanOrEqual(25);
      // The metronome thread sleeps too.
      expect(others).toBeLessThanOrEqual(12);
      const metrics = await (await fetch(`${url}/metrics`)).text();
      expect(matchingSamples(metrics, 'voice_channel_clock_sleeps', {}).reduce((x, y) => x + y, 0)).toBe(1);
      // The first packet wakes it: b hears a at level (forwarded, then mixed with nobody).
      a.startVoice(new ToneSource(440, -20));
      await listen([b], 1000, 300);
      expect(heard(b, 440)).toBeGreaterThan(-23);
      expect(heard(b, 440)).toBeLessThan(-17);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("samples the event loop lag at the channel clock's wake-ups while a member is in a channel", async () => {
    const lagMax = async () =>
      Number(
        /^voice_process_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(
          await (await fetch(`${url}/metrics`)).text(),
        )![1],
      );
    await lagMax(); // starts a fresh window
    const bot = await connectBot(url, 'lag-a', await createOpus(), { channel: 'Lag', create: true });
    try {
      await bot.waitReady(3000);
      await new Promise((r) => setTimeout(r, 500));
      // The channel's clock woke about 25 times and each wake-up was recorded: some lateness.
      expect(await lagMax()).toBeGreaterThan(0);
    } finally {
      await bot.close();
    }
  });
});

describe('EventLoopLag', () => {
  // One whole scrape (the first metric's collect sets the family, and resets its window).
  const scrape = async (r: Registry) => {
    const v = new Map<string, number>();
    for (const l of (await r.metrics()).split('\n'))
      if (l.startsWith('t_')) v.set(l.split(' ')[0]!.slice(2), Number(l.split(' ')[1]));
    return v;
  };

  it('reports the lateness the clock recorded since the last scrape, and 0 when none was', async () => {
    const r = new Registry();
    const lag = new EventLoopLag(r, 't_');
    for (let i = 1; i <= 100; i++) lag.record(i / 10); // 0.1 .. 10 ms
    const first = await scrape(r);
    expect(first.get('nodejs_eventloop_lag_min_seconds')).toBeCloseTo(0.0001, 6);
    expect(first.get('nodejs_eventloop_lag_max_seconds')).toBeCloseTo(0.01, 4);
    expect(first.get('nodejs_eventloop_lag_mean_seconds')).toBeCloseTo(0.00505, 4);
    expect(first.get('nodejs_eventloop_lag_p50_seconds')).toBeCloseTo(0.005, 3);
    expect(first.get('nodejs_eventloop_lag_p99_seconds')).toBeCloseTo(0.0099, 3);
    // The scrape's own lag (setImmediate) is measured either way.
    expect(first.get('nodejs_eventloop_lag_seconds')).toBeGreaterThan(0);
    // The scrape reset the window: nothing recorded since, nothing measured.
    const second = await scrape(r);
    expect(second.get('nodejs_eventloop_lag_max_seconds')).toBe(0);
    expect(second.get('nodejs_eventloop_lag_p99_seconds')).toBe(0);
  });

  it("is fed by the channels' clock: one lateness per wake-up, none while no channel is active", async () => {
    const late: number[] = [];
    const s = new TickScheduler(20, 8, undefined, 'timer', null, (ms) => late.push(ms));
    try {
      await new Promise((r) => setTimeout(r, 100));
      expect(late).toEqual([]);
      let ticks = 0;
      const h = s.add({ due: () => void ticks++ });
      await new Promise((r) => setTimeout(r, 300));
      h.remove();
      const n = late.length;
      // One channel wakes the clock once a frame (its phase only), and each wake-up is recorded.
      expect(n).toBeGreaterThanOrEqual(ticks);
      expect(n).toBeGreaterThanOrEqual(10);
      expect(n).toBeLessThanOrEqual(16);
      for (const ms of late) expect(ms).toBeGreaterThanOrEqual(0);
      await new Promise((r) => setTimeout(r, 100));
      expect(late.length).toBe(n);
    } finally {
      s.close();
    }
  });
});
