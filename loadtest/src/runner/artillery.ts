import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export const ARTILLERY_VERSION = '2.0.21';

/** loadtest/artillery: Artillery's own package (not a root workspace: ~600 MB), preload and engine. */
export const artilleryDir = (root: string): string => join(root, 'loadtest', 'artillery');

function installedVersion(dir: string): string | null {
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'node_modules/artillery/package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? null;
  } catch {
    return null;
  }
}

/**
 * Installs Artillery from loadtest/artillery/package-lock.json when it is missing or not the pinned
 * version. Its install would download a Playwright browser: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1.
 */
export function ensureArtillery(root: string, log: (l: string) => void): void {
  const dir = artilleryDir(root);
  if (installedVersion(dir) === ARTILLERY_VERSION) return;
  log(`installing Artillery ${ARTILLERY_VERSION} into loadtest/artillery (once; about 600 MB)`);
  const env: NodeJS.ProcessEnv = { ...process.env, PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: '1' };
  if (existsSync('/usr/include/node/node_api.h')) env.npm_config_nodedir ??= '/usr';
  const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: dir,
    env,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (r.status !== 0 || installedVersion(dir) !== ARTILLERY_VERSION) {
    throw new Error(`npm ci in ${dir} failed (exit ${r.status})`);
  }
}

export interface ArtilleryRun {
  readonly root: string;
  readonly script: string;
  readonly target: string;
  readonly outJson: string;
  readonly logFile: string;
  readonly egressLog: string;
  readonly env: NodeJS.ProcessEnv;
  readonly deadlineSeconds: number;
  /**
   * Niceness of the Artillery process and all its threads (0: as the runner). On a machine whose
   * cores the generator shares with the server it measures, a niced generator does not preempt it.
   */
  readonly nice?: number;
  readonly onStart?: (pid: number) => void;
  readonly onLine?: (line: string) => void;
}

/** The environment that keeps Artillery on this machine and lets it find our engine. */
export function artilleryEnv(root: string, egressLog: string, extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const dir = artilleryDir(root);
  return {
    ...process.env,
    ...extra,
    NODE_PATH: join(dir, 'engines'),
    ARTILLERY_DISABLE_TELEMETRY: 'true',
    VOICE_LT_EGRESS: 'fail',
    VOICE_LT_EGRESS_LOG: egressLog,
  };
}

/** The node arguments that run Artillery with the preload (telemetry stub, egress guard). */
export function artilleryArgs(root: string, args: readonly string[]): string[] {
  const dir = artilleryDir(root);
  return ['--require', join(dir, 'preload.js'), join(dir, 'node_modules/artillery/bin/run'), ...args];
}

/** Runs `artillery run`; resolves with its exit code (non-zero when an `ensure` check failed). */
export async function runArtillery(r: ArtilleryRun): Promise<{ code: number; timedOut: boolean }> {
  const node = [
    process.execPath,
    ...artilleryArgs(r.root, ['run', '--target', r.target, '--output', r.outJson, r.script]),
  ];
  // `nice` execs node in the same process: the pid is Artillery's, and every thread it starts
  // (its workers, V8's, libuv's) inherits the niceness.
  const argv = r.nice ? ['nice', '-n', String(r.nice), ...node] : node;
  const child = spawn(argv[0]!, argv.slice(1), {
    env: artilleryEnv(r.root, r.egressLog, r.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  r.onStart?.(child.pid!);
  const log = createWriteStream(r.logFile);
  let pending = '';
  const onData = (d: Buffer) => {
    log.write(d);
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const l of lines) r.onLine?.(l);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGTERM');
    setTimeout(() => child.kill('SIGKILL'), 5000).unref();
  }, r.deadlineSeconds * 1000);
  const code = await new Promise<number>((resolve) =>
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1))),
  );
  clearTimeout(timer);
  await new Promise<void>((res) => log.end(() => res()));
  return { code: timedOut ? 124 : code, timedOut };
}
