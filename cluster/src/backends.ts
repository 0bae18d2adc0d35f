import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';
import { ConfigError } from './errors.js';
import type { Logger } from './log.js';
import { LocalLeaseStore } from './routing/local-leases.js';
import { LocalNodeRegistry } from './routing/local-registry.js';
import { LocalRequestHub, LocalRequestTransport } from './routing/local-requests.js';
import { RedisLeaseStore } from './routing/redis-leases.js';
import { RedisNodeRegistry } from './routing/redis-registry.js';
import { RedisRequestTransport } from './routing/redis-requests.js';
import { TransportRequestChannel } from './routing/request-channel.js';
import type { LeaseStore, NodeRegistry, RequestChannel } from './routing/types.js';
import { LocalEventBus } from './state/local-bus.js';
import { LocalSessionDirectory } from './state/local-directory.js';
import { RedisEventBus } from './state/redis-bus.js';
import { RedisSessionDirectory } from './state/redis-directory.js';
import { RedisStore } from './state/redis-store.js';
import { SqliteStore } from './state/sqlite-store.js';
import type { BusEvent, EventBus, SessionDirectory, Store } from './state/types.js';

/** Everything that is shared with other processes in a cluster (or kept in-process alone). */
export interface Backends {
  mode: 'embedded' | 'redis';
  store: Store;
  directory: SessionDirectory;
  bus: EventBus;
  registry: NodeRegistry;
  leases: LeaseStore;
  requests: RequestChannel;
  /** Closes the backends, then the connections under them. Idempotent. */
  close(): Promise<void>;
}

/** Is Redis configured? The one fact that picks every backend. */
export const clusterMode = (config: Config): boolean =>
  config.redisUrl !== undefined || config.redis.sentinels !== undefined;

/** ioredis options from the configuration: Sentinel, ACL user and password, TLS. */
export function redisOptions(config: Config): RedisOptions {
  const r = config.redis;
  return {
    ...(r.sentinels && { sentinels: r.sentinels, name: r.sentinelName ?? 'mymaster' }),
    ...(r.username !== undefined && { username: r.username }),
    ...(r.password !== undefined && { password: r.password }),
    ...(r.tls && { tls: {} }),
    // A command waits for at most one reconnection: during an outage requests answer UNAVAILABLE
    // quickly instead of queueing, while owners keep mixing (nothing on the audio path needs Redis).
    maxRetriesPerRequest: 1,
    // A Redis that hangs (frozen, partitioned without a reset) must not hang a request either.
    commandTimeout: 2_000,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(100 * times, 1_000),
    lazyConnect: true,
  };
}

/** Builds the backends of the configured mode. Only this start-up code makes Redis connections. */
export async function openBackends(
  config: Config,
  log: Logger,
  onListenerError: (err: unknown, event: BusEvent) => void,
): Promise<Backends> {
  const onHandlerError = (err: unknown, op: string): void =>
    log.error({ err, op }, 'node request handler failed');
  const nodeId = config.nodeId;
  if (nodeId.includes(' ')) throw new ConfigError('nodeId must not contain spaces');

  if (!clusterMode(config)) {
    mkdirSync(config.dataDir, { recursive: true });
    const store = SqliteStore.open(join(config.dataDir, 'voice.db'));
    const requests = new TransportRequestChannel({
      nodeId,
      transport: new LocalRequestTransport(new LocalRequestHub(), nodeId),
      timeoutMs: config.cluster.requestTimeoutMs,
      onHandlerError,
    });
    const parts = {
      mode: 'embedded' as const,
      store,
      directory: new LocalSessionDirectory({ ttlMs: config.sessionTtlMs }),
      bus: new LocalEventBus(onListenerError),
      registry: new LocalNodeRegistry(),
      leases: new LocalLeaseStore(),
      requests,
    };
    return { ...parts, close: closer(parts, []) };
  }

  const opts = redisOptions(config);
  const command = config.redisUrl ? new Redis(config.redisUrl, opts) : new Redis(opts);
  const sub = command.duplicate();
  let lastError = '';
  for (const c of [command, sub]) {
    c.on('error', (err: Error) => {
      // ioredis reconnects by itself; log each distinct failure once, not every retry.
      if (err.message !== lastError) log.warn({ err: err.message }, 'redis connection error');
      lastError = err.message;
    });
    c.on('ready', () => {
      if (lastError !== '') log.info('redis connection ready again');
      lastError = '';
    });
  }
  try {
    await Promise.all([command.connect(), sub.connect()]);
  } catch (err) {
    command.disconnect();
    sub.disconnect();
    throw new ConfigError(
      `cannot reach Redis (${config.redisUrl ?? 'sentinels'}): ${(err as Error).message}`,
    );
  }
  const prefix = config.redis.prefix;
  const transport = new RedisRequestTransport(command, sub, prefix, nodeId);
  const bus = new RedisEventBus(command, sub, prefix, onListenerError);
  await Promise.all([transport.ready(), bus.ready()]);
  const parts = {
    mode: 'redis' as const,
    store: new RedisStore(command, prefix),
    directory: new RedisSessionDirectory(command, prefix, { ttlMs: config.sessionTtlMs }),
    bus,
    registry: new RedisNodeRegistry(command, prefix),
    leases: new RedisLeaseStore(command, prefix),
    requests: new TransportRequestChannel({
      nodeId,
      transport,
      timeoutMs: config.cluster.requestTimeoutMs,
      onHandlerError,
    }),
  };
  return { ...parts, close: closer(parts, [command, sub]) };
}

function closer(parts: Omit<Backends, 'close' | 'mode'>, connections: Redis[]): () => Promise<void> {
  let closed: Promise<void> | null = null;
  return () =>
    (closed ??= (async () => {
      await parts.requests.close();
      await parts.bus.close();
      await parts.registry.close();
      await parts.leases.close();
      await parts.directory.close();
      await parts.store.close();
      await Promise.all(connections.map((c) => c.quit().catch(() => c.disconnect())));
    })());
}
