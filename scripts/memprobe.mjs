/**
 * A preload for memory investigations (not used by the server): on SIGUSR2 the process collects
 * garbage fully (run node with --expose-gc) and writes one `MEMPROBE {...}` line to stderr with
 * RSS, V8 heap and external memory in MiB. If RSS grows while `heapUsed` after GC does not, the
 * growth is native memory (uWS buffers, the allocator's arenas), not JavaScript objects.
 *
 *   NODE_OPTIONS=--expose-gc node --import ./scripts/memprobe.mjs ... ; kill -USR2 <pid>
 */
import { getHeapStatistics } from 'node:v8';

process.on('SIGUSR2', () => {
  if (typeof globalThis.gc !== 'function') process.stderr.write('MEMPROBE needs --expose-gc\n');
  globalThis.gc?.();
  globalThis.gc?.();
  const m = process.memoryUsage();
  const mib = (n) => Math.round((n / 1048576) * 10) / 10;
  const figures = {
    rss: mib(m.rss),
    heapTotal: mib(m.heapTotal),
    heapUsed: mib(m.heapUsed),
    external: mib(m.external),
    arrayBuffers: mib(m.arrayBuffers),
    v8Malloced: mib(getHeapStatistics().malloced_memory),
  };
  process.stderr.write(`MEMPROBE ${JSON.stringify(figures)}\n`);
});
