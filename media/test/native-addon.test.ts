import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  AEAD_ADDON_PATH,
  ADDON_PATH,
  UDP_ADDON_PATH,
  loadNativeAead,
  loadNativeUdp,
  loadVoiceOpusAddon,
} from '../src/index.js';

/**
 * The one loader of our native addons (media/src/native-addon.ts) from a checkout whose path has a
 * space: a file URL spells it %20, and a loader that handed the URL's pathname to require() found
 * nothing there and fell back to the slow path without a word. provision builds the addons for the
 * tests: their absence is a failure.
 */
const dir = mkdtempSync(join(tmpdir(), 'voice addons '));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A copy of the built addon at `built` inside `dir` (a path with a space), as a file URL. */
function copied(built: URL, name: string): URL {
  const to = join(dir, name);
  copyFileSync(built, to);
  const url = pathToFileURL(to);
  expect(url.href).toContain('%20');
  return url;
}

describe('native addons load from a path with a space', () => {
  it('the Opus, AEAD and UDP addons each load from their copy', () => {
    expect(loadVoiceOpusAddon(copied(ADDON_PATH, 'voice_opus.node'))?.version()).toMatch(/opus/i);
    expect(loadNativeAead(copied(AEAD_ADDON_PATH, 'voice_aead.node'))?.name).toMatch(/^openssl-evp/);
    if (process.platform === 'linux')
      expect(loadNativeUdp(copied(UDP_ADDON_PATH, 'voice_udp.node'))).not.toBeNull();
  });

  it('a missing file, or a module that is not the addon, loads as null (never throws)', () => {
    const missing = pathToFileURL(join(dir, 'nothing here.node'));
    expect(loadVoiceOpusAddon(missing)).toBeNull();
    expect(loadNativeAead(missing)).toBeNull();
    expect(loadNativeUdp(missing)).toBeNull();
    const impostor = join(dir, 'not an addon.cjs');
    writeFileSync(impostor, 'module.exports = { version: () => "x" };');
    expect(loadVoiceOpusAddon(pathToFileURL(impostor))).toBeNull();
    expect(loadNativeAead(pathToFileURL(impostor))).toBeNull();
    expect(loadNativeUdp(pathToFileURL(impostor))).toBeNull();
  });
});
