import { toneDbfs } from '@voice/media';
import type { VoiceClient } from '../client/src/index.js';

/**
 * Level of `hz` in what `c` played over the last `ms`: the median of 100 ms Goertzel windows, so one
 * concealed frame (a phase jump that partly cancels a window) does not decide the result.
 */
export function heard(c: VoiceClient, hz: number, ms = 1000): number {
  const s = c.recording().samples;
  const levels: number[] = [];
  for (let at = s.length - ms * 48; at + 4800 <= s.length; at += 4800)
    levels.push(toneDbfs(s, hz, 48_000, Math.max(0, at), 4800));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length / 2)] ?? -120;
}
