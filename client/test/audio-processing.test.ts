import { describe, expect, it } from 'vitest';
import { rmsDbfs, sine, sineInt16, toneDbfs } from '@voice/media';
import type { ClockedSource } from '@voice/client';
import {
  AudioEngine,
  FileBackend,
  FrameFifo,
  GainStage,
  HighPassStage,
  LevelMeter,
  ProcessingChain,
  SincResampler,
  fromMonoFloat,
  toMonoFloat,
  type SampleFormat,
  type StreamFormat,
} from '@voice/client';

/** Level of a tone at `hz` in the second half of `x` (filters and resamplers have settled). */
function levelDb(x: Float32Array | Int16Array, hz: number, rate = 48_000): number {
  const half = Math.floor(x.length / 2);
  return toneDbfs(x, hz, rate, half, x.length - half);
}

/** Residual after removing the best-fitting sine at `hz` (least squares), relative to the signal, dB. */
function residualDb(x: Float32Array, hz: number, rate: number, from: number, to: number): number {
  let ss = 0,
    sc = 0,
    cc = 0,
    xs = 0,
    xc = 0;
  for (let i = from; i < to; i++) {
    const s = Math.sin((2 * Math.PI * hz * i) / rate);
    const c = Math.cos((2 * Math.PI * hz * i) / rate);
    ss += s * s;
    sc += s * c;
    cc += c * c;
    xs += x[i]! * s;
    xc += x[i]! * c;
  }
  const det = ss * cc - sc * sc;
  const a = (xs * cc - xc * sc) / det;
  const b = (xc * ss - xs * sc) / det;
  let e = 0,
    p = 0;
  for (let i = from; i < to; i++) {
    const fit = a * Math.sin((2 * Math.PI * hz * i) / rate) + b * Math.cos((2 * Math.PI * hz * i) / rate);
    e += (x[i]! - fit) ** 2;
    p += fit * fit;
  }
  return 10 * Math.log10(e / p);
}

function runStage(
  stage: { process(f: Float32Array, n: number): void },
  x: Float32Array,
  frame = 480,
): Float32Array {
  const y = x.slice();
  for (let i = 0; i + frame <= y.length; i += frame) {
    const f = y.subarray(i, i + frame);
    stage.process(f, frame);
  }
  return y;
}

describe('processing stages', () => {
  it('gain scales by exactly its dB and 0 dB is sample-exact', () => {
    const x = sine(48_000, 1000, -20);
    expect(levelDb(runStage(new GainStage(6), x), 1000)).toBeCloseTo(-14, 1);
    expect(levelDb(runStage(new GainStage(-10), x), 1000)).toBeCloseTo(-30, 1);
    expect(runStage(new GainStage(0), x)).toEqual(x);
    expect(() => new GainStage(40)).toThrow(TypeError);
  });

  it('high-pass: -3 dB at the cut-off, rumble removed, the voice band untouched', () => {
    const hp = (hz: number): number =>
      levelDb(runStage(new HighPassStage(80), sine(96_000, hz, -20)), hz) + 20;
    expect(hp(80)).toBeCloseTo(-3.01, 1);
    expect(hp(20)).toBeLessThan(-23); // two octaves below: -24 dB for a 2nd-order Butterworth
    expect(hp(1000)).toBeGreaterThan(-0.05);
    expect(hp(1000)).toBeLessThan(0.05);
    // DC offset is gone after the filter settles.
    const dc = runStage(new HighPassStage(80), new Float32Array(48_000).fill(0.3));
    expect(Math.abs(dc[dc.length - 1]!)).toBeLessThan(1e-4);
  });

  it('level meter reads RMS and drives voice activity', () => {
    const m = new LevelMeter({ frameMs: 10, thresholdDbfs: -40 });
    const loud = sine(480, 1000, -20);
    m.process(loud, 480);
    expect(m.rmsDbfs).toBeCloseTo(-23.01, 1);
    expect(m.peakDbfs).toBeCloseTo(-20, 1);
    m.process(loud, 480);
    expect(m.speaking).toBe(true);
    const quiet = sine(480, 1000, -60);
    for (let i = 0; i < 40; i++) m.process(quiet, 480);
    expect(m.speaking).toBe(false);
  });

  it('a failing stage is counted and skipped, the others still run', () => {
    const errors: unknown[] = [];
    const chain = new ProcessingChain(
      [
        {
          name: 'bad',
          process: () => {
            throw new Error('boom');
          },
        },
        new GainStage(6),
      ],
      (e) => errors.push(e),
    );
    const f = sine(480, 1000, -20);
    chain.process(f, 480);
    expect(chain.errors).toBe(1);
    expect(errors).toHaveLength(1);
    expect(toneDbfs(f, 1000)).toBeCloseTo(-14, 1);
  });
});

describe('format and channel conversion', () => {
  const formats: SampleFormat[] = ['f32', 'i16', 'u16'];
  for (const format of formats) {
    for (const channels of [1, 2, 6]) {
      it(`${format} x${channels}: mono -> device bytes -> mono round trip`, () => {
        const f: StreamFormat = { sampleRate: 48_000, channels, format };
        const x = sine(480, 1000, -3);
        const bytes = new Uint8Array(480 * channels * (format === 'f32' ? 4 : 2));
        expect(fromMonoFloat(x, 480, f, bytes)).toBe(480);
        const y = new Float32Array(480);
        expect(toMonoFloat(bytes, f, y, 480)).toBe(480);
        for (let i = 0; i < 480; i++)
          expect(Math.abs(y[i]! - x[i]!)).toBeLessThan(format === 'f32' ? 1e-7 : 1 / 32768 + 1e-9);
      });
    }
  }

  it('u16 is offset binary, and capture downmixes by averaging channels', () => {
    const f: StreamFormat = { sampleRate: 48_000, channels: 2, format: 'u16' };
    const bytes = new Uint8Array(4);
    fromMonoFloat(new Float32Array([0]), 1, f, bytes);
    expect(Array.from(bytes)).toEqual([0x00, 0x80, 0x00, 0x80]);
    const v = new DataView(bytes.buffer);
    v.setUint16(0, 32768 + 16384, true); // L = +0.5
    v.setUint16(2, 32768 - 8192, true); // R = -0.25
    const y = new Float32Array(1);
    toMonoFloat(bytes, f, y, 1);
    expect(y[0]).toBeCloseTo(0.125, 6);
  });

  it('clips instead of wrapping', () => {
    const f: StreamFormat = { sampleRate: 48_000, channels: 1, format: 'i16' };
    const bytes = new Uint8Array(4);
    fromMonoFloat(new Float32Array([1.5, -1.5]), 2, f, bytes);
    const v = new DataView(bytes.buffer);
    expect([v.getInt16(0, true), v.getInt16(2, true)]).toEqual([32767, -32768]);
  });
});

describe('sample-rate conversion', () => {
  function convert(x: Float32Array, from: number, to: number, chunk: number): Float32Array {
    const r = new SincResampler({ inRate: from, outRate: to, capacity: 4 * chunk });
    const out = new Float32Array(Math.floor((x.length * to) / from) - 64);
    let got = 0;
    for (let i = 0; i < x.length && got < out.length; i += chunk) {
      r.write(x.subarray(i, Math.min(x.length, i + chunk)));
      got += r.read(out, out.length - got, got);
    }
    expect(got).toBe(out.length);
    return out;
  }

  for (const [from, to] of [
    [44_100, 48_000],
    [96_000, 48_000],
    [48_000, 44_100],
    [48_000, 96_000],
  ] as const) {
    it(`${from} -> ${to} Hz keeps a 1 kHz tone at level and clean (streamed in 10 ms chunks)`, () => {
      const x = sine(from, 1000, -6, from);
      const y = convert(x, from, to, Math.round(from / 100));
      expect(toneDbfs(y, 1000, to, y.length >> 1, y.length >> 1)).toBeCloseTo(-6, 1);
      // Everything that is not the tone (distortion, aliasing, phase noise) is 70 dB down.
      expect(residualDb(y, 1000, to, 1000, y.length)).toBeLessThan(-70);
    });
  }

  it('96 -> 48 kHz removes content above the new Nyquist instead of aliasing it', () => {
    const x = sine(96_000, 30_000, -6, 96_000); // would alias to 18 kHz
    const y = convert(x, 96_000, 48_000, 960);
    expect(toneDbfs(y, 18_000, 48_000, 4800, 38_000)).toBeLessThan(-70);
  });
});

describe('engine on the file backend', () => {
  it('captures a 44.1 kHz stereo f32 "device" into 20 ms 48 kHz frames at level, gated by voice activity', async () => {
    // The "microphone" plays a 48 kHz WAV; the device runs at 44.1 kHz stereo f32.
    const tone = new Int16Array(sine(48_000, 1000, -20).map((v) => Math.round(v * 32767)));
    const backend = new FileBackend({
      input: tone,
      clock: 'manual',
      format: { sampleRate: 44_100, channels: 2, format: 'f32' },
    });
    const engine = new AudioEngine({ backend, inputGainDb: 6 });
    const got: Int16Array[] = [];
    const active: boolean[] = [];
    const src: ClockedSource = engine.source;
    src.attach(960, (pcm, _t, a) => {
      got.push(pcm.slice());
      active.push(a);
    });
    await engine.startInput();
    expect(engine.inputFormat).toEqual({ sampleRate: 44_100, channels: 2, format: 'f32' });
    for (let i = 0; i < 100; i++) backend.step(); // one second
    expect(got.length).toBeGreaterThanOrEqual(49);
    expect(got.every((f) => f.length === 960)).toBe(true);
    const all = new Int16Array(got.length * 960);
    got.forEach((f, i) => all.set(f, i * 960));
    expect(levelDb(all, 1000)).toBeCloseTo(-14, 1); // -20 dBFS + 6 dB gain
    expect(active.slice(2).every(Boolean)).toBe(true);
    // Quieter than the threshold: frames still flow (the clock), but none is marked for sending.
    engine.meter.thresholdDbfs = -5;
    active.length = 0;
    for (let i = 0; i < 20; i++) backend.step();
    expect(active.length).toBeGreaterThanOrEqual(9);
    expect(active.slice(1).some(Boolean)).toBe(false); // the first may hold a half from before
    await engine.close();
  });

  it('plays a 48 kHz source on a 96 kHz stereo u16 "speaker" at level, scaled by the output volume', async () => {
    const backend = new FileBackend({
      clock: 'manual',
      format: { sampleRate: 96_000, channels: 2, format: 'u16' },
    });
    const engine = new AudioEngine({ backend });
    const fifo = new FrameFifo({ capacity: 48_000, target: 960 });
    engine.setPlayback(fifo);
    await engine.startOutput();
    const out = (backend as unknown as { streams: Set<{ recording(): Int16Array }> }).streams;
    const speaker = [...out][0]!;
    const tone = new Int16Array(sine(48_000, 1000, -20).map((v) => Math.round(v * 32767)));
    const step = (frames: number): void => {
      for (let i = 0; i < frames; i++) {
        fifo.push(tone.subarray((i % 100) * 480, (i % 100) * 480 + 480));
        backend.step();
      }
    };
    fifo.push(tone.subarray(0, 960)); // the source holds its target depth, as a jitter buffer would
    step(100);
    expect(fifo.underruns).toBe(0);
    expect(Math.abs(engine.driftStats()!.correction - 1)).toBeLessThan(2e-4);
    const full = speaker.recording();
    expect(full.length).toBe(96_000);
    expect(levelDb(full, 1000, 96_000)).toBeCloseTo(-20, 1);
    engine.setOutputVolume(50);
    step(100);
    const half = speaker.recording().subarray(96_000);
    expect(levelDb(half, 1000, 96_000)).toBeCloseTo(-26.02, 1);
    expect(rmsDbfs(half.subarray(half.length - 4800))).toBeLessThan(-28);
    await engine.close();
  });

  it('device switches requested at once run one after the other: one stream each way stays open, and it plays', async () => {
    const backend = new FileBackend({ clock: 'manual', input: sineInt16(48_000, 700, -20) });
    const engine = new AudioEngine({ backend });
    const fifo = new FrameFifo({ capacity: 48_000, target: 960 });
    engine.setPlayback(fifo);
    // The desktop controller handles commands concurrently: two "settings" at once each (re)start.
    await Promise.all([
      engine.startOutput(),
      engine.startInput(),
      engine.startOutput(),
      engine.startInput(),
      engine.startOutput(),
    ]);
    const streams = (backend as unknown as { streams: Set<{ isClosed: boolean; recording?(): Int16Array }> })
      .streams;
    const open = [...streams].filter((x) => !x.isClosed);
    expect(open).toHaveLength(2); // one input, one output: none leaked
    const speaker = open.find((x) => x.recording)!;
    const tone = new Int16Array(sine(48_000, 1000, -20).map((v) => Math.round(v * 32767)));
    fifo.push(tone.subarray(0, 960));
    for (let i = 0; i < 100; i++) {
      fifo.push(tone.subarray((i % 100) * 480, (i % 100) * 480 + 480));
      backend.step();
    }
    expect(levelDb(speaker.recording!(), 1000, 48_000)).toBeCloseTo(-20, 1);
    await engine.close();
    expect([...streams].filter((x) => !x.isClosed)).toHaveLength(0);
  });
});
