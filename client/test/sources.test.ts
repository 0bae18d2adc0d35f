import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectOnset, encodeWav, sineInt16, toneDbfs } from '@voice/media';
import {
  ClickSource,
  PushSource,
  SilenceSource,
  ToneSource,
  WavSource,
  resampleLinear,
} from '../src/index.js';

/** Reads `frames` frames of `frameSamples` from a source into one buffer; returns it and the flags. */
function pull(
  src: { read(out: Int16Array, now: number): boolean },
  frames: number,
  frameSamples = 960,
): { pcm: Int16Array; active: boolean[] } {
  const pcm = new Int16Array(frames * frameSamples);
  const active: boolean[] = [];
  for (let i = 0; i < frames; i++)
    active.push(src.read(pcm.subarray(i * frameSamples, (i + 1) * frameSamples), i));
  return { pcm, active };
}

describe('ToneSource', () => {
  it.each([
    [440, -20],
    [1000, -6],
    [300, -40],
  ])('produces %d Hz at %d dBFS (Goertzel), phase-continuous across frames', (hz, db) => {
    const { pcm, active } = pull(new ToneSource(hz, db), 50, 480);
    expect(active.every(Boolean)).toBe(true);
    expect(toneDbfs(pcm, hz)).toBeCloseTo(db, 1);
    // Continuity: the level over a window straddling frame edges is the same, and no other tone leaks in.
    expect(toneDbfs(pcm, hz, 48_000, 4800 + 240, 4800)).toBeCloseTo(db, 1);
    expect(toneDbfs(pcm, hz * 2.5)).toBeLessThan(db - 40);
  });

  it('rejects bad arguments', () => {
    expect(() => new ToneSource(0)).toThrow(TypeError);
    expect(() => new ToneSource(30_000)).toThrow(TypeError);
    expect(() => new ToneSource(440, 3)).toThrow(TypeError);
  });
});

describe('SilenceSource', () => {
  it('is zeros, and sends nothing unless asked to transmit', () => {
    const quiet = pull(new SilenceSource(), 3);
    expect(quiet.active).toEqual([false, false, false]);
    const sent = pull(new SilenceSource({ transmit: true }), 3);
    expect(sent.active).toEqual([true, true, true]);
    expect(sent.pcm.every((v) => v === 0)).toBe(true);
  });
});

describe('ClickSource', () => {
  it.each([0, 7, 250, 1003.5])('places the click at %d ms', (atMs) => {
    const src = new ClickSource({ atMs });
    const { pcm, active } = pull(src, 60);
    const onset = detectOnset(pcm, 0.05);
    expect(onset).toBe(Math.round(atMs * 48));
    expect(src.clickSample).toBe(onset);
    // One click only, about 5 ms long, and the silence frames are sent too (steady stream).
    expect(detectOnset(pcm, 0.05, onset + 5 * 48)).toBe(-1);
    expect(active.every(Boolean)).toBe(true);
  });

  it('repeats with periodMs and can leave the silence unsent', () => {
    const src = new ClickSource({ atMs: 10, periodMs: 200, transmitSilence: false });
    const { pcm, active } = pull(src, 30);
    expect(src.clickSamples(pcm.length)).toEqual([480, 10_080, 19_680]);
    for (const s of src.clickSamples(pcm.length)) expect(detectOnset(pcm, 0.05, s - 100)).toBe(s);
    // Only frames holding a click are sent: frames 0, 10 and 20 (of 960 samples).
    expect(active.flatMap((a, i) => (a ? [i] : []))).toEqual([0, 10, 20]);
  });

  it('rejects bad arguments', () => {
    expect(() => new ClickSource({ atMs: -1 })).toThrow(TypeError);
    expect(() => new ClickSource({ atMs: 0, amplitude: 2 })).toThrow(TypeError);
    expect(() => new ClickSource({ atMs: 0, widthMs: 5, periodMs: 2 })).toThrow(TypeError);
  });
});

describe('WavSource', () => {
  it('plays samples once, pads the last frame, then pauses', () => {
    const samples = sineInt16(2000, 440, -10);
    const src = new WavSource(samples);
    const { pcm, active } = pull(src, 4);
    expect(active).toEqual([true, true, true, false]);
    expect(pcm.subarray(0, 2000)).toEqual(samples);
    expect(pcm.subarray(2000, 2880).every((v) => v === 0)).toBe(true);
    expect(src.ended).toBe(true);
  });

  it('loops', () => {
    const samples = Int16Array.from({ length: 1000 }, (_, i) => i);
    const { pcm, active } = pull(new WavSource(samples, true), 3);
    expect(active).toEqual([true, true, true]);
    expect(pcm[999]).toBe(999);
    expect(pcm[1000]).toBe(0);
    expect(pcm[2500]).toBe(500);
  });

  it('reads a WAV file and resamples other rates to 48 kHz', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wav-src-'));
    try {
      const path = join(dir, 'tone.wav');
      const at16k = sineInt16(16_000, 440, -12, 16_000);
      writeFileSync(path, encodeWav(at16k, 16_000));
      const src = new WavSource(path);
      expect(src.samples.length).toBe(48_000);
      const { pcm } = pull(src, 40);
      expect(toneDbfs(pcm, 440, 48_000, 0, 38_400)).toBeCloseTo(-12, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    expect(resampleLinear(new Int16Array([0, 100]), 24_000)).toEqual(new Int16Array([0, 50, 100, 100]));
    expect(() => new WavSource(join(tmpdir(), 'no-such-file.wav'))).toThrow();
  });
});

describe('PushSource', () => {
  it('reframes pushed chunks and reports when the frame was completed', () => {
    const src = new PushSource({ capacityMs: 100 });
    const out = new Int16Array(480);
    expect(src.read(out, 0)).toBe(false);
    expect(src.underruns).toBe(1);
    src.push(
      Int16Array.from({ length: 300 }, (_, i) => i),
      1000,
    );
    src.push(
      Int16Array.from({ length: 300 }, (_, i) => 300 + i),
      1006,
    );
    expect(src.read(out, 0)).toBe(true);
    expect(out[0]).toBe(0);
    expect(out[479]).toBe(479);
    expect(src.lastCaptureTime).toBe(1006); // the second push completed the frame
    expect(src.buffered).toBe(120);
    expect(src.read(out, 0)).toBe(false);
  });

  it('drops the oldest audio when full', () => {
    const src = new PushSource({ capacityMs: 20 }); // 960 samples
    src.push(
      Int16Array.from({ length: 900 }, (_, i) => i),
      1,
    );
    src.push(
      Int16Array.from({ length: 200 }, (_, i) => 900 + i),
      2,
    );
    expect(src.droppedSamples).toBe(140);
    const out = new Int16Array(960);
    expect(src.read(out, 0)).toBe(true);
    expect(out[0]).toBe(140);
    expect(out[959]).toBe(1099);
    src.push(new Int16Array(5000), 3);
    expect(src.buffered).toBe(960);
  });
});
