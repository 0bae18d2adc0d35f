import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface OwnServerOptions {
  /** The repository root (cluster/dist/main.js is started from there). */
  readonly root: string;
  readonly opusBackend?: 'auto' | 'libopus' | 'native' | 'opusscript';
  /** Write a V8 CPU profile of the server into this folder when it exits. */
  readonly cpuProfDir?: string;
  readonly adminToken: string;
  readonly log: (line: string) => void;
}

export interface OwnServer {
  readonly url: string;
  readonly udpPort: number;
  readonly pid: number;
  /** SIGTERM, then SIGKILL after 10 s; idempotent. Resolves when the process has exited. */
  stop(): Promise<void>;
}

/**
 * Starts the built server (`cluster/dist/main.js`, what `npm start` runs) in its own process on free
 * ports with a fresh data folder and limits raised for one machine's worth of users from one address.
 */
export async function startOwnServer(o: OwnServerOptions): Promise<OwnServer> {
  const dir = mkdtempSync(join(tmpdir(), 'voice-loadtest-'));
  const config = {
    host: '127.0.0.1',
    port: 0,
    udpPort: 0,
    dataDir: join(dir, 'data'),
    logLevel: 'warn',
    adminToken: o.adminToken,
    opusBackend: o.opusBackend ?? 'auto',
    limits: {
      maxChannels: 100_000,
      loginsPerMinute: 10_000,
      loginBurst: 10_000,
      connectionsPerAddress: 100_000,
      requestsPerSecond: 100_000,
      requestBurst: 100_000,
      messagesPerSecond: 10_000,
      messageBurst: 10_000,
      channelsPerUser: 1_000,
      channelCreatesPerMinute: 1_000,
      channelCreateBurst: 1_000,
      newUserBurstPerAddress: 1_000_000,
      channelCreateBurstPerAddress: 1_000_000,
    },
  };
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const args = ['--max-semi-space-size=2'];
  if (o.cpuProfDir) args.push('--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`);
  args.push(join(o.root, 'cluster/dist/main.js'), '--config', file);
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    })());
  child.stderr!.on('data', (d: Buffer) => {
    for (const l of d.toString().split('\n')) if (l.trim()) o.log(`server: ${l}`);
  });
  try {
    const ready = await new Promise<{ url: string; udpPort: number }>((resolve, reject) => {
      let out = '';
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /listening: (http:\/\/[^ ]+) \(REST\).*udp:\/\/[^:]+:(\d+)/.exec(out);
        if (m) {
          child.stdout!.off('data', onData);
          resolve({ url: m[1]!, udpPort: Number(m[2]) });
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening: ${out}`)));
      setTimeout(() => reject(new Error('server did not start within 20 s')), 20_000).unref();
    });
    child.stdout!.resume();
    return { ...ready, pid: child.pid!, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
