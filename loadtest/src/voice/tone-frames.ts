import { sineInt16, type OpusFactory } from '@voice/media';

/** What the lean generators send: 440 Hz at -18 dBFS, 32 kbit/s Opus, 20 ms frames. */
export const TONE_FRAME_SAMPLES = 960;

/**
 * One second of tone as Opus frames, encoded once: speaking costs a seal and a send per packet, no
 * encode. The load generator (LeanPlane) and the Mumble swarm (cluster/bench/mumble-swarm.ts) send
 * these same frames, so the side-by-side compares servers on identical audio.
 */
export function encodeToneFrames(opus: OpusFactory): Uint8Array[] {
  const enc = opus.createEncoder({ frameSamples: TONE_FRAME_SAMPLES, bitrate: 32_000 });
  const pcm = sineInt16(48_000, 440, -18);
  const scratch = new Uint8Array(1000);
  const frames: Uint8Array[] = [];
  try {
    for (let f = 0; f < 50; f++)
      frames.push(
        scratch.slice(
          0,
          enc.encode(pcm.subarray(f * TONE_FRAME_SAMPLES, (f + 1) * TONE_FRAME_SAMPLES), scratch),
        ),
      );
  } finally {
    enc.destroy();
  }
  return frames;
}
