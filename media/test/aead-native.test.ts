import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_PAYLOAD_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  nodeCryptoAead,
  type AeadBackend,
  type VoiceHeader,
  type VoicePacketType as VoicePacketTypeT,
} from '@voice/protocol';
import { loadNativeAead } from '../src/index.js';
import { newSpaceUsed } from '../../test-support/heap.js';

// scripts/provision.mjs builds the addon before the tests (libssl-dev): its absence is a failure.
const native = loadNativeAead();

function cipherPair(backend: AeadBackend, key: Uint8Array) {
  return {
    server: new VoiceCipher(key, VoiceDirection.SERVER_TO_CLIENT, backend),
    client: new VoiceCipher(key, VoiceDirection.CLIENT_TO_SERVER, backend),
  };
}

describe('AES-256-GCM over OpenSSL EVP (media/native/voice_aead.c)', () => {
  it('loads and passes its self-check', () => {
    expect(
      native,
      'voice_aead.node not built: run scripts/build-native.mjs (needs libssl-dev)',
    ).not.toBeNull();
    expect(native!.name).toMatch(/^openssl-evp \(OpenSSL \d/);
  });

  it('seals byte for byte as node:crypto does, and each opens what the other sealed', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ maxLength: MAX_PAYLOAD_BYTES }),
        fc.constantFrom(...(Object.values(VoicePacketType) as VoicePacketTypeT[])),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.nat(),
        (key, payload, type, voiceId, sequence, timestamp, flip) => {
          const h: VoiceHeader = { type, flags: 0, voiceId, sequence, timestamp };
          const a = cipherPair(native!, key);
          const b = cipherPair(nodeCryptoAead, key);
          const pa = new Uint8Array(payload.length + 32);
          const pb = new Uint8Array(payload.length + 32);
          expect(a.server.seal(h, payload, pa)).toBe(pa.length);
          b.server.seal(h, payload, pb);
          expect(pa).toEqual(pb);
          const out = new Uint8Array(MAX_PAYLOAD_BYTES);
          const header: VoiceHeader = { type: 1, flags: 0, voiceId: 0, sequence: 0, timestamp: 0 };
          // Native opens the node:crypto packet and vice versa.
          expect(a.client.openInto(pb, out, header)).toBe(payload.length);
          expect(out.subarray(0, payload.length)).toEqual(payload);
          expect(header).toEqual(h);
          expect(b.client.openInto(pa, out, header)).toBe(payload.length);
          expect(out.subarray(0, payload.length)).toEqual(payload);
          // One flipped bit anywhere in the payload or tag: both refuse it, and neither moves its window.
          const bad = pa.slice();
          const at = 16 + (flip % (bad.length - 16));
          bad[at]! ^= 1 << (flip % 8);
          const fresh = cipherPair(native!, key).client;
          const freshNode = cipherPair(nodeCryptoAead, key).client;
          expect(fresh.openInto(bad, out, header)).toBe('AUTH_FAILED');
          expect(freshNode.openInto(bad, out, header)).toBe('AUTH_FAILED');
          expect(fresh.replay.received).toBe(0);
          // The direction is in the nonce: a packet reflected to its sender does not open.
          expect(cipherPair(native!, key).server.openInto(pa, out, header)).toBe('AUTH_FAILED');
          for (const c of [a.server, a.client, fresh]) c.close();
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  it('allocates nothing per packet (node:crypto allocates per packet)', () => {
    const allocatedBy = (backend: AeadBackend): number => {
      const { server, client } = cipherPair(backend, new Uint8Array(32).fill(9));
      const payload = new Uint8Array(100).fill(3);
      const buf = new Uint8Array(132);
      const out = new Uint8Array(MAX_PAYLOAD_BYTES);
      const h: VoiceHeader = { type: VoicePacketType.AUDIO, flags: 0, voiceId: 5, sequence: 0, timestamp: 0 };
      const rh: VoiceHeader = { ...h };
      const run = (n: number) => {
        for (let i = 0; i < n; i++) {
          server.seal(h, payload, buf);
          h.sequence++;
          if (client.openInto(buf, out, rh) !== 100) throw new Error('open failed');
        }
      };
      run(20_000); // warm up: optimised code, no lazy allocations left
      const before = newSpaceUsed();
      run(20_000);
      return newSpaceUsed() - before;
    };
    const nativeBytes = allocatedBy(native!);
    // No scavenge can have run (the delta would be negative): the 20,000 seal+open pairs left at most
    // a few kilobytes of young objects, i.e. nothing per packet.
    expect(nativeBytes).toBeGreaterThanOrEqual(0);
    expect(nativeBytes).toBeLessThan(16 * 1024);
    // The measure is not blind: node:crypto's 20,000 pairs allocate megabytes (or trigger a scavenge).
    const nodeBytes = allocatedBy(nodeCryptoAead);
    expect(nodeBytes < 0 || nodeBytes > 1_000_000).toBe(true);
  });

  it('refuses a destroyed key and bad arguments with errors, never a crash', () => {
    const k = native!.create(new Uint8Array(32));
    k.close();
    k.close(); // idempotent
    expect(() => k.seal(new Uint8Array(12), new Uint8Array(64), 4)).toThrow(/destroy/);
    const live = native!.create(new Uint8Array(32));
    expect(() => live.seal(new Uint8Array(11), new Uint8Array(64), 4)).toThrow(TypeError);
    expect(() => live.seal(new Uint8Array(12), new Uint8Array(40), 20)).toThrow(TypeError);
    expect(() => live.open(new Uint8Array(12), new Uint8Array(40), 41, new Uint8Array(8))).toThrow(TypeError);
    expect(() => native!.create(new Uint8Array(31))).toThrow(TypeError);
    live.close();
  });
});
