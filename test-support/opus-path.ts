import type { OpusFactory } from '@voice/media';
import type { AudioSource } from '../client/src/index.js';

const FRAME = 960;

/** Plays `signal` once, 20 ms frame by frame, then sends nothing. */
export class OnceSource implements AudioSource {
  readonly name = 'once';
  lastCaptureTime = 0;
  #frame = 0;
  constructor(private readonly signal: Int16Array) {}
  read(out: Int16Array, now: number): boolean {
    const at = this.#frame++ * FRAME;
    if (at >= this.signal.length) return false;
    out.set(this.signal.subarray(at, at + FRAME));
    this.lastCaptureTime = now;
    return true;
  }
}

/**
 * What a speaker's fresh encoder (20 ms frames, FEC off, the given settings) makes of `signal`,
 * every packet decoded by a fresh decoder: what a loss-free link plays.
 */
export function localDecode(
  opus: OpusFactory,
  signal: Int16Array,
  settings: { bitrate: number; complexity: number },
): Int16Array {
  const enc = opus.createEncoder({ frameSamples: FRAME, fec: false, ...settings });
  const dec = opus.createDecoder({ frameSamples: FRAME });
  const out = new Int16Array(signal.length);
  const pkt = new Uint8Array(1500);
  for (let at = 0; at < signal.length; at += FRAME) {
    const len = enc.encode(signal.subarray(at, at + FRAME), pkt);
    dec.decode(pkt, out.subarray(at, at + FRAME), len);
  }
  enc.destroy();
  dec.destroy();
  return out;
}
