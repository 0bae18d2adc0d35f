import { amplitudeToDbfs, type PcmFrame } from './level.js';

/**
 * Measurements for tests that check the audio itself. Int16 input is scaled by 1/32768.
 */

/**
 * Goertzel (single-frequency DFT) of `signal[start..start+length)` at exactly `frequency` (not rounded
 * to a bin), with a Hann window. Returns the estimated squared peak amplitude of a sinusoid at that
 * frequency: a full-scale sine gives 1.0. Other tones further away than ~2 bins / length leak little.
 */
export function goertzelPower(
  signal: PcmFrame,
  frequency: number,
  sampleRate: number = 48_000,
  start: number = 0,
  length: number = signal.length - start,
): number {
  if (start < 0 || length <= 0 || start + length > signal.length) throw new RangeError('window out of range');
  const scale = signal instanceof Int16Array ? 1 / 32768 : 1;
  const w = (2 * Math.PI * frequency) / sampleRate;
  const coeff = 2 * Math.cos(w);
  const hannStep = (2 * Math.PI) / (length - 1 || 1);
  let s1 = 0;
  let s2 = 0;
  let wsum = 0;
  for (let i = 0; i < length; i++) {
    const win = 0.5 - 0.5 * Math.cos(hannStep * i);
    wsum += win;
    const s0 = signal[start + i]! * scale * win + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const mag2 = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  const amp = (2 * Math.sqrt(mag2 > 0 ? mag2 : 0)) / wsum;
  return amp * amp;
}

/** Estimated peak amplitude (linear) of the tone at `frequency`. */
export function toneAmplitude(
  signal: PcmFrame,
  frequency: number,
  sampleRate: number = 48_000,
  start?: number,
  length?: number,
): number {
  return Math.sqrt(goertzelPower(signal, frequency, sampleRate, start, length));
}

/** Level of the tone at `frequency`, dBFS (peak convention: a full-scale sine is 0 dBFS). */
export function toneDbfs(
  signal: PcmFrame,
  frequency: number,
  sampleRate: number = 48_000,
  start?: number,
  length?: number,
): number {
  return amplitudeToDbfs(toneAmplitude(signal, frequency, sampleRate, start, length));
}

/**
 * Onset / click detector: index of the first sample at or after `start` whose absolute value reaches
 * `threshold` (linear, 1.0 = full scale), or -1.
 */
export function detectOnset(signal: PcmFrame, threshold: number, start: number = 0): number {
  const t = signal instanceof Int16Array ? threshold * 32768 : threshold;
  for (let i = Math.max(0, start); i < signal.length; i++) {
    const v = signal[i]!;
    if (v >= t || -v >= t) return i;
  }
  return -1;
}

/**
 * Signal-to-error ratio in dB of `test` against `reference` over their common length (for codec
 * checks that compare waveforms). Infinity when identical.
 */
export function snrDb(reference: PcmFrame, test: PcmFrame): number {
  const rs = reference instanceof Int16Array ? 1 / 32768 : 1;
  const ts = test instanceof Int16Array ? 1 / 32768 : 1;
  const n = Math.min(reference.length, test.length);
  let sig = 0;
  let err = 0;
  for (let i = 0; i < n; i++) {
    const r = reference[i]! * rs;
    const e = r - test[i]! * ts;
    sig += r * r;
    err += e * e;
  }
  if (err === 0) return Number.POSITIVE_INFINITY;
  return 10 * Math.log10(sig / err);
}
