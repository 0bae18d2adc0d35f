import { describe, expect, it } from 'vitest';
import {
  detectOnset,
  Histogram,
  peakDbfs,
  rmsDbfs,
  sine,
  SineGenerator,
  sineInt16,
  snrDb,
  toneDbfs,
  VadEvent,
  VoiceActivityDetector,
} from '../src/index.js';

describe('levels and tone analysis', () => {
  it('measures RMS and peak in dBFS', () => {
    const full = sine(4800, 1000, 0);
    expect(rmsDbfs(full)).toBeCloseTo(-3.01, 1);
    expect(peakDbfs(full)).toBeCloseTo(0, 2);
    expect(rmsDbfs(sineInt16(4800, 1000, -20))).toBeCloseTo(-23.01, 1);
    expect(rmsDbfs(new Float32Array(100))).toBe(-120);
  });

  it('finds a tone level with Goertzel, at non-bin frequencies and among other tones', () => {
    const mix = sine(960, 440, -12);
    const other = sine(960, 1500, -6);
    for (let i = 0; i < mix.length; i++) mix[i]! += other[i]!;
    expect(toneDbfs(mix, 440)).toBeCloseTo(-12, 1);
    expect(toneDbfs(mix, 1500)).toBeCloseTo(-6, 1);
    expect(toneDbfs(mix, 3000)).toBeLessThan(-60);
  });

  it('generates phase-continuous sines', () => {
    const gen = new SineGenerator(440, 0.5);
    const a = gen.fill(new Float32Array(480));
    const b = gen.fill(new Float32Array(480));
    const whole = new SineGenerator(440, 0.5).fill(new Float32Array(960));
    const joined = new Float32Array(960);
    joined.set(a);
    joined.set(b, 480);
    expect(snrDb(whole, joined)).toBeGreaterThan(100);
  });

  it('detects a click onset', () => {
    const sig = new Int16Array(1000);
    sig[123] = 20;
    sig[700] = -16000;
    expect(detectOnset(sig, 0.25)).toBe(700);
    expect(detectOnset(sig, 0.0005)).toBe(123);
    expect(detectOnset(sig, 0.9)).toBe(-1);
  });
});

describe('VoiceActivityDetector', () => {
  const voice = sine(960, 300, -20);
  const silence = new Float32Array(960);
  const quiet = sine(960, 300, -45); // RMS -48 dBFS: between release (-51) and threshold (-45)

  it('starts after two loud frames and stops after 300 ms below the release level', () => {
    const vad = new VoiceActivityDetector();
    expect(vad.process(silence)).toBe(VadEvent.NONE);
    expect(vad.process(voice)).toBe(VadEvent.NONE);
    expect(vad.process(voice)).toBe(VadEvent.START);
    expect(vad.speaking).toBe(true);
    const events: number[] = [];
    for (let i = 0; i < 20; i++) events.push(vad.process(silence));
    expect(events.indexOf(VadEvent.STOP)).toBe(14); // the 15th silent frame = 300 ms
    expect(events.filter((e) => e !== VadEvent.NONE)).toEqual([VadEvent.STOP]);
    expect(vad.speaking).toBe(false);
  });

  it('ignores a single click and bridges short pauses (hysteresis)', () => {
    const vad = new VoiceActivityDetector();
    expect([vad.process(voice), vad.process(silence), vad.process(voice)]).toEqual([0, 0, 0]);
    expect(vad.process(voice)).toBe(VadEvent.START);
    for (let i = 0; i < 10; i++) expect(vad.process(silence)).toBe(VadEvent.NONE);
    expect(vad.process(voice)).toBe(VadEvent.NONE);
    // Quieter than the start threshold but above release: still speaking.
    for (let i = 0; i < 30; i++) expect(vad.process(quiet)).toBe(VadEvent.NONE);
    expect(vad.speaking).toBe(true);
  });

  it('validates options', () => {
    expect(() => new VoiceActivityDetector({ attackFrames: 0 })).toThrow(TypeError);
    expect(() => new VoiceActivityDetector({ thresholdDbfs: -50, releaseDbfs: -40 })).toThrow(TypeError);
  });
});

describe('Histogram', () => {
  it('gives percentiles within one bucket', () => {
    const h = new Histogram({ bucketWidth: 1, buckets: 200 });
    for (let v = 1; v <= 100; v++) h.record(v - 0.5);
    expect(h.percentile(50)).toBeCloseTo(50, 0);
    expect(h.percentile(95)).toBeCloseTo(95, 0);
    expect(h.percentile(99)).toBeCloseTo(99, 0);
    expect(h.mean).toBeCloseTo(50, 5);
    expect(h.snapshot()).toMatchObject({ count: 100, max: 99.5 });
  });

  it('forgets old samples with a window and clamps out-of-range values', () => {
    const h = new Histogram({ bucketWidth: 10, buckets: 10, window: 10 });
    for (let i = 0; i < 100; i++) h.record(500);
    // Clamped into the last bucket [90, 100).
    expect(h.percentile(50)).toBeGreaterThanOrEqual(90);
    expect(h.percentile(50)).toBeLessThanOrEqual(100);
    for (let i = 0; i < 10; i++) h.record(5);
    expect(h.count).toBe(10);
    expect(h.total).toBe(110);
    expect(h.percentile(99)).toBeLessThanOrEqual(10);
    h.reset();
    expect(h.percentile(50)).toBe(0);
  });
});
