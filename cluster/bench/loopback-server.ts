/**
 * The server as the real-time benchmarks start it in their own process: loopback, free ports, no
 * logs, and log-in limits raised (every bot of every run logs in from 127.0.0.1 as a new user).
 */
import { loadConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';

export interface LoopbackServerOptions {
  /** The channels' `clock.timeStretch` (default: the product's). */
  readonly timeStretch?: boolean;
  /** prom-client's default process metrics, as the product runs them (default: off, as tests). */
  readonly defaultMetrics?: boolean;
}

export function startLoopbackServer(dataDir: string, o: LoopbackServerOptions = {}): Promise<RunningServer> {
  const config = loadConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      udpPort: 0,
      dataDir,
      logLevel: 'silent',
      limits: { newUserBurstPerAddress: 1e6, channelCreateBurstPerAddress: 1e6 },
      ...(o.timeStretch !== undefined ? { clock: { timeStretch: o.timeStretch } } : {}),
    },
  });
  return startServer(config, { defaultMetrics: o.defaultMetrics ?? false });
}
