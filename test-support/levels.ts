import { toneDbfs } from '../media/src/index.js';

/**
 * Level of the tone at `hz` over the last `ms` of `samples` (48 kHz): a quantile (default the median)
 * of 100 ms Goertzel windows, so one concealed or dropped frame (a phase jump that cancels a long
 * window) does not decide the result. No windows (too short a recording): -120.
 */
export function toneLevelDbfs(samples: Int16Array, hz: number, ms: number, quantile = 0.5): number {
  const levels: number[] = [];
  for (let at = samples.length - ms * 48; at + 4800 <= samples.length; at += 4800)
    if (at >= 0) levels.push(toneDbfs(samples, hz, 48_000, at, 4800));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length * quantile)] ?? -120;
}
