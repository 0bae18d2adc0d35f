import { dbfsToAmplitude } from './level.js';

/**
 * Phase-continuous sine generator. `amplitude` is linear peak (1.0 = full scale); Int16 output is
 * scaled by 32767.
 */
export class SineGenerator {
  readonly frequency: number;
  readonly amplitude: number;
  readonly sampleRate: number;
  private phase: number;
  private readonly step: number;

  constructor(frequency: number, amplitude: number, sampleRate: number = 48_000, phase: number = 0) {
    if (!(frequency >= 0) || !(frequency < sampleRate / 2))
      throw new TypeError('frequency must be in [0, Nyquist)');
    this.frequency = frequency;
    this.amplitude = amplitude;
    this.sampleRate = sampleRate;
    this.phase = phase;
    this.step = (2 * Math.PI * frequency) / sampleRate;
  }

  /** Fills `out` with the next samples and returns it. */
  fill<T extends Float32Array | Int16Array>(out: T): T {
    let ph = this.phase;
    if (out instanceof Int16Array) {
      const scale = 32767 * this.amplitude;
      for (let i = 0; i < out.length; i++, ph += this.step) out[i] = Math.round(scale * Math.sin(ph));
    } else {
      const scale = this.amplitude;
      for (let i = 0; i < out.length; i++, ph += this.step) out[i] = scale * Math.sin(ph);
    }
    this.phase = ph % (2 * Math.PI);
    return out;
  }
}

/** A new Float32Array of `length` samples of a sine at `dbfs` (peak) level. */
export function sine(
  length: number,
  frequency: number,
  dbfs: number = 0,
  sampleRate: number = 48_000,
): Float32Array {
  return new SineGenerator(frequency, dbfsToAmplitude(dbfs), sampleRate).fill(new Float32Array(length));
}

/** A new Int16Array of `length` samples of a sine at `dbfs` (peak) level. */
export function sineInt16(
  length: number,
  frequency: number,
  dbfs: number = 0,
  sampleRate: number = 48_000,
): Int16Array {
  return new SineGenerator(frequency, dbfsToAmplitude(dbfs), sampleRate).fill(new Int16Array(length));
}
