import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ADMIN_TOKEN, freeUdpPort } from './server.js';

/**
 * Runs the real entry point (cluster/src/main.ts) as its own process, as `npm start` does: a test
 * can kill it and start it again on the same port and data directory (an in-process server cannot
 * listen on its old port again). Resolves once it logs "listening".
 */
export async function startServerProcess(
  dataDir: string,
  port: number,
  stderr: 'pipe' | 'inherit' = 'pipe',
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    ['--conditions=source', '--import', 'tsx', join(import.meta.dirname, '../cluster/src/main.ts')],
    {
      env: {
        ...process.env,
        VOICE_HOST: '127.0.0.1',
        VOICE_PORT: String(port),
        VOICE_UDP_PORT: String(await freeUdpPort()),
        VOICE_DATA_DIR: dataDir,
        VOICE_ADMIN_TOKEN: ADMIN_TOKEN,
        VOICE_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', stderr],
    },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) resolve();
    });
    child.once('exit', (c) => reject(new Error(`server exited ${c}: ${out}`)));
  });
  return child;
}

/** SIGTERM, then waits for the exit (a clean shutdown flushes the store). */
export async function stopServerProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}
