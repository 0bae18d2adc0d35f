import { readFile, writeFile } from 'node:fs/promises';
import { WavFormatError } from './errors.js';

/** 16-bit PCM mono WAV (RIFF/WAVE), little-endian. */

export interface WavData {
  readonly sampleRate: number;
  readonly samples: Int16Array;
}

export interface ReadWavOptions {
  /** Reject files at any other rate (e.g. 48000). Default: accept any rate and report it. */
  readonly sampleRate?: number;
}

const WAVE_FORMAT_PCM = 1;
const WAVE_FORMAT_EXTENSIBLE = 0xfffe;
const UNKNOWN_SIZE = 0xffffffff;

function fourcc(view: DataView, at: number): string {
  return String.fromCharCode(
    view.getUint8(at),
    view.getUint8(at + 1),
    view.getUint8(at + 2),
    view.getUint8(at + 3),
  );
}

/** Encodes mono Int16 samples as a canonical 44-byte-header WAV file. */
export function encodeWav(samples: Int16Array, sampleRate: number = 48_000): Uint8Array {
  if (!Number.isInteger(sampleRate) || sampleRate < 1)
    throw new TypeError('sampleRate must be a positive integer');
  const dataBytes = samples.length * 2;
  if (dataBytes > 0xffffffff - 36) throw new RangeError('too many samples for a WAV file');
  const out = new Uint8Array(44 + dataBytes);
  const v = new DataView(out.buffer);
  const ascii = (at: number, s: string): void => {
    for (let i = 0; i < 4; i++) out[at + i] = s.charCodeAt(i);
  };
  ascii(0, 'RIFF');
  v.setUint32(4, 36 + dataBytes, true);
  ascii(8, 'WAVE');
  ascii(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, WAVE_FORMAT_PCM, true);
  v.setUint16(22, 1, true); // channels
  v.setUint32(24, sampleRate, true);
  v.setUint32(28, sampleRate * 2, true); // byte rate
  v.setUint16(32, 2, true); // block align
  v.setUint16(34, 16, true); // bits per sample
  ascii(36, 'data');
  v.setUint32(40, dataBytes, true);
  for (let i = 0; i < samples.length; i++) v.setInt16(44 + i * 2, samples[i]!, true);
  return out;
}

/**
 * Decodes a 16-bit PCM mono WAV. Accepts WAVE_FORMAT_PCM and WAVE_FORMAT_EXTENSIBLE with a PCM
 * subformat, skips unknown chunks, and accepts a data size of 0xFFFFFFFF (streamed files) as "to the
 * end". Throws `WavFormatError` (code WAV_FORMAT or WAV_TRUNCATED) naming what is wrong.
 */
export function decodeWav(bytes: Uint8Array, options: ReadWavOptions = {}): WavData {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 12)
    throw new WavFormatError('WAV_TRUNCATED', `WAV: file is ${bytes.length} bytes, too short`);
  if (fourcc(v, 0) !== 'RIFF' || fourcc(v, 8) !== 'WAVE') {
    throw new WavFormatError('WAV_FORMAT', 'WAV: not a RIFF/WAVE file');
  }
  let sampleRate = -1;
  let pos = 12;
  while (pos + 8 <= bytes.length) {
    const id = fourcc(v, pos);
    const size = v.getUint32(pos + 4, true);
    const body = pos + 8;
    if (id === 'fmt ') {
      if (size < 16 || body + size > bytes.length) {
        throw new WavFormatError('WAV_FORMAT', `WAV: fmt chunk of ${size} bytes is invalid`);
      }
      let format = v.getUint16(body, true);
      const channels = v.getUint16(body + 2, true);
      sampleRate = v.getUint32(body + 4, true);
      const bits = v.getUint16(body + 14, true);
      if (format === WAVE_FORMAT_EXTENSIBLE && size >= 40) format = v.getUint16(body + 24, true);
      if (format !== WAVE_FORMAT_PCM) {
        throw new WavFormatError('WAV_FORMAT', `WAV: format ${format} is not integer PCM`);
      }
      if (channels !== 1) throw new WavFormatError('WAV_FORMAT', `WAV: ${channels} channels, expected mono`);
      if (bits !== 16) throw new WavFormatError('WAV_FORMAT', `WAV: ${bits}-bit samples, expected 16-bit`);
      if (sampleRate === 0) throw new WavFormatError('WAV_FORMAT', 'WAV: sample rate 0');
      if (options.sampleRate !== undefined && sampleRate !== options.sampleRate) {
        throw new WavFormatError('WAV_FORMAT', `WAV: ${sampleRate} Hz, expected ${options.sampleRate} Hz`);
      }
    } else if (id === 'data') {
      if (sampleRate < 0) throw new WavFormatError('WAV_FORMAT', 'WAV: data chunk before fmt chunk');
      let len = size;
      if (size === UNKNOWN_SIZE) len = bytes.length - body;
      else if (body + size > bytes.length) {
        throw new WavFormatError(
          'WAV_TRUNCATED',
          `WAV: data chunk declares ${size} bytes, file holds ${bytes.length - body}`,
        );
      }
      const n = len >> 1;
      const samples = new Int16Array(n);
      for (let i = 0; i < n; i++) samples[i] = v.getInt16(body + i * 2, true);
      return { sampleRate, samples };
    }
    if (size === UNKNOWN_SIZE) break;
    pos = body + size + (size & 1); // chunks are padded to even sizes
  }
  throw new WavFormatError(
    sampleRate < 0 ? 'WAV_FORMAT' : 'WAV_TRUNCATED',
    sampleRate < 0 ? 'WAV: no fmt chunk' : 'WAV: no data chunk',
  );
}

export async function readWav(path: string, options?: ReadWavOptions): Promise<WavData> {
  return decodeWav(await readFile(path), options);
}

export async function writeWav(
  path: string,
  samples: Int16Array,
  sampleRate: number = 48_000,
): Promise<void> {
  await writeFile(path, encodeWav(samples, sampleRate));
}
