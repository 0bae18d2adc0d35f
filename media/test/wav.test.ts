import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  decodeWav,
  encodeWav,
  readWav,
  sineInt16,
  toneDbfs,
  WavFormatError,
  writeWav,
} from '../src/index.js';

function header(fields: {
  format?: number;
  channels?: number;
  rate?: number;
  bits?: number;
  dataBytes?: number;
}) {
  const { format = 1, channels = 1, rate = 48_000, bits = 16, dataBytes = 4 } = fields;
  const buf = new Uint8Array(44 + Math.max(0, dataBytes === 0xffffffff ? 4 : dataBytes));
  const v = new DataView(buf.buffer);
  const put = (at: number, s: string): void => s.split('').forEach((c, i) => (buf[at + i] = c.charCodeAt(0)));
  put(0, 'RIFF');
  v.setUint32(4, buf.length - 8, true);
  put(8, 'WAVE');
  put(12, 'fmt ');
  v.setUint32(16, 16, true);
  v.setUint16(20, format, true);
  v.setUint16(22, channels, true);
  v.setUint32(24, rate, true);
  v.setUint32(28, (rate * channels * bits) / 8, true);
  v.setUint16(32, (channels * bits) / 8, true);
  v.setUint16(34, bits, true);
  put(36, 'data');
  v.setUint32(40, dataBytes, true);
  return buf;
}

function expectWavError(bytes: Uint8Array, code: string, message: RegExp): void {
  try {
    decodeWav(bytes);
    expect.unreachable();
  } catch (err) {
    expect(err).toBeInstanceOf(WavFormatError);
    expect((err as WavFormatError).code).toBe(code);
    expect((err as Error).message).toMatch(message);
  }
}

describe('WAV', () => {
  it('round-trips samples through bytes and through a file', async () => {
    const samples = sineInt16(48_000, 440, -6);
    samples[0] = -32768;
    samples[1] = 32767;
    const bytes = encodeWav(samples);
    expect(bytes.length).toBe(44 + 96_000);
    const back = decodeWav(bytes, { sampleRate: 48_000 });
    expect(back.sampleRate).toBe(48_000);
    expect(back.samples).toEqual(samples);

    const dir = await mkdtemp(join(tmpdir(), 'media-wav-'));
    try {
      const path = join(dir, 'tone.wav');
      await writeWav(path, samples);
      const read = await readWav(path);
      expect(read.samples).toEqual(samples);
      expect(toneDbfs(read.samples, 440)).toBeCloseTo(-6, 1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('skips unknown (odd-sized, padded) chunks, reads unaligned data and extensible PCM', () => {
    const base = encodeWav(Int16Array.of(1, -2, 3));
    // A 3-byte LIST chunk (plus its pad byte) between fmt and data.
    const extra = Uint8Array.of(...'LIST'.split('').map((c) => c.charCodeAt(0)), 3, 0, 0, 0, 9, 9, 9, 0);
    const withChunk = new Uint8Array(base.length + extra.length);
    withChunk.set(base.subarray(0, 36));
    withChunk.set(extra, 36);
    withChunk.set(base.subarray(36), 36 + extra.length);
    expect(Array.from(decodeWav(withChunk).samples)).toEqual([1, -2, 3]);
    // The file's bytes at an odd offset in memory (no aligned Int16Array view possible).
    const odd = new Uint8Array(base.length + 1);
    odd.set(base, 1);
    expect(Array.from(decodeWav(odd.subarray(1)).samples)).toEqual([1, -2, 3]);

    // WAVE_FORMAT_EXTENSIBLE with a PCM sub-format (fmt chunk of 40 bytes).
    const ext = new Uint8Array(68 + 4);
    ext.set(header({}).subarray(0, 20));
    const v = new DataView(ext.buffer);
    v.setUint32(16, 40, true);
    v.setUint16(20, 0xfffe, true);
    v.setUint16(22, 1, true);
    v.setUint32(24, 48_000, true);
    v.setUint16(34, 16, true);
    v.setUint16(44, 1, true); // sub-format GUID starts with 0x0001 = PCM
    ext.set([100, 97, 116, 97], 60);
    v.setUint32(64, 4, true);
    v.setInt16(68, 7, true);
    v.setInt16(70, -7, true);
    expect(Array.from(decodeWav(ext).samples)).toEqual([7, -7]);
  });

  it('accepts a streamed data size (0xFFFFFFFF) as "to the end"', () => {
    const bytes = header({ dataBytes: 0xffffffff });
    expect(decodeWav(bytes).samples.length).toBe(2);
  });

  it('explains what is wrong with bad files', () => {
    expectWavError(new Uint8Array(4), 'WAV_TRUNCATED', /too short/);
    expectWavError(new TextEncoder().encode('RIFF....AVI LIST'), 'WAV_FORMAT', /not a RIFF\/WAVE/);
    expectWavError(header({ channels: 2 }), 'WAV_FORMAT', /2 channels, expected mono/);
    expectWavError(header({ bits: 8 }), 'WAV_FORMAT', /8-bit/);
    expectWavError(header({ format: 3, bits: 16 }), 'WAV_FORMAT', /format 3 is not integer PCM/);
    expectWavError(
      header({ dataBytes: 4 }).subarray(0, 46),
      'WAV_TRUNCATED',
      /declares 4 bytes, file holds 2/,
    );
    expectWavError(header({}).subarray(0, 36), 'WAV_TRUNCATED', /no data chunk/);
    expect(() => decodeWav(header({ rate: 22_050 }), { sampleRate: 48_000 })).toThrow(
      /22050 Hz, expected 48000/,
    );
    expect(decodeWav(header({ rate: 22_050 })).sampleRate).toBe(22_050);
  });
});
