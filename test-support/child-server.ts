import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ADMIN_TOKEN, freePort, freeUdpPort } from './server.js';

/** The real entry point (cluster/src/main.ts) in its own process: a crash ends it, not the test runner. */
export interface ChildServer {
  readonly child: ChildProcess;
  readonly url: string;
  readonly wsUrl: string;
  readonly udpPort: number;
  /** Everything the process wrote to stderr and stdout so far (logs, crash traces). */
  output(): string;
  /** Null while the process runs, else how it ended. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | null;
  /** Resident memory of the server process, from /proc. */
  rssBytes(): number;
  /** The value of one Prometheus sample line, e.g. `voice_errors_total{code="BAD_FRAME",transport="http"}`. */
  metric(sample: string): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts cluster/src/main.ts with a fresh data directory and free ports; settings as VOICE_* `env`,
 * and `config` (file-only keys such as `limits`) as its JSON config file.
 */
export async function startChildServer(
  env: Record<string, string> = {},
  config?: Record<string, unknown>,
  /** Modules to preload (node --import), e.g. a fault injector. */
  preload: string[] = [],
): Promise<ChildServer> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-child-'));
  const port = await freePort();
  const udpPort = await freeUdpPort();
  const args = [
    '--conditions=source',
    '--import',
    'tsx',
    ...preload.flatMap((p) => ['--import', p]),
    join(import.meta.dirname, '../cluster/src/main.ts'),
  ];
  if (config) {
    const file = join(dir, 'config.json');
    writeFileSync(file, JSON.stringify(config));
    args.push('--config', file);
  }
  const child = spawn(process.execPath, args, {
    env: {
      ...process.env,
      VOICE_HOST: '127.0.0.1',
      VOICE_PORT: String(port),
      VOICE_UDP_PORT: String(udpPort),
      VOICE_DATA_DIR: dir,
      VOICE_ADMIN_TOKEN: ADMIN_TOKEN,
      VOICE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const ended = new Promise<void>((r) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      r();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    const onData = () => {
      if (out.includes('voice server listening')) resolve();
    };
    child.stdout.on('data', onData);
    void ended.then(() => reject(new Error(`server exited ${JSON.stringify(exit)}: ${out}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  return {
    child,
    url,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    udpPort,
    output: () => out,
    exited: () => exit,
    rssBytes: () => {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = /VmRSS:\s+(\d+) kB/.exec(status);
      if (!kb) throw new Error('no VmRSS in /proc status');
      return Number(kb[1]) * 1024;
    },
    metric: async (sample) => {
      const text = await (await fetch(`${url}/metrics`)).text();
      const line = text.split('\n').find((l) => l.startsWith(sample + ' '));
      return line ? Number(line.slice(sample.length + 1)) : 0;
    },
    stop: async () => {
      if (!exit) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await ended;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
