import { TokenBucket } from '../ratelimit.js';

/** Frames a speaker's STREAM forwards may run ahead of its frame rate (README 8.8: a stall's catch-up). */
export const STREAM_BURST_FRAMES = 5;

/**
 * A speaker's STREAM forward budget: one frame per frame period on average, bursts of
 * STREAM_BURST_FRAMES. A sender faster than real time (or a replay of captured packets under fresh
 * sequence numbers) cannot make the server send its listeners more than that; the excess is dropped
 * and counted, not queued.
 */
export function streamForwardBudget(frameMs: number, now = performance.now()): TokenBucket {
  return new TokenBucket(1000 / frameMs, STREAM_BURST_FRAMES, now);
}
