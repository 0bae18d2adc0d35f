/**
 * The server as the real-time benchmarks start it in their own process: loopback, free ports, no
 * logs, and log-in limits raised (every bot of every run logs in from 127.0.0.1 as a new user).
 */
import { loadConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';

export function startLoopbackServer(dataDir: string): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      udpPort: 0,
      dataDir,
      logLevel: 'silent',
      limits: { newUserBurstPerAddress: 1e6, channelCreateBurstPerAddress: 1e6 },
    },
  });
  return startServer(config, { defaultMetrics: false });
}
