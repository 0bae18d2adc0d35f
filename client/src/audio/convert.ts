import { bytesPerSample, type StreamFormat } from './types.js';

/**
 * Conversion between a device's interleaved bytes (f32, i16 or u16, any channel count, little-endian)
 * and the engine's mono float samples (full scale 1.0). Capture downmixes by averaging the channels;
 * playback writes the same sample to every channel. Only a DataView is allocated per call (the
 * device library hands over a new Buffer per period anyway).
 */

const I16_SCALE = 1 / 32768;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Device frames (one sample per channel) held by `byteLength` bytes of `f`. */
export function framesIn(byteLength: number, f: StreamFormat): number {
  return Math.floor(byteLength / (bytesPerSample(f.format) * f.channels));
}

/**
 * Reads `frames` device frames from `bytes` into `out[0..frames)` as mono floats. Returns the frames
 * read (fewer when `bytes` or `out` is shorter).
 */
export function toMonoFloat(bytes: Uint8Array, f: StreamFormat, out: Float32Array, frames: number): number {
  const n = Math.min(frames, framesIn(bytes.byteLength, f), out.length);
  const ch = f.channels;
  const v = view(bytes);
  const inv = 1 / ch;
  let at = 0;
  switch (f.format) {
    case 'f32':
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let c = 0; c < ch; c++, at += 4) acc += v.getFloat32(at, true);
        out[i] = acc * inv;
      }
      break;
    case 'i16':
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let c = 0; c < ch; c++, at += 2) acc += v.getInt16(at, true);
        out[i] = acc * inv * I16_SCALE;
      }
      break;
    case 'u16':
      for (let i = 0; i < n; i++) {
        let acc = 0;
        for (let c = 0; c < ch; c++, at += 2) acc += v.getUint16(at, true) - 32768;
        out[i] = acc * inv * I16_SCALE;
      }
      break;
  }
  return n;
}

/** Float (full scale 1.0) to Int16 with rounding and clipping. */
export function floatToI16(x: number): number {
  const s = Math.round(x * 32768);
  return s > 32767 ? 32767 : s < -32768 ? -32768 : s;
}

/**
 * Writes mono floats `mono[0..frames)` to `bytes` as interleaved device frames, the same sample on
 * every channel, clipped to full scale. Returns the frames written.
 */
export function fromMonoFloat(
  mono: Float32Array,
  frames: number,
  f: StreamFormat,
  bytes: Uint8Array,
): number {
  const n = Math.min(frames, mono.length, framesIn(bytes.byteLength, f));
  const ch = f.channels;
  const v = view(bytes);
  let at = 0;
  switch (f.format) {
    case 'f32':
      for (let i = 0; i < n; i++) {
        const x = mono[i]!;
        const s = x > 1 ? 1 : x < -1 ? -1 : x;
        for (let c = 0; c < ch; c++, at += 4) v.setFloat32(at, s, true);
      }
      break;
    case 'i16':
      for (let i = 0; i < n; i++) {
        const s = floatToI16(mono[i]!);
        for (let c = 0; c < ch; c++, at += 2) v.setInt16(at, s, true);
      }
      break;
    case 'u16':
      for (let i = 0; i < n; i++) {
        const s = floatToI16(mono[i]!) + 32768;
        for (let c = 0; c < ch; c++, at += 2) v.setUint16(at, s, true);
      }
      break;
  }
  return n;
}

/** Int16 samples to floats (full scale 1.0). */
export function i16ToFloat(src: Int16Array, dst: Float32Array, n: number = src.length): void {
  for (let i = 0; i < n; i++) dst[i] = src[i]! * I16_SCALE;
}

/** Floats to Int16, rounded and clipped. */
export function floatToI16Array(src: Float32Array, dst: Int16Array, n: number = dst.length): void {
  for (let i = 0; i < n; i++) dst[i] = floatToI16(src[i]!);
}
