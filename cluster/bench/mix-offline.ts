/**
 * The mixed path with ideal timing: the server's ChannelCore ticked on a virtual clock, packets
 * arriving exactly on time, the listener's packets opened and played through the product's
 * FramePlayout. What is left is the codec: decode, mix, re-encode. Compared by PESQ with
 * quality.ts's real-time mixed path, it tells scheduling losses from the mix path's own.
 */
import { DEFAULT_VOICE_SETTINGS } from '@voice/protocol';
import type { OpusFactory } from '@voice/media';
import { offlineChannel } from './offline-channel.js';

/** What the listener plays when `speech` and `noise` are mixed by the server on ideal timing. */
export function mixOffline(
  opus: OpusFactory,
  speech: Int16Array,
  noise: Int16Array,
  frameMs: 10 | 20,
): { out: Int16Array; concealed: number; forwarded: number; encodes: number } {
  const n = frameMs * 48;
  const settings = { ...DEFAULT_VOICE_SETTINGS, frameMs, bitrate: 64_000, complexity: 9 };
  const ch = offlineChannel(opus, 'c_mixoffline0', settings, 3, 2);
  // As the client encodes (FEC off unless asked: the factory's default is on, which costs quality).
  const encS = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const encN = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const pkt = new Uint8Array(1500);
  const frames = Math.floor(speech.length / n);
  const out = new Int16Array(frames * n);
  const frame = new Int16Array(n);
  for (let f = 0; f < frames; f++) {
    const now = (ch.now = f * frameMs);
    let len = encS.encode(speech.subarray(f * n, (f + 1) * n), pkt);
    ch.push(0, f, pkt, len);
    len = encN.encode(noise.subarray(f * n, (f + 1) * n), pkt);
    ch.push(1, f, pkt, len);
    ch.core.tick(now);
    ch.playout.next(now + frameMs / 2, frame);
    out.set(frame, f * n);
  }
  const concealed = ch.playout.stats().concealed;
  const { forwarded, encodes } = ch.core.stats;
  encS.destroy();
  encN.destroy();
  ch.close();
  return { out, concealed, forwarded, encodes };
}
