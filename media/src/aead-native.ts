import type { AeadBackend, AeadKey } from '@voice/protocol';
import { builtAddonUrl, loadAddon } from './native-addon.js';

type Handle = object;

/** The addon's exports (see media/native/voice_aead.c). */
export interface VoiceAeadAddon {
  create(key: Uint8Array): Handle;
  seal(h: Handle, nonce: Uint8Array, packet: Uint8Array, n: number): number;
  open(h: Handle, nonce: Uint8Array, packet: Uint8Array, length: number, out: Uint8Array): number;
  destroy(h: Handle): void;
  version(): string;
}

/** Where the build script puts the addon (relative to media/src and media/dist alike). */
export const AEAD_ADDON_PATH = builtAddonUrl('voice_aead');

class NativeAeadKey implements AeadKey {
  readonly #h: Handle;
  constructor(
    private readonly addon: VoiceAeadAddon,
    key: Uint8Array,
  ) {
    this.#h = addon.create(key);
  }
  seal(nonce: Uint8Array, packet: Uint8Array, n: number): void {
    this.addon.seal(this.#h, nonce, packet, n);
  }
  open(nonce: Uint8Array, packet: Uint8Array, length: number, out: Uint8Array): number {
    return this.addon.open(this.#h, nonce, packet, length, out);
  }
  close(): void {
    this.addon.destroy(this.#h);
  }
}

/**
 * AES-256-GCM over OpenSSL's EVP in our own addon (media/native/voice_aead.c, built by
 * scripts/build-native.mjs when Debian's libssl-dev is installed): one keyed context per key,
 * nothing allocated per packet. Returns null when the addon is not built or fails a self-check
 * (never throws), so callers fall back to protocol's `nodeCryptoAead`.
 */
export function loadNativeAead(path: URL = AEAD_ADDON_PATH): AeadBackend | null {
  const addon = loadAddon<VoiceAeadAddon>(path, (mod) => {
    if (typeof mod.create !== 'function' || typeof mod.seal !== 'function' || typeof mod.open !== 'function')
      return false;
    // Self-check: a sealed packet opens, and a flipped bit does not.
    const k = new NativeAeadKey(mod as VoiceAeadAddon, new Uint8Array(32).fill(1));
    const nonce = new Uint8Array(12);
    const packet = new Uint8Array(16 + 4 + 16).fill(7);
    const out = new Uint8Array(4);
    k.seal(nonce, packet, 4);
    const good = k.open(nonce, packet, packet.length, out) === 4 && out.every((b) => b === 7);
    packet[17]! ^= 1;
    const bad = k.open(nonce, packet, packet.length, out) === -1;
    k.close();
    return good && bad;
  });
  if (!addon) return null;
  return {
    name: `openssl-evp (${addon.version()})`,
    create: (key) => new NativeAeadKey(addon, key),
  };
}
