import type { us_listen_socket } from 'uWebSockets.js';
import { AddressBudget } from './app/address-budget.js';
import { ChannelService } from './app/channels.js';
import type { AppContext } from './app/context.js';
import { SessionManager } from './app/sessions.js';
import { UserPurge } from './app/user-purge.js';
import { UserService } from './app/users.js';
import type { Config } from './config.js';
import { Boundary } from './boundary.js';
import { ConfigError } from './errors.js';
import { RestRouter } from './http/server.js';
import { registerRoutes } from './http/routes.js';
import { createLogger, type Logger } from './log.js';
import { Metrics } from './metrics.js';
import { KeyedRateLimiter } from './ratelimit.js';
import { mountSignaling } from './signaling/ws.js';
import { ChannelRouter } from './app/voice-router.js';
import { openBackends } from './backends.js';
import { loadUws } from './uws.js';
import { createOpus, loadNativeAead, loadNativeUdp, type VoiceUdpAddon } from '@voice/media';
import { nodeCryptoAead } from '@voice/protocol';
import {
  KernelUdpCounters,
  ServerVoicePlane,
  registerKernelUdpMetrics,
  registerVoiceMetrics,
} from './voice/plane.js';

export interface StartOptions {
  logger?: Logger;
  /** Accept uWebSockets.js's JS fallback (slow) instead of refusing to start. */
  allowUwsFallback?: boolean;
  /** Default metrics (event loop lag, memory) cost a timer; tests turn them off. */
  defaultMetrics?: boolean;
  /**
   * The sendmmsg addon to use instead of loading media/native's build; null runs as a machine
   * where it is not built (tests of the fallback and of `udpSend: 'sendmmsg'`'s refusal).
   */
  udpAddon?: VoiceUdpAddon | null;
}

export interface RunningServer {
  readonly config: Config;
  readonly httpPort: number;
  readonly udpPort: number;
  readonly url: string;
  readonly ctx: AppContext;
  readonly sessions: SessionManager;
  readonly voice: ServerVoicePlane;
  /** Places channels on nodes and routes voice calls to their owner. */
  readonly channelRouter: ChannelRouter;
  /**
   * Live drain: /readyz answers 503 {draining: true}, no new channel comes here, and every channel
   * this node owns moves, with its members, to another live node. Then call close().
   */
  drain(): Promise<void>;
  /** Where whatever is caught is counted and logged at a bounded rate (main.ts adds the process's faults). */
  readonly boundary: Boundary;
  /** Idempotent: stops listening, closes connections, sessions, voice and the store, in that order. */
  close(): Promise<void>;
}

/**
 * Wires everything: state backends, services, REST, signaling. The only place that decides how
 * the parts fit; each part gets what it needs through its constructor.
 */
export async function startServer(config: Config, opts: StartOptions = {}): Promise<RunningServer> {
  const log = opts.logger ?? createLogger(config);
  const uws = loadUws({
    allowFallback: opts.allowUwsFallback ?? process.env.VOICE_ALLOW_UWS_FALLBACK === '1',
    warn: (m) => log.warn(m),
  });
  const metrics = new Metrics({ defaultMetrics: opts.defaultMetrics ?? true });
  const boundary = new Boundary(log, metrics);
  // A throwing bus listener is reported like any boundary; the other listeners still run.
  const state = await openBackends(config, log, (err) => void boundary.report('bus_listener', err));
  const ctx: AppContext = {
    config,
    log,
    metrics,
    store: state.store,
    directory: state.directory,
    bus: state.bus,
    requests: state.requests,
    now: Date.now,
  };

  const addressBudget = new AddressBudget(config.limits, metrics);
  const users = new UserService(ctx, addressBudget);
  const channels = new ChannelService(ctx, addressBudget);
  const sessions = new SessionManager(ctx, users, channels);
  let voice: ServerVoicePlane;
  let opus: Awaited<ReturnType<typeof createOpus>>;
  // Persistent OpenSSL contexts (allocation-free) when the addon is built; node:crypto otherwise.
  const aead = loadNativeAead() ?? nodeCryptoAead;
  // Batched UDP send (sendmmsg, allocation-free) when the addon is built; node:dgram otherwise.
  const udpAddon =
    config.udpSend === 'dgram' ? null : opts.udpAddon !== undefined ? opts.udpAddon : loadNativeUdp();
  try {
    if (config.udpSend === 'sendmmsg' && !udpAddon)
      throw new ConfigError(
        'udpSend is sendmmsg but the voice_udp addon is not built (Linux only): see scripts/build-native.mjs',
      );
    opus = await createOpus({ backend: config.opusBackend });
    voice = await ServerVoicePlane.start({
      ctx,
      sessions,
      opus,
      host: config.udpHost ?? config.host,
      port: config.udpPort,
      publicHost: config.publicHost,
      aead,
      udpAddon,
      report: (where, err) => void boundary.report(where, err),
    });
    if (config.udpSend === 'sendmmsg' && voice.udpEgress !== 'sendmmsg') {
      await voice.close();
      throw new ConfigError('udpSend is sendmmsg but the voice socket exposes no descriptor here');
    }
  } catch (err) {
    // No Opus backend, or the UDP port is taken: nothing opened so far may outlive the failure.
    await sessions.close();
    await state.close();
    throw err;
  }
  const channelRouter = new ChannelRouter(ctx, voice, sessions, state, () => ({
    nodeId: config.nodeId,
    udpHost: config.publicHost ?? config.udpHost ?? config.host,
    udpPort: voice.port,
  }));
  sessions.voice = channelRouter;
  registerVoiceMetrics(metrics.registry, voice);
  // Linux only: absent (not zero) where /proc/net/snmp cannot be read.
  const kernelUdp = KernelUdpCounters.open();
  if (kernelUdp) registerKernelUdpMetrics(metrics.registry, kernelUdp);
  log.info(
    { backend: opus.backend, aead: aead.name, udpSend: voice.udpEgress, udpPort: voice.port },
    'voice plane ready',
  );
  let ready = false;
  let closing = false;
  const isReady = () => ready && !closing;

  const requestLimiter = new KeyedRateLimiter(config.limits.requestsPerSecond, config.limits.requestBurst);
  const loginLimiter = new KeyedRateLimiter(config.limits.loginsPerMinute / 60, config.limits.loginBurst);
  const connectionLimiter = new KeyedRateLimiter(config.limits.messagesPerSecond, config.limits.messageBurst);
  const sweeper = setInterval(
    boundary.guard('sweeper', () => {
      requestLimiter.sweep();
      loginLimiter.sweep();
      addressBudget.sweep();
      connectionLimiter.sweep();
    }),
    60_000,
  );
  sweeper.unref();

  const app = uws.App();
  const closeSockets = mountSignaling(app, {
    ctx,
    users,
    channels,
    sessions,
    boundary,
    connectionLimiter,
    perAddress: new Map(),
    ready: isReady,
  });
  const router = new RestRouter({
    log,
    metrics,
    boundary,
    maxBodyBytes: config.limits.maxBodyBytes,
    limiter: requestLimiter,
    trustProxy: config.trustProxy,
  });
  registerRoutes(router, {
    ctx,
    users,
    channels,
    sessions,
    loginLimiter,
    ready: () => isReady() && !channelRouter.draining,
    draining: () => channelRouter.draining,
  });
  app.any('/*', router.handle);

  let listenSocket: us_listen_socket;
  try {
    listenSocket = await new Promise<us_listen_socket>((resolve, reject) => {
      // Exclusive: uWS listens with SO_REUSEPORT by default, so a second server would share the port silently.
      // The shipped typings lack this overload and the constant; both exist in the binary (v20.30).
      const listen = app.listen.bind(app) as unknown as (
        host: string,
        port: number,
        options: number,
        cb: (ls: us_listen_socket | false) => void,
      ) => void;
      const exclusive = (uws as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number })
        .LIBUS_LISTEN_EXCLUSIVE_PORT;
      listen(config.host, config.port, exclusive, (ls) => {
        if (ls) resolve(ls);
        else
          reject(
            new ConfigError(
              `cannot listen on ${config.host}:${config.port} (in use, or not an address of this host)`,
            ),
          );
      });
    });
  } catch (err) {
    // Nothing may outlive a failed start: the UDP socket, timers and the store close here.
    clearInterval(sweeper);
    await sessions.close();
    await channelRouter.close();
    await voice.close();
    await state.close();
    throw err;
  }
  const purge = new UserPurge(ctx);
  purge.start();
  const httpPort = uws.us_socket_local_port(listenSocket);
  const udpPort = voice.port;
  channelRouter.setWsUrl(config.cluster.publicWsUrl ?? `ws://${config.host}:${httpPort}/ws`);
  await channelRouter.announce();
  ready = true;
  const url = `http://${config.host}:${httpPort}`;
  log.info(
    { url, ws: `ws://${config.host}:${httpPort}/ws`, mode: state.mode, dataDir: config.dataDir },
    'listening',
  );

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closed ??= (async () => {
      closing = true;
      clearInterval(sweeper);
      uws.us_listen_socket_close(listenSocket);
      await purge.close();
      await sessions.close();
      closeSockets();
      await channelRouter.close();
      await voice.close();
      await state.close();
      log.info('closed');
    })());

  const drain = (): Promise<void> => channelRouter.drain();
  return { config, httpPort, udpPort, url, ctx, sessions, voice, channelRouter, boundary, drain, close };
}
