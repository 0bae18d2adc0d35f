import { toneDbfs } from '@voice/media';

/**
 * Sample-exact matching of a recording against reference decodes placed at unknown offsets: a
 * client that mixes several speakers itself must play their exact sum, so each speaker is found
 * by its first frame, then taken out, and what remains is the next one's (or nothing).
 */

/** Samples per frame the helpers search by (20 ms at 48 kHz). */
const FRAME = 960;

/** The first offset in [from, to) where `signal` holds `ref`'s first frame sample for sample, or -1. */
export function findFrame(
  signal: Int32Array | Int16Array,
  ref: Int16Array,
  from: number,
  to: number,
): number {
  for (let o = from; o < to && o + FRAME <= signal.length; o++) {
    let i = 0;
    while (i < FRAME && signal[o + i] === ref[i]) i++;
    if (i === FRAME) return o;
  }
  return -1;
}

/** `signal` minus `ref` placed at `offset` (as Int32: nothing clips). */
export function minus(signal: Int32Array | Int16Array, ref: Int16Array, offset: number): Int32Array {
  const r = Int32Array.from(signal);
  for (let i = 0; i < ref.length && offset + i < r.length; i++) r[offset + i]! -= ref[i]!;
  return r;
}

/** Samples in [from, to) where `residual` is not zero. */
export function nonZero(residual: Int32Array, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) if (residual[i] !== 0) n++;
  return n;
}

/** Level of `hz` in `signal[from, to)`, dBFS. */
export function level(signal: Int16Array | Int32Array, hz: number, from: number, to: number): number {
  return toneDbfs(
    Float32Array.from(signal.subarray(from, to), (v) => v / 32768),
    hz,
    48_000,
  );
}
