import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import {
  CLIENT_MESSAGE_TYPES,
  ERROR_CODES,
  ERROR_CODE_LIST,
  MAX_ADVANCE_US,
  MAX_FRAME_BYTES,
  ProtocolError,
  SUPPORTED_VERSIONS,
  VoiceAdvance,
  decodeClientMessage,
  decodeRaw,
  decodeServerMessage,
  encodeMessage,
  isErrorCode,
  isVoicePacket,
  negotiateVersion,
  type DecodeResult,
} from '../src/index.js';
import { CLIENT_INVALID, CLIENT_SAMPLES, SERVER_SAMPLES } from './fixtures.js';

/** A standard msgpack encoder, independent of the codec's settings (as another client would use). */
const plain = new Packr({ useRecords: false, encodeUndefinedAsNil: true });
const raw = (value: unknown): Uint8Array => plain.pack(value);

/** Node's msgpackr decodes `bin` to Buffer, a browser's to Uint8Array: compare as Uint8Array. */
function normalize(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(normalize);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, normalize(x)]));
  }
  return v;
}

function expectError<T>(r: DecodeResult<T>, code: string, re?: number): void {
  expect(r.ok).toBe(false);
  if (r.ok) return;
  expect(r.code).toBe(code);
  expect(r.re).toBe(re);
  expect(typeof r.message).toBe('string');
}

describe('client messages', () => {
  it('has a sample for every type', () => {
    expect(Object.keys(CLIENT_SAMPLES).sort()).toEqual([...CLIENT_MESSAGE_TYPES].sort());
  });

  it.each(CLIENT_MESSAGE_TYPES)('%s round-trips through encodeMessage/decodeClientMessage', (type) => {
    const msg = CLIENT_SAMPLES[type];
    const r = decodeClientMessage(encodeMessage(msg));
    expect(r.ok).toBe(true);
    expect(normalize(r)).toEqual(normalize({ ok: true, value: msg }));
  });

  it.each(CLIENT_MESSAGE_TYPES)('%s with an invalid field gives INVALID_FIELD naming it, re = id', (type) => {
    const { patch, field } = CLIENT_INVALID[type];
    const msg = { ...CLIENT_SAMPLES[type], ...patch } as Record<string, unknown>;
    const r = decodeClientMessage(raw(msg));
    const expectedRe = type === 'voice' || field === 'id' ? undefined : (msg.id as number);
    expectError(r, 'INVALID_FIELD', expectedRe);
    if (!r.ok) expect(r.message).toContain(`${type}: ${field}`);
  });

  it.each(CLIENT_MESSAGE_TYPES.filter((t) => t !== 'voice'))('%s without id is INVALID_FIELD', (type) => {
    const { id: _id, ...rest } = CLIENT_SAMPLES[type] as { id: number };
    const r = decodeClientMessage(raw(rest));
    expectError(r, 'INVALID_FIELD', undefined);
    if (!r.ok) expect(r.message).toContain(': id:');
  });

  it('normalises nicknames (NFC, trimmed) before checking them', () => {
    const r = decodeClientMessage(raw({ t: 'profile.update', id: 1, nickname: '  Zoe\u0301  ' }));
    expect(r).toEqual({ ok: true, value: { t: 'profile.update', id: 1, nickname: 'Zo\u00e9' } });
    expectError(
      decodeClientMessage(raw({ t: 'profile.update', id: 2, nickname: 'a<b' })),
      'INVALID_FIELD',
      2,
    );
  });

  it('ignores unknown fields (forward compatibility) and drops them', () => {
    const r = decodeClientMessage(raw({ t: 'channel.list', id: 4, futureField: { x: 1 } }));
    expect(r).toEqual({ ok: true, value: { t: 'channel.list', id: 4 } });
  });

  it('accepts a nil-free encoding of optional fields left undefined', () => {
    const bytes = encodeMessage({ t: 'voice.state', id: 3, selfMute: undefined, selfDeaf: true });
    expect(decodeRaw(bytes)).toEqual({ ok: true, value: { t: 'voice.state', id: 3, selfDeaf: true } });
    expect(decodeClientMessage(bytes)).toEqual({
      ok: true,
      value: { t: 'voice.state', id: 3, selfDeaf: true },
    });
  });

  it('rejects hello versions that are not positive integers', () => {
    expectError(decodeClientMessage(raw({ ...CLIENT_SAMPLES.hello, versions: [0] })), 'INVALID_FIELD', 1);
    expectError(decodeClientMessage(raw({ ...CLIENT_SAMPLES.hello, token: '' })), 'INVALID_FIELD', 1);
  });
});

describe('decodeClientMessage errors', () => {
  it('unknown type gives UNKNOWN_TYPE with re when id is readable', () => {
    expectError(decodeClientMessage(raw({ t: 'channel.explode', id: 7 })), 'UNKNOWN_TYPE', 7);
    expectError(decodeClientMessage(raw({ t: 'toString', id: 8 })), 'UNKNOWN_TYPE', 8);
    expectError(decodeClientMessage(raw({ t: '__proto__', id: 9 })), 'UNKNOWN_TYPE', 9);
    expectError(decodeClientMessage(raw({ id: 3 })), 'UNKNOWN_TYPE', 3);
    expectError(decodeClientMessage(raw({ t: 5 })), 'UNKNOWN_TYPE', undefined);
    expectError(decodeClientMessage(raw({})), 'UNKNOWN_TYPE', undefined);
  });

  it('does not echo an id that is not a valid request id', () => {
    expectError(decodeClientMessage(raw({ t: 'nope', id: -1 })), 'UNKNOWN_TYPE', undefined);
    expectError(decodeClientMessage(raw({ t: 'nope', id: 2 ** 32 })), 'UNKNOWN_TYPE', undefined);
    expectError(decodeClientMessage(raw({ t: 'nope', id: 1.5 })), 'UNKNOWN_TYPE', undefined);
    expectError(decodeClientMessage(raw({ t: 'nope', id: '1' })), 'UNKNOWN_TYPE', undefined);
  });

  it('survives a `t` that JSON.stringify cannot serialise (msgpack bigint extension)', () => {
    // {"t": <msgpackr bigint extension 0x42, value 5>}
    const bytes = Uint8Array.from([0x81, 0xa1, 0x74, 0xd4, 0x42, 0x05]);
    expectError(decodeClientMessage(bytes), 'UNKNOWN_TYPE', undefined);
  });

  it('non-map values and garbage give BAD_FRAME', () => {
    for (const v of [[1, 2], 'hello', 42, null, true, new Uint8Array([1, 2])]) {
      expectError(decodeClientMessage(raw(v)), 'BAD_FRAME');
    }
    expectError(decodeClientMessage(new Uint8Array(0)), 'BAD_FRAME');
    expectError(decodeClientMessage(Uint8Array.from([0xc1])), 'BAD_FRAME');
    // A voice packet sent as a signaling frame is not msgpack-map shaped.
    expectError(decodeClientMessage(Uint8Array.from([0x56, 1, 1, 0])), 'BAD_FRAME');
    // A valid frame followed by trailing bytes.
    const ok = encodeMessage(CLIENT_SAMPLES.ping);
    expectError(decodeClientMessage(Uint8Array.from([...ok, 0x00])), 'BAD_FRAME');
  });

  it('every strict prefix of a valid frame is BAD_FRAME', () => {
    for (const type of CLIENT_MESSAGE_TYPES) {
      const bytes = encodeMessage(CLIENT_SAMPLES[type]);
      for (let n = 0; n < bytes.byteLength; n++) {
        expectError(decodeClientMessage(bytes.subarray(0, n)), 'BAD_FRAME');
      }
    }
  });

  it('frames over MAX_FRAME_BYTES give FRAME_TOO_LARGE without being parsed', () => {
    const big = raw({ t: 'ping', id: 1, ts: 1, pad: 'x'.repeat(MAX_FRAME_BYTES) });
    expect(big.byteLength).toBeGreaterThan(MAX_FRAME_BYTES);
    expectError(decodeClientMessage(big), 'FRAME_TOO_LARGE');
    expectError(decodeClientMessage(new Uint8Array(MAX_FRAME_BYTES + 1)), 'FRAME_TOO_LARGE');
    // Exactly at the limit is still parsed (here: garbage, so BAD_FRAME).
    expectError(decodeClientMessage(new Uint8Array(MAX_FRAME_BYTES).fill(0xc1)), 'BAD_FRAME');
  });

  it('decoded binary fields are copies, not views into the frame', () => {
    const frame = encodeMessage(CLIENT_SAMPLES.voice);
    const r = decodeClientMessage(frame);
    frame.fill(0);
    expect(r.ok && r.value.t === 'voice' && Array.from(r.value.p)).toEqual(
      Array.from(CLIENT_SAMPLES.voice.p),
    );
  });
});

describe('decodeClientMessage never throws', () => {
  it('on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
        const r = decodeClientMessage(bytes);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('on arbitrary bytes behind a map header with a known type', () => {
    const types = fc.constantFrom(...CLIENT_MESSAGE_TYPES);
    fc.assert(
      fc.property(types, fc.uint8Array({ maxLength: 256 }), (type, tail) => {
        const head = raw({ t: type });
        const bytes = Uint8Array.from([0x8f, ...head.subarray(1), ...tail]);
        expect(typeof decodeClientMessage(bytes).ok).toBe('boolean');
      }),
      { numRuns: 1000 },
    );
  });

  it('on arbitrary msgpack values, and maps with a real type and arbitrary fields', () => {
    fc.assert(
      fc.property(fc.anything({ withBigInt: true, withDate: true, withTypedArray: true }), (v) => {
        let bytes: Uint8Array;
        try {
          bytes = plain.pack(v);
        } catch {
          return; // not every JS value is encodable
        }
        const r = decodeClientMessage(bytes);
        if (typeof v !== 'object' || v === null || Array.isArray(v)) expect(r.ok).toBe(false);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...CLIENT_MESSAGE_TYPES),
        fc.dictionary(fc.string({ maxLength: 12 }), fc.anything({ maxDepth: 2 }), { maxKeys: 6 }),
        (t, fields) => {
          const r = decodeClientMessage(raw({ ...fields, t }));
          if (!r.ok) expect(['INVALID_FIELD', 'BAD_FRAME', 'FRAME_TOO_LARGE']).toContain(r.code);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('on single bit flips of every valid frame', () => {
    const frames = CLIENT_MESSAGE_TYPES.map((t) => encodeMessage(CLIENT_SAMPLES[t]));
    fc.assert(
      fc.property(fc.constantFrom(...frames), fc.nat(), fc.integer({ min: 0, max: 7 }), (frame, at, bit) => {
        const copy = frame.slice();
        copy[at % copy.length]! ^= 1 << bit;
        expect(typeof decodeClientMessage(copy).ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('server messages', () => {
  it.each(Object.keys(SERVER_SAMPLES))('%s round-trips through encodeMessage/decodeServerMessage', (t) => {
    const msg = SERVER_SAMPLES[t as keyof typeof SERVER_SAMPLES];
    const bytes = encodeMessage(msg);
    expect(bytes[0]! >= 0x80 && bytes[0]! <= 0x8f).toBe(true); // a fixmap: never mistaken for voice
    expect(isVoicePacket(bytes)).toBe(false);
    expect(normalize(decodeServerMessage(bytes))).toEqual(normalize({ ok: true, value: msg }));
  });

  it('an error without re has no re key at all (no msgpackr-only undefined extension)', () => {
    const bytes = encodeMessage({ t: 'error', re: undefined, code: 'RATE_LIMITED', message: 'slow down' });
    const hex = Buffer.from(bytes).toString('hex');
    expect(hex).not.toContain('d40000');
    const r = decodeRaw(bytes);
    expect(r.ok && Object.keys(r.value as object)).toEqual(['t', 'code', 'message']);
  });

  it('the README 3.2 test vector: the ping frame is those 24 bytes, and its int64 form reads the same', () => {
    const vector = '83a174a470696e67a2696402a27473cb4278bcfe5687b000';
    const msg = { t: 'ping', id: 2, ts: 1700000000123 } as const;
    expect(Buffer.from(encodeMessage(msg)).toString('hex')).toBe(vector);
    expect(decodeClientMessage(Buffer.from(vector, 'hex'))).toEqual({ ok: true, value: msg });
    // "an int64 would be as good": d3 then the 8 bytes of 1700000000123.
    const int64 = vector.replace('cb4278bcfe5687b000', 'd30000018bcfe5687b');
    expect(decodeClientMessage(Buffer.from(int64, 'hex'))).toEqual({ ok: true, value: msg });
  });

  it('README 3.2: an integer map key names no field and is ignored; a nil optional field is refused', () => {
    // {1: 'x', t: 'ping', id: 3, ts: 1}: the key 1 is read as "1", an unknown field.
    const intKey = Buffer.from('84' + '01a178' + 'a174a470696e67' + 'a2696403' + 'a2747301', 'hex');
    expect(decodeClientMessage(intKey)).toEqual({ ok: true, value: { t: 'ping', id: 3, ts: 1 } });
    const r = decodeClientMessage(raw({ t: 'channel.list', id: 4, cursor: null }));
    expect(r.ok).toBe(false);
    expect(!r.ok && [r.code, r.re]).toEqual(['INVALID_FIELD', 4]);
  });

  it('decodeServerMessage rejects frames without a string t', () => {
    expectError(decodeServerMessage(raw({ re: 1 })), 'BAD_FRAME');
    expectError(decodeServerMessage(raw([1])), 'BAD_FRAME');
    expectError(decodeServerMessage(Uint8Array.from([0xc1])), 'BAD_FRAME');
  });

  it('decodeServerMessage never throws', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
        expect(typeof decodeServerMessage(b).ok).toBe('boolean');
      }),
      { numRuns: 1000 },
    );
  });
});

describe('voice.advance', () => {
  const channelId = SERVER_SAMPLES['voice.advance'].channelId;

  it('any valid advance round-trips and validates; the shift stays under one 20 ms frame', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 0xffff_ffff }),
        fc.integer({ min: -MAX_ADVANCE_US, max: MAX_ADVANCE_US }),
        (seq, shiftUs) => {
          const msg = { t: 'voice.advance' as const, channelId, seq, shiftUs };
          const r = decodeServerMessage(encodeMessage(msg));
          expect(r.ok && VoiceAdvance.parse(r.value)).toEqual(msg);
        },
      ),
    );
    expect(MAX_ADVANCE_US).toBeLessThan(20_000);
  });

  it('refuses a shift of a frame or more, a fractional or missing shift, and a seq outside 1..2^32-1', () => {
    const ok = { t: 'voice.advance', channelId, seq: 1, shiftUs: 0 };
    expect(VoiceAdvance.safeParse(ok).success).toBe(true);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.record({ shiftUs: fc.oneof(fc.integer({ min: 20_000 }), fc.integer({ max: -20_000 })) }),
          fc.record({ shiftUs: fc.double({ noInteger: true }) }),
          fc.record({ shiftUs: fc.constant(undefined) }),
          fc.record({ seq: fc.oneof(fc.integer({ max: 0 }), fc.constantFrom(2 ** 32, 2 ** 40)) }),
          fc.record({ channelId: fc.string({ maxLength: 20 }) }),
        ),
        (patch) => {
          const r = decodeServerMessage(raw({ ...ok, ...patch }));
          expect(r.ok && VoiceAdvance.safeParse(r.value).success).toBe(false);
        },
      ),
    );
  });
});

describe('versions and error codes', () => {
  it('negotiates the highest common version', () => {
    expect(negotiateVersion([1])).toBe(1);
    expect(negotiateVersion([99, 1, 0])).toBe(1);
    expect(negotiateVersion([2, 3])).toBe(null);
    expect(negotiateVersion([])).toBe(null);
    expect(SUPPORTED_VERSIONS).toContain(1);
  });

  it('every error code has an HTTP status and text, and ProtocolError carries them', () => {
    for (const code of ERROR_CODE_LIST) {
      expect(isErrorCode(code)).toBe(true);
      const e = new ProtocolError(code);
      expect(e.code).toBe(code);
      expect(e.message).toBe(ERROR_CODES[code].text);
      expect(e.httpStatus).toBeGreaterThanOrEqual(400);
      expect(e).toBeInstanceOf(Error);
    }
    expect(isErrorCode('toString')).toBe(false);
    expect(isErrorCode('NOPE')).toBe(false);
  });
});
