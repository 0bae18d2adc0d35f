import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';

/**
 * Runs a TypeScript load generator in its own process at nice 10: on a 2-core machine it must not
 * steal the measured server's core. Its stdout and stderr are piped to the caller.
 */
export function spawnNiced(script: string, args: string[]): ChildProcessWithoutNullStreams {
  return spawn(
    'nice',
    ['-n', '10', process.execPath, '--conditions=source', '--import', 'tsx', script, ...args],
    {
      stdio: ['pipe', 'pipe', 'pipe'],
    },
  );
}
