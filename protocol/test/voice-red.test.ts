import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  RED_HEADER_BYTES,
  STREAM_SOURCE_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  createRedBlock,
  decodeRed,
  encodeRed,
  readRedBlock,
  readStreamSource,
  writeRedBlock,
  writeStreamSource,
  type VoiceHeader,
} from '../src/index.js';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const frame = (max: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: 1, maxLength: max });

/** The README's rule, written independently: [R uint16 BE][R bytes][P >= 1 bytes], R >= 1. */
function referenceSplit(b: Uint8Array): { red: number[]; primary: number[] } | null {
  if (b.length < 2) return null;
  const r = b[0]! * 256 + b[1]!;
  if (r < 1 || 2 + r + 1 > b.length) return null;
  return { red: [...b.slice(2, 2 + r)], primary: [...b.slice(2 + r)] };
}

describe('RED block', () => {
  it('round-trips any two frames that fit the payload limit', () => {
    fc.assert(
      fc.property(frame(600), frame(600), (red, primary) => {
        const b = encodeRed(red, primary);
        if (RED_HEADER_BYTES + red.length + primary.length > MAX_PAYLOAD_BYTES) {
          expect(b).toBeNull();
          return;
        }
        expect(b).not.toBeNull();
        expect(b!.length).toBe(2 + red.length + primary.length);
        const d = decodeRed(b!);
        expect(d && [...d.red]).toEqual([...red]);
        expect(d && [...d.primary]).toEqual([...primary]);
      }),
    );
  });

  it('reads any bytes exactly as the reference rule, never throwing', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const want = referenceSplit(bytes);
        const got = decodeRed(bytes);
        if (want === null) expect(got).toBeNull();
        else expect(got && { red: [...got.red], primary: [...got.primary] }).toEqual(want);
      }),
    );
  });

  it('rejects a length past the end, a zero length, and no primary byte', () => {
    const b = createRedBlock();
    expect(readRedBlock(unhex('0005f8fffe'), 0, 5, b)).toBe(false); // R past the end
    expect(readRedBlock(unhex('0003f8fffe'), 0, 5, b)).toBe(false); // no primary byte
    expect(readRedBlock(unhex('0000f8fffe'), 0, 5, b)).toBe(false); // R = 0
    expect(readRedBlock(unhex('00'), 0, 1, b)).toBe(false);
    expect(readRedBlock(unhex('0001aabb'), 0, 5, b)).toBe(false); // length beyond the array
    expect(readRedBlock(unhex('0001aabb'), -1, 4, b)).toBe(false);
    expect(readRedBlock(unhex('ff0001aabb'), 1, 4, b)).toBe(true);
    expect(b).toEqual({ redOffset: 3, redLength: 1, primaryOffset: 4, primaryLength: 1 });
  });

  it('writes at an offset within a limit, -1 past it, TypeError on empty frames', () => {
    const buf = new Uint8Array(MAX_PAYLOAD_BYTES);
    const red = unhex('aabbcc');
    const primary = unhex('112233');
    const n = writeRedBlock(buf, STREAM_SOURCE_BYTES, red, 1, 2, primary, 0, 3);
    expect(n).toBe(7);
    expect(hex(buf.subarray(STREAM_SOURCE_BYTES, STREAM_SOURCE_BYTES + n))).toBe('0002bbcc112233');
    expect(writeRedBlock(buf, 0, red, 0, 3, primary, 0, 3, 7)).toBe(-1);
    const big = new Uint8Array(500);
    // 2 + 500 + 500 = 1002: one stream payload's source less would be needed too.
    expect(writeRedBlock(buf, 0, big, 0, 500, big, 0, 499)).toBe(1001 - 0 > MAX_PAYLOAD_BYTES ? -1 : 1001);
    expect(writeRedBlock(buf, 0, big, 0, 499, big, 0, 499)).toBe(1000);
    expect(() => writeRedBlock(buf, 0, red, 0, 0, primary, 0, 3)).toThrow(TypeError);
    expect(() => writeRedBlock(buf, 0, red, 0, 3, primary, 0, 0)).toThrow(TypeError);
    expect(() => writeRedBlock(buf, 0, red, 2, 3, primary, 0, 3)).toThrow(TypeError);
    expect(() => encodeRed(new Uint8Array(0), primary)).toThrow(TypeError);
  });
});

describe('RED known-answer vectors (README 9.1; cross-checked with node:crypto AES-256-GCM)', () => {
  const AUDIO = '56010108deadbeef0000000300000780' + '41b743b282a02c79' + 'bafb991bfafe91909f8c0cf21e3ada29';
  const STREAM =
    '56010608deadbeef0000000900000780' +
    '43159a036798b63a2da15113365f1afb40ac3542' +
    'ae9ec5c5b4e02fca235fa1413f3b1796';

  function seal(c: VoiceCipher, h: VoiceHeader, payload: Uint8Array): string {
    const out = new Uint8Array(MAX_PACKET_BYTES);
    return hex(out.subarray(0, c.seal(h, payload, out)));
  }

  it('a client RED AUDIO packet seals to the documented bytes and splits into its two frames', () => {
    const block = encodeRed(unhex('f8fffe'), unhex('f8fffd'))!;
    expect(hex(block)).toBe('0003f8fffef8fffd');
    const c = new VoiceCipher(KEY, VoiceDirection.CLIENT_TO_SERVER);
    const h = {
      type: VoicePacketType.AUDIO,
      flags: VoiceFlags.RED,
      voiceId: 0xdead_beef,
      sequence: 3,
      timestamp: 1920,
    };
    expect(seal(c, h, block)).toBe(AUDIO);
    const out = new Uint8Array(MAX_PAYLOAD_BYTES);
    const r = new VoiceCipher(KEY, VoiceDirection.SERVER_TO_CLIENT).open(unhex(AUDIO), out);
    expect(r.ok && r.header.flags).toBe(VoiceFlags.RED);
    const b = createRedBlock();
    expect(r.ok && readRedBlock(out, 0, r.payloadLength, b)).toBe(true);
    expect(hex(out.subarray(b.redOffset, b.redOffset + b.redLength))).toBe('f8fffe');
    expect(hex(out.subarray(b.primaryOffset, b.primaryOffset + b.primaryLength))).toBe('f8fffd');
  });

  it('a server RED STREAM packet carries the source, then the same block', () => {
    const payload = new Uint8Array(STREAM_SOURCE_BYTES + 8);
    writeStreamSource(payload, 0, 'u_Alice-Bob_12');
    expect(writeRedBlock(payload, STREAM_SOURCE_BYTES, unhex('f8fffe'), 0, 3, unhex('f8fffd'), 0, 3)).toBe(8);
    const s = new VoiceCipher(KEY, VoiceDirection.SERVER_TO_CLIENT);
    const h = {
      type: VoicePacketType.STREAM,
      flags: VoiceFlags.RED,
      voiceId: 0xdead_beef,
      sequence: 9,
      timestamp: 1920,
    };
    expect(seal(s, h, payload)).toBe(STREAM);
    const out = new Uint8Array(MAX_PAYLOAD_BYTES);
    const r = new VoiceCipher(KEY, VoiceDirection.CLIENT_TO_SERVER).open(unhex(STREAM), out);
    expect(r.ok && readStreamSource(out, 0)).toBe('u_Alice-Bob_12');
    const b = createRedBlock();
    expect(r.ok && readRedBlock(out, STREAM_SOURCE_BYTES, r.payloadLength - STREAM_SOURCE_BYTES, b)).toBe(
      true,
    );
    expect(b).toEqual({ redOffset: 14, redLength: 3, primaryOffset: 17, primaryLength: 3 });
  });
});
