import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { launchCluster } from './launcher.js';

/**
 * `npm run cluster -- [--nodes N] [--base-port 7800] [--host 127.0.0.1] [--redis-url URL] [--config FILE]`:
 * a redis-server and N server processes on this machine until Ctrl-C, which stops them all.
 * `--config` is a JSON configuration every node starts from (limits, codec defaults); the launcher
 * sets each node's ports, ids, data directory and Redis.
 */
const { values } = parseArgs({
  options: {
    nodes: { type: 'string' },
    'base-port': { type: 'string' },
    host: { type: 'string' },
    'redis-url': { type: 'string' },
    config: { type: 'string' },
  },
});
let config: Record<string, unknown> | undefined;
if (values.config !== undefined) {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(values.config, 'utf8'));
  } catch (err) {
    parsed = err;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || parsed instanceof Error) {
    const why = parsed instanceof Error ? parsed.message : 'not a JSON object';
    process.stderr.write(`--config ${values.config}: ${why}\n`);
    process.exit(2);
  }
  config = parsed as Record<string, unknown>;
}
const cluster = await launchCluster({
  ...(values.nodes !== undefined && { nodes: Number(values.nodes) }),
  ...(values['base-port'] !== undefined && { basePort: Number(values['base-port']) }),
  ...(values.host !== undefined && { host: values.host }),
  ...(values['redis-url'] !== undefined && { redisUrl: values['redis-url'] }),
  ...(config !== undefined && { config }),
  stdio: 'inherit',
});
process.stdout.write(
  `cluster up: redis ${cluster.redis.url}\n` +
    cluster.nodes.map((n) => `  ${n.nodeId}: ${n.url} (REST, ${n.wsUrl}), udp ${n.udpPort}\n`).join('') +
    'Ctrl-C stops everything.\n',
);
let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  process.stdout.write('stopping the cluster...\n');
  cluster.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`stopping failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
