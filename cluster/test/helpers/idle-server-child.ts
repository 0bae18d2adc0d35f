/**
 * The real server, alone in its process, with the product's defaults (default metrics on, the
 * configured clock): prints its REST URL on stdout, closes when stdin ends. For tests that watch
 * the process from outside (its threads' wake-ups in /proc).
 *
 * Run with: node --conditions=source --import tsx cluster/test/helpers/idle-server-child.ts <dataDir>
 */
import { loadConfig } from '../../src/config.js';
import { startServer } from '../../src/server.js';

const config = loadConfig({
  env: {},
  overrides: { host: '127.0.0.1', port: 0, udpPort: 0, dataDir: process.argv[2]!, logLevel: 'silent' },
});
const server = await startServer(config);
process.stdout.write(`${server.url}\n`);
process.stdin.on('end', () => {
  void server.close().finally(() => process.exit(0));
});
process.stdin.resume();
