import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from './server.js';

/** A redis-server of the test's own: a free port, no persistence, stopped by `stop()`. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  /** A new client on this server; every client made here is closed by `stop()`. */
  client(): Redis;
  /** Per-command call counts from Redis's own INFO commandstats (e.g. `{ set: 3, eval: 1 }`). */
  commandStats(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<TestRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--save',
      '',
      '--appendonly',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const clients = new Set<Redis>();
  const client = (): Redis => {
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: false, maxRetriesPerRequest: 2 });
    c.on('error', () => {}); // reconnects on its own; a test asserts on results, not on logs
    clients.add(c);
    return c;
  };

  // Ready when it answers PING (at most 5 s).
  const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
  probe.on('error', () => {});
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    try {
      await probe.connect();
      await probe.ping();
      break;
    } catch {
      probe.disconnect();
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`redis-server did not answer on ${port} within 5 s: ${output}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  clients.add(probe);

  let stopped: Promise<void> | null = null;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    client,
    async commandStats() {
      const text = await probe.info('commandstats');
      const out = new Map<string, number>();
      for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1]!, Number(m[2]));
      return out;
    },
    stop: () =>
      (stopped ??= (async () => {
        for (const c of clients) c.disconnect();
        if (child.exitCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
          await once(child, 'exit');
          clearTimeout(timer);
        }
      })()),
  };
}

/**
 * One redis-server for a test file (started before its tests, stopped after) and fresh key
 * prefixes on it: each prefix is an empty "cluster" of its own.
 */
export function useTestRedis(): { server: () => TestRedis; newPrefix: () => string } {
  let redis: TestRedis | undefined;
  let seq = 0;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return {
    server: () => {
      if (!redis) throw new Error('the test redis-server is not running (use it inside a test)');
      return redis;
    },
    newPrefix: () => `t${++seq}:`,
  };
}
