#!/usr/bin/env node
/**
 * The desktop extension: the Node process that owns audio and the network for the UI.
 *
 *   Neutralino starts it with `node .../main.js` and writes its credentials to stdin (the default).
 *   `--dev [--port N] [--static DIR]`: serves the built UI and a token-guarded WebSocket instead, so
 *   the same UI runs in a plain browser; prints `{"url": ...}` on stdout.
 *   `--audio device` (default) or `--audio file --in a.wav [--out b.wav]`: sound card or WAV files.
 *   `--streams N` (1-8, default 4): speakers received separately and mixed here (1: the server mixes).
 *
 * It exits by itself when its UI goes away (Neutralino's socket drops), after closing everything.
 */
import { parseArgs } from 'node:util';
import { DeviceBackend, EXTENSION_POOL_SIZE, libuvPoolSize } from '../audio/device-backend.js';
import { AudioDeviceError } from '../audio/errors.js';
import { AudioEngine } from '../audio/engine.js';
import { FileBackend } from '../audio/file-backend.js';
import type { AudioBackend } from '../audio/types.js';
import { DesktopController } from './controller.js';
import { DevSocketLink, NeutralinoLink, readCredentials, type UiLink } from './links.js';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      dev: { type: 'boolean', default: false },
      port: { type: 'string' },
      static: { type: 'string' },
      token: { type: 'string' },
      audio: { type: 'string', default: 'device' },
      in: { type: 'string' },
      out: { type: 'string' },
      streams: { type: 'string' },
    },
    strict: true,
  });
  const streams = values.streams === undefined ? undefined : Number(values.streams);
  if (streams !== undefined && !(Number.isInteger(streams) && streams >= 1 && streams <= 8))
    throw new TypeError('--streams must be an integer in [1, 8]');
  let backend: AudioBackend;
  let backendError: AudioDeviceError | null = null;
  if (values.audio === 'file') {
    backend = new FileBackend({
      ...(values.in ? { input: values.in } : {}),
      ...(values.out ? { outputPath: values.out } : {}),
    });
  } else {
    // Too late to change here (the pool has started): the launcher sets it.
    if (libuvPoolSize() < EXTENSION_POOL_SIZE)
      process.stderr.write(
        `voice extension: UV_THREADPOOL_SIZE is ${libuvPoolSize()}, the launcher sets ${EXTENSION_POOL_SIZE}: ` +
          'fewer sound streams stuck on dead devices are allowed before opening one is refused\n',
      );
    try {
      backend = DeviceBackend.load();
    } catch (err) {
      // No device library on this platform (macOS arm64): run without sound devices (silence in,
      // nothing out) and tell the UI, rather than leave the window without its extension.
      backendError = err instanceof AudioDeviceError ? err : new AudioDeviceError('BACKEND_UNAVAILABLE');
      backend = new FileBackend({});
    }
  }
  const engine = new AudioEngine({ backend });
  let link: UiLink;
  if (values.dev) {
    const dev = await DevSocketLink.listen({
      ...(values.port ? { port: Number(values.port) } : {}),
      ...(values.static ? { staticDir: values.static } : {}),
      ...(values.token ? { token: values.token } : {}),
    });
    process.stdout.write(`${JSON.stringify({ url: dev.url, port: dev.port, token: dev.token })}\n`);
    link = dev;
  } else {
    link = await NeutralinoLink.connect(await readCredentials(process.stdin));
  }
  const controller = new DesktopController({
    engine,
    send: (e) => link.send(e),
    ...(backendError ? { backendError } : {}),
    ...(streams !== undefined ? { voice: { streams } } : {}),
  });
  link.onCommand = (raw) => void controller.handle(raw);
  let stopping = false;
  const stop = async (code: number): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const force = setTimeout(() => process.exit(code), 3000);
    force.unref();
    await controller.close().catch(() => undefined);
    await engine.close().catch(() => undefined);
    link.close();
    process.exit(code);
  };
  void link.closed.then(() => stop(0));
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGINT', () => void stop(0));
}

main().catch((err: unknown) => {
  process.stderr.write(`voice extension: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
