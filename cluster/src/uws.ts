import { createRequire } from 'node:module';
import type * as UwsNs from 'uWebSockets.js';
import { NativeModuleError } from './errors.js';

export type Uws = typeof UwsNs;

/**
 * Loads uWebSockets.js and checks that the native binary loaded: on a Node version it has no binary
 * for, the package silently falls back to a slow JS implementation. We refuse that unless told to
 * accept it, because every latency figure we promise assumes the native server.
 */
export function loadUws(opts: { allowFallback: boolean; warn: (msg: string) => void }): Uws {
  const require = createRequire(import.meta.url);
  const uws = require('uWebSockets.js') as Uws;
  const native = String(uws.App).includes('[native code]');
  if (!native) {
    const msg =
      `uWebSockets.js native binary did not load for Node ${process.version} (ABI ${process.versions.modules}); ` +
      'it supports Node 16, 18 and 20. Run on Node 20, or set VOICE_ALLOW_UWS_FALLBACK=1 to accept the slow path.';
    if (!opts.allowFallback) throw new NativeModuleError(msg);
    opts.warn(`!!! ${msg} !!!`);
  }
  return uws;
}
