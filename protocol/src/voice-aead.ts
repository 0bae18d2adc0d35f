/**
 * The AES-256-GCM primitive under VoiceCipher, as an interface so a faster implementation can be
 * plugged in without touching the wire format. Both operations work on a whole packet in place:
 * the 16 header bytes at its start are the AAD, the payload follows them, the 16-byte tag follows
 * the payload (see voice-packet.ts). `nodeCryptoAead` is the portable default; the project's
 * OpenSSL addon (media: `loadNativeAead`) keeps one keyed EVP context per key and allocates nothing.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject } from 'node:crypto';
import { HEADER_BYTES, TAG_BYTES } from './voice-packet.js';

/** One key's sealing and opening state. */
export interface AeadKey {
  /** Encrypts packet[16, 16+n) in place (AAD: packet[0, 16)) and writes the tag at 16+n. */
  seal(nonce: Uint8Array, packet: Uint8Array, n: number): void;
  /**
   * Authenticates packet[0, length) and decrypts its payload into `out`; returns the payload
   * length, or -1 when authentication fails. Only authenticated plaintext may be used.
   */
  open(nonce: Uint8Array, packet: Uint8Array, length: number, out: Uint8Array): number;
  /** Frees native state at once (idempotent); the key must not be used afterwards. */
  close(): void;
}

/** A source of keyed AES-256-GCM states. */
export interface AeadBackend {
  readonly name: string;
  /** `key`: 32 bytes. */
  create(key: Uint8Array): AeadKey;
}

const ALGORITHM = 'aes-256-gcm';

/** node:crypto: portable, but a new cipher object and output buffers per packet. */
class NodeCryptoKey implements AeadKey {
  readonly #key: KeyObject;
  readonly #tag = Buffer.alloc(TAG_BYTES);

  constructor(key: Uint8Array) {
    this.#key = createSecretKey(key);
  }

  seal(nonce: Uint8Array, packet: Uint8Array, n: number): void {
    const cipher = createCipheriv(ALGORITHM, this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(packet.subarray(0, HEADER_BYTES));
    const ciphertext = cipher.update(packet.subarray(HEADER_BYTES, HEADER_BYTES + n));
    cipher.final();
    packet.set(ciphertext, HEADER_BYTES);
    packet.set(cipher.getAuthTag(), HEADER_BYTES + n);
  }

  open(nonce: Uint8Array, packet: Uint8Array, length: number, out: Uint8Array): number {
    const n = length - HEADER_BYTES - TAG_BYTES;
    // setAuthTag keeps a reference: copy the tag out of a packet buffer the caller may reuse.
    for (let i = 0; i < TAG_BYTES; i++) this.#tag[i] = packet[HEADER_BYTES + n + i]!;
    let plaintext: Buffer;
    try {
      const decipher = createDecipheriv(ALGORITHM, this.#key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(packet.subarray(0, HEADER_BYTES));
      decipher.setAuthTag(this.#tag);
      plaintext = decipher.update(packet.subarray(HEADER_BYTES, HEADER_BYTES + n));
      decipher.final();
    } catch {
      return -1;
    }
    out.set(plaintext, 0);
    return n;
  }

  close(): void {}
}

export const nodeCryptoAead: AeadBackend = {
  name: 'node:crypto',
  create: (key) => new NodeCryptoKey(key),
};
