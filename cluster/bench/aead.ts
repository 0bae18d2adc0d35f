/**
 * Voice packet AES-256-GCM: seal + open of one 100-byte payload (a 32 kbit/s 20 ms Opus frame),
 * with each backend, and the young-generation bytes that leaves behind per pair.
 *
 *   node --conditions=source --import tsx cluster/bench/aead.ts
 */
import v8 from 'node:v8';
import {
  MAX_PAYLOAD_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoicePacketType,
  nodeCryptoAead,
  type AeadBackend,
  type VoiceHeader,
} from '@voice/protocol';
import { loadNativeAead } from '@voice/media';
import { isMain, measure, printFigures } from '../../media/bench/util.js';

const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;

function benchBackend(backend: AeadBackend, name: string): Record<string, number> {
  const key = new Uint8Array(32).fill(5);
  const tx = new VoiceCipher(key, VoiceDirection.SERVER_TO_CLIENT, backend);
  const rx = new VoiceCipher(key, VoiceDirection.CLIENT_TO_SERVER, backend);
  const payload = new Uint8Array(100).fill(1);
  const packet = new Uint8Array(132);
  const out = new Uint8Array(MAX_PAYLOAD_BYTES);
  const h: VoiceHeader = { type: VoicePacketType.AUDIO, flags: 0, voiceId: 7, sequence: 0, timestamp: 0 };
  const rh: VoiceHeader = { ...h };
  const pairs = (n: number) => {
    for (let i = 0; i < n; i++) {
      tx.seal(h, payload, packet);
      h.sequence++;
      rx.openInto(packet, out, rh);
    }
  };
  const ns = measure(pairs);
  // Bytes per pair: a window short enough that no scavenge runs in it (a negative delta means one did).
  pairs(20_000);
  const before = newSpace();
  pairs(500);
  const bytes = (newSpace() - before) / 500;
  tx.close();
  rx.close();
  return {
    [`aead_${name}_seal_open_us`]: ns / 1000,
    [`aead_${name}_young_bytes_per_pair`]: Math.round(bytes),
  };
}

export function benchAead(): Record<string, number> {
  const native = loadNativeAead();
  return {
    ...benchBackend(nodeCryptoAead, 'node_crypto'),
    ...(native ? benchBackend(native, 'openssl_evp') : {}),
  };
}

if (isMain(import.meta.url)) {
  printFigures('aead', benchAead());
}
