import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * Starts a cluster on one machine: a redis-server and N server processes, each with its own ports
 * and node id, and stops them all. `npm run cluster` (cli.ts) and the multi-process tests use it.
 */

const REPO = resolve(import.meta.dirname, '../..');
const MAIN = join(REPO, 'cluster/src/main.ts');

export interface LaunchOptions {
  /** Server processes; default one per core. */
  nodes?: number;
  host?: string;
  /** Node i listens on basePort + 2i (HTTP/WS) and basePort + 2i + 1 (UDP). */
  basePort?: number;
  /** Use this Redis instead of starting one (then it is not stopped either). */
  redisUrl?: string;
  /** Port of the redis-server started here (default basePort - 1). */
  redisPort?: number;
  /** Ports of node i, instead of the basePort layout (tests pass free ports). */
  portsFor?: (i: number) => Promise<{ http: number; udp: number }>;
  /** Extra configuration for every node (the JSON of `--config`; the launcher sets ports and ids). */
  config?: Record<string, unknown>;
  /** Configuration for node i over everything else (a test points one node at a proxy). */
  configFor?: (i: number) => Record<string, unknown>;
  /** Where configs, data and logs go; default a fresh temporary directory, removed on stop. */
  runDir?: string;
  /** 'inherit' shows the processes' output (the CLI); 'pipe' keeps it (tests read `output()`). */
  stdio?: 'inherit' | 'pipe';
  logLevel?: string;
}

export interface LaunchedNode {
  readonly index: number;
  readonly nodeId: string;
  readonly httpPort: number;
  readonly udpPort: number;
  readonly url: string;
  readonly wsUrl: string;
  readonly process: ChildProcess;
  /** Resolves with the exit code (or the signal's name). */
  readonly exited: Promise<number | string>;
  /** What the process wrote so far (with stdio 'pipe'). */
  output(): string;
}

export interface LaunchedRedis {
  readonly url: string;
  readonly port: number;
  /** Stops the redis-server (SIGKILL when `hard`); a later `start()` brings it back on its port. */
  stop(hard?: boolean): Promise<void>;
  start(): Promise<void>;
}

export interface LaunchedCluster {
  readonly redis: LaunchedRedis;
  readonly nodes: LaunchedNode[];
  /** Starts node `index` again (after it exited), with the same ports and id. */
  restart(index: number): Promise<LaunchedNode>;
  /** Stops every node (SIGTERM, then SIGKILL after 5 s) and the redis-server. Idempotent. */
  stop(): Promise<void>;
}

async function waitFor(what: string, ms: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`${what} not ready within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function redisAnswers(port: number): Promise<boolean> {
  const { createConnection } = await import('node:net');
  return new Promise((res) => {
    const s = createConnection({ port, host: '127.0.0.1' }, () => s.write('PING\r\n'));
    s.setTimeout(500, () => (s.destroy(), res(false)));
    s.on('data', (d) => (s.destroy(), res(d.toString().startsWith('+PONG'))));
    s.on('error', () => res(false));
  });
}

function exitOf(p: ChildProcess): Promise<number | string> {
  if (p.exitCode !== null) return Promise.resolve(p.exitCode);
  if (p.signalCode !== null) return Promise.resolve(p.signalCode);
  return once(p, 'exit').then(([code, signal]) => (code as number | null) ?? (signal as string));
}

async function terminate(p: ChildProcess, graceMs = 5000): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = exitOf(p);
  p.kill('SIGTERM');
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

export async function launchCluster(opts: LaunchOptions = {}): Promise<LaunchedCluster> {
  const count = opts.nodes ?? availableParallelism();
  if (!Number.isInteger(count) || count < 1 || count > 64) throw new TypeError('nodes must be 1..64');
  const host = opts.host ?? '127.0.0.1';
  const basePort = opts.basePort ?? 7800;
  const ownRun = opts.runDir === undefined;
  const runDir = opts.runDir ?? mkdtempSync(join(tmpdir(), 'voice-cluster-'));
  mkdirSync(runDir, { recursive: true });
  const stdio = opts.stdio ?? 'pipe';

  // Redis: our own, with an append-only file in the run directory, so a stopped and restarted
  // Redis (the outage test) comes back with its data, as the production configuration does.
  const redisPort = opts.redisPort ?? basePort - 1;
  const redisDir = join(runDir, 'redis');
  mkdirSync(redisDir, { recursive: true });
  let redisProc: ChildProcess | null = null;
  const startRedis = async (): Promise<void> => {
    redisProc = spawn(
      'redis-server',
      [
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--dir',
        redisDir,
        '--save',
        '',
        '--appendonly',
        'yes',
      ],
      { stdio: stdio === 'inherit' ? ['ignore', 'ignore', 'inherit'] : 'ignore' },
    );
    const p = redisProc;
    await waitFor('redis-server', 5000, async () => {
      if (p.exitCode !== null) throw new Error(`redis-server exited (${p.exitCode}); is ${redisPort} free?`);
      return redisAnswers(redisPort);
    });
  };
  const redisUrl = opts.redisUrl ?? `redis://127.0.0.1:${redisPort}`;
  if (!opts.redisUrl) await startRedis();
  const redis: LaunchedRedis = {
    url: redisUrl,
    port: redisPort,
    async stop(hard = false) {
      const p = redisProc;
      if (!p) return;
      redisProc = null;
      if (hard) {
        const exited = exitOf(p);
        p.kill('SIGKILL');
        await exited;
      } else await terminate(p);
    },
    start: startRedis,
  };

  const nodes: LaunchedNode[] = [];
  const startNode = async (i: number): Promise<LaunchedNode> => {
    const nodeId = `node-${i + 1}`;
    const known = nodes[i];
    const ports = known
      ? { http: known.httpPort, udp: known.udpPort }
      : ((await opts.portsFor?.(i)) ?? { http: basePort + 2 * i, udp: basePort + 2 * i + 1 });
    const httpPort = ports.http;
    const udpPort = ports.udp;
    const dataDir = join(runDir, nodeId);
    mkdirSync(dataDir, { recursive: true });
    const configFile = join(runDir, `${nodeId}.json`);
    writeFileSync(
      configFile,
      JSON.stringify(
        {
          ...opts.config,
          nodeId,
          host,
          port: httpPort,
          udpPort,
          dataDir,
          redisUrl,
          logLevel: opts.logLevel ?? opts.config?.['logLevel'] ?? 'info',
          ...opts.configFor?.(i),
        },
        null,
        2,
      ),
    );
    const child = spawn(
      process.execPath,
      ['--conditions=source', '--import', 'tsx', MAIN, '--config', configFile],
      {
        cwd: REPO,
        env: { ...process.env, VOICE_CONFIG: '' },
        stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
    child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-200_000)));
    const node: LaunchedNode = {
      index: i,
      nodeId,
      httpPort,
      udpPort,
      url: `http://${host}:${httpPort}`,
      wsUrl: `ws://${host}:${httpPort}/ws`,
      process: child,
      exited: exitOf(child),
      output: () => out,
    };
    nodes[i] = node;
    await waitFor(`${nodeId} (${node.url}/readyz)`, 30_000, async () => {
      if (child.exitCode !== null) throw new Error(`${nodeId} exited with ${child.exitCode}: ${out}`);
      return (await fetch(`${node.url}/readyz`)).ok;
    });
    return node;
  };

  let stopped: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      await Promise.all(nodes.map((n) => terminate(n.process)));
      await redis.stop();
      if (ownRun) rmSync(runDir, { recursive: true, force: true });
    })());

  try {
    // Started in turn: each compiles the sources on its first run, and the machine may have few cores.
    for (let i = 0; i < count; i++) await startNode(i);
  } catch (err) {
    await stop();
    throw err;
  }
  return { redis, nodes, restart: startNode, stop };
}
