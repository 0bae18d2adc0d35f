/**
 * What presence fan-out costs the server: N users log in and join channels of 10, one after
 * another (the swarm, niced, in a child process); each join and each member update is announced to
 * every connected session (protocol README section 5), so the server writes O(N^2) frames. Prints
 * the server's CPU time over the whole join phase, per join and per frame announced.
 *
 *   node --conditions=source --import tsx cluster/bench/fanout.ts [--channels 50]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startServer } from '../src/server.js';
import { benchConfig } from './capacity.js';
import { spawnNiced } from './niced.js';

export interface FanoutResult {
  users: number;
  /** Frames the server wrote to signaling connections during the join phase. */
  framesSent: number;
  serverCpuMs: number;
  cpuUsPerFrame: number;
  setupMs: number;
}

export async function benchFanout(channels: number): Promise<FanoutResult> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-fanout-'));
  const server = await startServer(benchConfig(dir, 'auto', { slots: 16, wake: 'thread' }), {
    defaultMetrics: false,
  });
  try {
    const sent0 = await framesSent(server.url);
    const cpu0 = process.cpuUsage();
    const child = spawnNiced(join(import.meta.dirname, '../../loadtest/src/swarm.ts'), [
      ...['--server', server.url, '--channels', String(channels), '--members', '10'],
      ...['--speakers', '0', '--seconds', '0'],
    ]);
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.resume();
    await new Promise<void>((r) => child.on('exit', () => r()));
    const cpu = process.cpuUsage(cpu0);
    const frames = (await framesSent(server.url)) - sent0;
    const swarm = JSON.parse(stdout.trim().split('\n').at(-1)!) as { setupMs: number };
    const cpuMs = (cpu.user + cpu.system) / 1000;
    return {
      users: channels * 10,
      framesSent: frames,
      serverCpuMs: Math.round(cpuMs),
      cpuUsPerFrame: Number(((cpuMs * 1000) / Math.max(1, frames)).toFixed(2)),
      setupMs: Math.round(swarm.setupMs),
    };
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The server's count of signaling frames written (its /metrics). */
async function framesSent(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const line of text.split('\n'))
    if (line.startsWith('voice_ws_frames_sent_total')) n += Number(line.split(' ').at(-1));
  return n;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { channels: { type: 'string', default: '50' } } });
  const r = await benchFanout(Number(values.channels));
  for (const [k, v] of Object.entries(r)) console.log(`fanout_${k}`.padEnd(28), v);
}
