#!/usr/bin/env node
import { loadConfig } from './config.js';
import { ConfigError, NativeModuleError } from './errors.js';
import { startServer } from './server.js';

/** `voice-server [--config file.json]`: runs one node until SIGINT/SIGTERM. */
async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const i = args.indexOf('--config');
  const file = i >= 0 ? args[i + 1] : undefined;
  const config = loadConfig(file ? { file } : {});
  const server = await startServer(config);
  process.stdout.write(
    `voice server listening: ${server.url} (REST), ws://${config.host}:${server.httpPort}/ws (signaling), ` +
      `udp://${config.udpHost ?? config.host}:${server.udpPort} (voice); data in ${config.dataDir}\n`,
  );
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    server.ctx.log.info({ signal }, 'stopping');
    // SIGTERM (systemd stop, a rolling restart) drains first: this node's channels move to other
    // nodes with their members. Alone, there is nowhere to move them and drain returns at once.
    const before = signal === 'SIGTERM' ? server.drain() : Promise.resolve();
    before
      .catch((err: unknown) => server.ctx.log.warn({ err }, 'drain failed; closing anyway'))
      .then(() => server.close())
      .then(
        () => process.exit(0),
        () => process.exit(1),
      );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  // What escapes every boundary (ARCHITECTURE.md, "Failure policy"). A rejection nobody awaited
  // is an operation whose caller already gave up: log, count, keep serving everyone else. An
  // uncaught exception left some callback half done, with state we can no longer trust: log,
  // count, close what can be closed within a bound, and exit 1 so the supervisor restarts us
  // (systemd Restart=on-failure; clients resume with their tokens).
  const { log, metrics } = server.ctx;
  process.on('unhandledRejection', (reason) => {
    metrics.faults.inc({ event: 'unhandledRejection' });
    // Logged at the boundaries' bounded rate: a rejection per request must not flood the log.
    server.boundary.report('unhandledRejection', reason);
  });
  process.on('uncaughtException', (err) => {
    metrics.faults.inc({ event: 'uncaughtException' });
    log.fatal({ err }, 'uncaught exception: exiting for a restart');
    if (stopping) process.exit(1);
    stopping = true;
    setTimeout(() => process.exit(1), EXIT_GRACE_MS).unref();
    void server.close().finally(() => process.exit(1));
  });
}

/** How long a crashing process may spend closing connections and the store before it exits. */
const EXIT_GRACE_MS = 2_000;

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof NativeModuleError) {
    process.stderr.write(`voice-server: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`voice-server: failed to start: ${String((err as Error)?.stack ?? err)}\n`);
  process.exit(1);
});
