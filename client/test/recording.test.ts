import { describe, expect, it } from 'vitest';
import { Recording, SentLog } from '../src/index.js';

describe('Recording', () => {
  it('maps sample index to play time, filling gaps with silence', () => {
    const r = new Recording(48_000);
    const frame = new Int16Array(960).fill(7);
    r.append(frame, 960, 1000);
    r.append(frame, 960, 1020);
    // Due 60 ms after the start: 20 ms were missed (skipped tick, new session) and become silence.
    r.append(frame, 960, 1060);
    const s = r.snapshot();
    expect(s.startTime).toBe(1000);
    expect(s.sampleRate).toBe(48_000);
    expect(s.samples.length).toBe(4 * 960);
    expect(s.samples[1919]).toBe(7);
    expect(s.samples[1920]).toBe(0);
    expect(s.samples[2879]).toBe(0);
    expect(s.samples[2880]).toBe(7);
    // Timer jitter of a fraction of a frame does not add samples.
    r.append(frame, 960, 1080.4);
    expect(r.length).toBe(5 * 960);
    expect(r.endTime).toBe(1100);
  });

  it('keeps the newest audio when full, moving startTime forward', () => {
    const r = new Recording(4800);
    for (let i = 0; i < 10; i++) r.append(new Int16Array(960).fill(i), 960, i * 20);
    const s = r.snapshot();
    expect(s.samples.length).toBeLessThanOrEqual(4800);
    expect(s.samples[s.samples.length - 1]).toBe(9);
    // Sample i still plays at startTime + i / 48: it holds the value of the frame playing then.
    for (let i = 0; i < s.samples.length; i += 97) {
      expect(s.samples[i]).toBe(Math.floor((s.startTime + i / 48) / 20 + 1e-9));
    }
    expect(r.discarded + s.samples.length).toBe(9600);
    r.clear();
    expect(r.snapshot().samples.length).toBe(0);
    expect(r.startTime).toBeNaN();
  });
});

describe('SentLog', () => {
  it('records frames without objects and finds the frame of a source sample', () => {
    const log = new SentLog(16);
    for (let i = 0; i < 40; i++) log.add(100 + i * 20, 101 + i * 20, i * 960, (i * 960) >>> 0, i, i === 0);
    // Bounded: the oldest half goes when full.
    expect(log.length).toBeLessThanOrEqual(16);
    expect(log.discarded + log.length).toBe(40);
    const last = log.at(log.length - 1)!;
    expect(last).toMatchObject({ sequence: 39, sourceSample: 39 * 960, captureTime: 100 + 39 * 20 });
    expect(log.findBySourceSample(39 * 960 + 500, 960)?.sequence).toBe(39);
    expect(log.findBySourceSample(0, 960)).toBeUndefined();
    expect(log.toArray()).toHaveLength(log.length);
    expect(log.at(-1)).toBeUndefined();
  });
});
