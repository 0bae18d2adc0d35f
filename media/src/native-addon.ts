import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * Where scripts/build-native.mjs puts our addon `name` (media/native/build/<name>.node), relative to
 * media/src and media/dist alike.
 */
export function builtAddonUrl(name: string): URL {
  return new URL(`../native/build/${name}.node`, import.meta.url);
}

/**
 * Loads one of our native addons and returns its exports when `accept` takes them (it checks the
 * functions are there and may run a self-check); null when the file is missing, does not load, or is
 * refused, and when `accept` throws. Never throws: every caller has a slower path to fall back to.
 * The URL goes through fileURLToPath: its `pathname` keeps percent escapes (a checkout under
 * "My Projects" is "My%20Projects"), where require() finds nothing.
 */
export function loadAddon<T extends object>(path: URL, accept: (mod: Partial<T>) => boolean): T | null {
  try {
    const mod = createRequire(import.meta.url)(fileURLToPath(path)) as Partial<T>;
    return accept(mod) ? (mod as T) : null;
  } catch {
    return null;
  }
}
