import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  loadConfig,
  startServer,
  type ConfigInput,
  type RunningServer,
  type StartOptions,
} from '../cluster/src/index.js';
import { RestClient, SignalingClient } from '../client/src/index.js';

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === 'object' && addr ? addr.port : 0));
    });
  });
}

/** A free UDP port on 127.0.0.1. */
export async function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789';

export interface TestServer extends RunningServer {
  dataDir: string;
  rest(token?: string): RestClient;
  wsUrl: string;
  /** Logs in a fresh user and opens its signaling connection. */
  user(
    nickname: string,
    opts?: { admin?: boolean },
  ): Promise<{ token: string; ws: SignalingClient; rest: RestClient }>;
  stop(): Promise<void>;
}

/** Starts a real server on free ports with a fresh data directory (or the given one). */
export async function startTestServer(
  overrides: ConfigInput = {},
  dataDir?: string,
  start: Omit<StartOptions, 'defaultMetrics'> = {},
): Promise<TestServer> {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'voice-test-'));
  const config = loadConfig({
    env: {},
    overrides: {
      host: '127.0.0.1',
      port: 0,
      udpPort: await freeUdpPort(),
      dataDir: dir,
      adminToken: ADMIN_TOKEN,
      logLevel: 'silent',
      ...overrides,
      // Every test client comes from 127.0.0.1: the per-address budgets would count all of a
      // file's users as one host's. Tests of those budgets set their own.
      limits: {
        newUserBurstPerAddress: 100_000,
        channelCreateBurstPerAddress: 100_000,
        ...overrides.limits,
      },
    },
  });
  const server = await startServer(config, { ...start, defaultMetrics: false });
  const wsUrl = `ws://127.0.0.1:${server.httpPort}/ws`;
  const clients: SignalingClient[] = [];
  const t: TestServer = {
    ...server,
    close: server.close,
    dataDir: dir,
    wsUrl,
    rest: (token?: string) => new RestClient(server.url, token),
    user: async (nickname, opts = {}) => {
      const rest = new RestClient(server.url);
      const { token } = await rest.login(nickname);
      const ws = await SignalingClient.connect({
        url: wsUrl,
        token,
        ...(opts.admin ? { adminToken: ADMIN_TOKEN } : {}),
      });
      clients.push(ws);
      return { token, ws, rest };
    },
    stop: async () => {
      for (const c of clients) c.close();
      await server.close();
      if (!dataDir) rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}
