import { describe, expect, it } from 'vitest';
import { sineInt16 } from '@voice/media';
import { medianToneDbfs, ShortRecordingError } from '../../test-support/audio.js';

/** The level helper the end-to-end tests judge audio with must not read "nothing played" as quiet. */
describe('medianToneDbfs (test-support)', () => {
  it('measures a tone at its level and another frequency far below it', () => {
    const s = sineInt16(57_600, 440, -20);
    expect(medianToneDbfs(s, 440, 1000)).toBeCloseTo(-20, 0);
    expect(medianToneDbfs(s, 1100, 1000)).toBeLessThan(-60);
  });

  it('reads silence that was played as silence', () => {
    expect(medianToneDbfs(new Int16Array(48_000), 440, 1000)).toBeLessThan(-100);
  });

  it('throws on an empty or too-short recording instead of calling it quiet', () => {
    expect(() => medianToneDbfs(new Int16Array(0), 440, 1000)).toThrow(ShortRecordingError);
    expect(() => medianToneDbfs(new Int16Array(48 * 999), 440, 1000)).toThrow(ShortRecordingError);
    expect(() => medianToneDbfs(new Int16Array(48_000), 440, 50)).toThrow(TypeError);
  });
});
