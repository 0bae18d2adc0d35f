import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  HEADER_BYTES,
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  MIN_PACKET_BYTES,
  TAG_BYTES,
  VOICE_FLAGS_MASK,
  VOICE_MAGIC,
  VOICE_PACKET_TYPE_NAMES,
  VOICE_VERSION,
  VoiceFlags,
  VoicePacketType,
  createVoiceHeader,
  decodeVoicePacket,
  encodeMessage,
  encodeVoicePacket,
  isVoicePacket,
  readHeader,
  readHeaderInto,
  readStreamSource,
  MAX_STREAM_OPUS_BYTES,
  STREAM_SOURCE_BYTES,
  streamSourceEquals,
  writeHeader,
  writeStreamSource,
  type VoiceHeader,
  type VoicePacketError,
  type VoicePacketType as VoicePacketTypeT,
} from '../src/index.js';

const uint32 = fc.integer({ min: 0, max: 0xffff_ffff });
const packetType = fc.constantFrom(...(Object.values(VoicePacketType) as VoicePacketTypeT[]));
const header = fc.record({
  type: packetType,
  flags: fc.integer({ min: 0, max: VOICE_FLAGS_MASK }),
  voiceId: uint32,
  sequence: uint32,
  timestamp: uint32,
});

/** The spec's framing rules, written independently of the implementation. */
function referenceError(b: Uint8Array): VoicePacketError | null {
  if (b.length < 32) return 'TOO_SHORT';
  if (b.length > 1032) return 'TOO_LONG';
  if (b[0] !== 0x56) return 'BAD_MAGIC';
  if (b[1] !== 1) return 'BAD_VERSION';
  if (!(b[2]! >= 1 && b[2]! <= 6)) return 'BAD_TYPE';
  return null;
}

function withTag(h: VoiceHeader, payloadLength = 0): Uint8Array {
  const buf = new Uint8Array(HEADER_BYTES + payloadLength + TAG_BYTES);
  writeHeader(buf, 0, h);
  return buf;
}

describe('constants', () => {
  it('match the documented layout', () => {
    expect(VOICE_MAGIC).toBe(0x56);
    expect(VOICE_VERSION).toBe(1);
    expect(VoicePacketType).toEqual({
      AUDIO: 1,
      HELLO: 2,
      HEARTBEAT: 3,
      HELLO_ACK: 4,
      HEARTBEAT_ACK: 5,
      STREAM: 6,
    });
    expect(VoiceFlags).toEqual({ MARKER: 1, FEC: 2, DTX: 4, RED: 8 });
    expect([HEADER_BYTES, TAG_BYTES, MAX_PAYLOAD_BYTES, MIN_PACKET_BYTES, MAX_PACKET_BYTES]).toEqual([
      16, 16, 1000, 32, 1032,
    ]);
    for (const [name, code] of Object.entries(VoicePacketType))
      expect(VOICE_PACKET_TYPE_NAMES[code]).toBe(name);
  });
});

describe('writeHeader', () => {
  it('writes the documented big-endian bytes', () => {
    const buf = new Uint8Array(20).fill(0xee);
    writeHeader(buf, 2, {
      type: VoicePacketType.AUDIO,
      flags: VoiceFlags.MARKER | VoiceFlags.FEC,
      voiceId: 0x0102_0304,
      sequence: 0xa0b0_c0d0,
      timestamp: 0x0000_03c0,
    });
    expect(Buffer.from(buf).toString('hex')).toBe(
      'eeee' + '56010103' + '01020304' + 'a0b0c0d0' + '000003c0' + 'ee'.repeat(2),
    );
  });

  it('throws TypeError on bad arguments', () => {
    const buf = new Uint8Array(32);
    const ok: VoiceHeader = { type: 1, flags: 0, voiceId: 1, sequence: 1, timestamp: 1 };
    expect(() => writeHeader(buf, 17, ok)).toThrow(TypeError);
    expect(() => writeHeader(new Uint8Array(15), 0, ok)).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, type: 7 as VoicePacketTypeT })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, type: 0 as VoicePacketTypeT })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, flags: 0x10 })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, flags: -1 })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, voiceId: 2 ** 32 })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, sequence: -1 })).toThrow(TypeError);
    expect(() => writeHeader(buf, 0, { ...ok, timestamp: 1.5 })).toThrow(TypeError);
    expect(() => writeHeader(buf, 16, ok)).not.toThrow();
  });
});

describe('readHeader', () => {
  it('round-trips any header with writeHeader', () => {
    fc.assert(
      fc.property(header, fc.integer({ min: 0, max: MAX_PAYLOAD_BYTES }), (h, n) => {
        expect(readHeader(withTag(h, n))).toEqual({ ok: true, header: h });
        const out = createVoiceHeader();
        expect(readHeaderInto(withTag(h, n), out)).toBe(null);
        expect(out).toEqual(h);
      }),
    );
  });

  it('reports each framing error', () => {
    const good = withTag({ type: 3, flags: 0, voiceId: 9, sequence: 1, timestamp: 2 });
    const bad = (i: number, v: number): Uint8Array => {
      const c = good.slice();
      c[i] = v;
      return c;
    };
    expect(readHeader(good).ok).toBe(true);
    expect(readHeader(good.subarray(0, 31))).toEqual({ ok: false, error: 'TOO_SHORT' });
    expect(readHeader(new Uint8Array(0))).toEqual({ ok: false, error: 'TOO_SHORT' });
    expect(readHeader(new Uint8Array(MAX_PACKET_BYTES + 1))).toEqual({ ok: false, error: 'TOO_LONG' });
    expect(readHeader(bad(0, 0x80))).toEqual({ ok: false, error: 'BAD_MAGIC' });
    expect(readHeader(bad(1, 2))).toEqual({ ok: false, error: 'BAD_VERSION' });
    expect(readHeader(bad(2, 0))).toEqual({ ok: false, error: 'BAD_TYPE' });
    expect(readHeader(bad(2, 6)).ok).toBe(true);
    expect(readHeader(bad(2, 7))).toEqual({ ok: false, error: 'BAD_TYPE' });
    expect(readHeader(withTag({ type: 1, flags: 0, voiceId: 0, sequence: 0, timestamp: 0 }, 1000)).ok).toBe(
      true,
    );
  });

  it('ignores undefined flag bits on receive', () => {
    const b = withTag({ type: 1, flags: VoiceFlags.DTX, voiceId: 1, sequence: 1, timestamp: 1 });
    b[3] = 0xf4;
    const r = readHeader(b);
    expect(r.ok && r.header.flags).toBe(VoiceFlags.DTX);
  });

  it('never throws and agrees with the reference rules on arbitrary bytes', () => {
    const near = fc
      .tuple(
        fc.constantFrom(0x56, 0x55, 0x80),
        fc.constantFrom(1, 0, 2),
        fc.integer({ min: 0, max: 7 }),
        fc.uint8Array({ minLength: 0, maxLength: 1100 }),
      )
      .map(([m, v, t, rest]) => Uint8Array.from([m, v, t, ...rest]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1100 }), near), (b) => {
        const r = readHeader(b);
        const expected = referenceError(b);
        if (expected === null) expect(r.ok).toBe(true);
        else expect(r).toEqual({ ok: false, error: expected });
      }),
      { numRuns: 2000 },
    );
  });

  it('every truncation of a valid packet is TOO_SHORT or still well-framed', () => {
    fc.assert(
      fc.property(header, fc.integer({ min: 0, max: 200 }), fc.nat(), (h, n, cut) => {
        const b = withTag(h, n);
        const len = cut % (b.length + 1);
        const r = readHeader(b.subarray(0, len));
        if (len < MIN_PACKET_BYTES) expect(r).toEqual({ ok: false, error: 'TOO_SHORT' });
        else expect(r).toEqual({ ok: true, header: h });
      }),
    );
  });
});

describe('isVoicePacket', () => {
  it('tells voice packets from msgpack frames', () => {
    fc.assert(
      fc.property(header, (h) => {
        expect(isVoicePacket(withTag(h))).toBe(true);
      }),
      { numRuns: 50 },
    );
    expect(isVoicePacket(encodeMessage({ t: 'ping', id: 1, ts: 0 }))).toBe(false);
    expect(isVoicePacket(new Uint8Array(0))).toBe(false);
    expect(isVoicePacket(Uint8Array.from([0x56]))).toBe(true);
  });
});

describe('encodeVoicePacket / decodeVoicePacket', () => {
  it('round-trip any packet', () => {
    fc.assert(
      fc.property(
        header,
        fc.uint8Array({ maxLength: MAX_PAYLOAD_BYTES }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        (h, body, tag) => {
          const bytes = encodeVoicePacket({ ...h, body, tag });
          expect(bytes.length).toBe(32 + body.length);
          expect(decodeVoicePacket(bytes)).toEqual({ ok: true, packet: { ...h, body, tag } });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('refuses oversized bodies and wrong tag sizes', () => {
    const h: VoiceHeader = { type: 1, flags: 0, voiceId: 1, sequence: 1, timestamp: 1 };
    expect(() => encodeVoicePacket({ ...h, body: new Uint8Array(1001), tag: new Uint8Array(16) })).toThrow(
      TypeError,
    );
    expect(() => encodeVoicePacket({ ...h, body: new Uint8Array(1), tag: new Uint8Array(15) })).toThrow(
      TypeError,
    );
    expect(decodeVoicePacket(new Uint8Array(5))).toEqual({ ok: false, error: 'TOO_SHORT' });
  });
});

describe('STREAM source', () => {
  const base64url = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const userId = fc
    .array(fc.constantFrom(...base64url.split('')), { minLength: 12, maxLength: 12 })
    .map((cs) => `u_${cs.join('')}`);

  it('is the 12 id characters after u_, in ASCII', () => {
    const buf = new Uint8Array(STREAM_SOURCE_BYTES + 3);
    writeStreamSource(buf, 0, 'u_Alice-Bob_12');
    expect(new TextDecoder().decode(buf.subarray(0, STREAM_SOURCE_BYTES))).toBe('Alice-Bob_12');
    expect(STREAM_SOURCE_BYTES).toBe(12);
    expect(MAX_STREAM_OPUS_BYTES).toBe(MAX_PAYLOAD_BYTES - 12);
  });

  it('round-trips any user id at any offset, and compares without allocating a string', () => {
    fc.assert(
      fc.property(userId, userId, fc.integer({ min: 0, max: 20 }), (a, b, at) => {
        const buf = new Uint8Array(at + STREAM_SOURCE_BYTES);
        writeStreamSource(buf, at, a);
        expect(readStreamSource(buf, at)).toBe(a);
        expect(streamSourceEquals(buf, at, a)).toBe(true);
        expect(streamSourceEquals(buf, at, b)).toBe(a === b);
      }),
    );
  });

  it('reads garbage as null and refuses to write what is not a user id', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 20 }),
        fc.integer({ min: -2, max: 22 }),
        (b, at) => {
          const r = readStreamSource(b, at);
          const ok =
            at >= 0 &&
            at + 12 <= b.length &&
            [...b.subarray(at, at + 12)].every((c) => base64url.includes(String.fromCharCode(c)));
          expect(r === null).toBe(!ok);
        },
      ),
    );
    const buf = new Uint8Array(12);
    for (const bad of [
      'c_Alice-Bob_12',
      'u_Alice-Bob_1',
      'u_Alice-Bob_123',
      'u_Alice Bob_12',
      'u_Alice\u00e9Bob_1',
    ])
      expect(() => writeStreamSource(buf, 0, bad)).toThrow(TypeError);
    expect(() => writeStreamSource(buf, 1, 'u_Alice-Bob_12')).toThrow(TypeError);
  });
});
