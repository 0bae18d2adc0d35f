import { createDecipheriv } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  ACK_BODY_BYTES,
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  REPLAY_WINDOW_SIZE,
  ReplayWindow,
  TIME_BODY_BYTES,
  VOICE_OPEN_ERRORS,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  ackFor,
  createVoiceHeader,
  createVoiceKey,
  encodeAckBody,
  encodeTimeBody,
  readAckBody,
  readStreamSource,
  readTimeBody,
  STREAM_SOURCE_BYTES,
  writeStreamSource,
  writeVoiceNonce,
  type VoiceHeader,
  type VoicePacketType as VoicePacketTypeT,
} from '../src/index.js';

const KEY = Uint8Array.from({ length: 32 }, (_, i) => i);
const C2S = VoiceDirection.CLIENT_TO_SERVER;
const S2C = VoiceDirection.SERVER_TO_CLIENT;
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const unhex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));

function pair(key: Uint8Array = KEY): { client: VoiceCipher; server: VoiceCipher } {
  return { client: new VoiceCipher(key, C2S), server: new VoiceCipher(key, S2C) };
}

function seal(c: VoiceCipher, h: Partial<VoiceHeader>, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(MAX_PACKET_BYTES);
  const header: VoiceHeader = {
    type: VoicePacketType.AUDIO,
    flags: 0,
    voiceId: 42,
    sequence: c.nextSequence,
    timestamp: 0,
    ...h,
  };
  return out.slice(0, c.seal(header, payload, out));
}

const plain = (): Uint8Array => new Uint8Array(MAX_PAYLOAD_BYTES);

describe('known-answer vectors (also in README.md; cross-checked with Python cryptography AESGCM)', () => {
  const AUDIO = '56010101deadbeef00000001000003c0' + '89e62e' + '6df34f70ae2765723b27f9a1742d2043';
  const HEARTBEAT =
    '56010300deadbeef0000000200001388' + 'c408b34ae60816c1' + '0230b6570e3236e3ab218943c16239eb';
  const HEARTBEAT_ACK =
    '56010500deadbeef0000000700000064' +
    '1438b70d032e166b4fbc8390ad2243b3' +
    '28d7982cb2667009be32a8f660193b84';

  it('client AUDIO and HEARTBEAT seal to the documented bytes', () => {
    const c = new VoiceCipher(KEY, C2S);
    const a = seal(
      c,
      { flags: VoiceFlags.MARKER, voiceId: 0xdead_beef, sequence: 1, timestamp: 960 },
      unhex('f8fffe'),
    );
    expect(hex(a)).toBe(AUDIO);
    const hb = seal(
      c,
      { type: VoicePacketType.HEARTBEAT, voiceId: 0xdead_beef, sequence: 2, timestamp: 5000 },
      encodeTimeBody(12345.5),
    );
    expect(hex(hb)).toBe(HEARTBEAT);
  });

  it('server opens them and its HEARTBEAT_ACK seals to the documented bytes', () => {
    const server = new VoiceCipher(KEY, S2C);
    const out = plain();
    const a = server.open(unhex(AUDIO), out);
    expect(a).toEqual({
      ok: true,
      header: { type: 1, flags: 1, voiceId: 0xdead_beef, sequence: 1, timestamp: 960 },
      payloadLength: 3,
    });
    expect(hex(out.subarray(0, 3))).toBe('f8fffe');
    const hb = server.open(unhex(HEARTBEAT), out);
    expect(hb.ok && readTimeBody(out, hb.payloadLength)).toBe(12345.5);
    const ack = seal(
      server,
      { type: VoicePacketType.HEARTBEAT_ACK, voiceId: 0xdead_beef, sequence: 7, timestamp: 100 },
      encodeAckBody(ackFor(12345.5, server.replay)),
    );
    expect(hex(ack)).toBe(HEARTBEAT_ACK);
    const client = new VoiceCipher(KEY, C2S);
    const r = client.open(ack, out);
    expect(r.ok && readAckBody(out.subarray(0, r.payloadLength))).toEqual({
      sentAt: 12345.5,
      packetsReceived: 2,
      packetsLost: 0,
    });
  });

  it('a server STREAM seals to the documented bytes and opens to source then Opus', () => {
    const STREAM =
      '56010602deadbeef0000000800000780' +
      'a86cc08265ea7bb3a0b470d0aedd4e' +
      '6424df95682723747516b56957083d09';
    const server = new VoiceCipher(KEY, S2C);
    const payload = new Uint8Array(STREAM_SOURCE_BYTES + 3);
    writeStreamSource(payload, 0, 'u_Alice-Bob_12');
    payload.set(unhex('f8fffe'), STREAM_SOURCE_BYTES);
    const s = seal(
      server,
      {
        type: VoicePacketType.STREAM,
        flags: VoiceFlags.FEC,
        voiceId: 0xdead_beef,
        sequence: 8,
        timestamp: 1920,
      },
      payload,
    );
    expect(hex(s)).toBe(STREAM);
    const out = plain();
    const r = new VoiceCipher(KEY, C2S).open(unhex(STREAM), out);
    expect(r.ok && r.header).toEqual({
      type: 6,
      flags: 2,
      voiceId: 0xdead_beef,
      sequence: 8,
      timestamp: 1920,
    });
    expect(r.ok && readStreamSource(out.subarray(0, r.payloadLength))).toBe('u_Alice-Bob_12');
    expect(r.ok && hex(out.subarray(STREAM_SOURCE_BYTES, r.payloadLength))).toBe('f8fffe');
  });

  it('follows the documented nonce and AAD (decrypted with plain node:crypto)', () => {
    const packet = unhex(AUDIO);
    const nonce = Buffer.from([
      0 /* client->server */, 1 /* AUDIO */, 0, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 1,
    ]);
    const d = createDecipheriv('aes-256-gcm', KEY, nonce, { authTagLength: 16 });
    d.setAAD(packet.subarray(0, 16));
    d.setAuthTag(packet.subarray(packet.length - 16));
    const pt = Buffer.concat([d.update(packet.subarray(16, packet.length - 16)), d.final()]);
    expect(hex(pt)).toBe('f8fffe');
    const n = new Uint8Array(12);
    writeVoiceNonce(n, C2S, 1, 0xdead_beef, 1);
    expect(hex(n)).toBe(hex(nonce));
  });
});

describe('VoiceCipher', () => {
  it('seal/open round-trips arbitrary payloads and headers', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: MAX_PAYLOAD_BYTES }),
        fc.constantFrom(...(Object.values(VoicePacketType) as VoicePacketTypeT[])),
        fc.integer({ min: 0, max: 7 }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (payload, type, flags, voiceId, sequence, timestamp) => {
          const key = createVoiceKey();
          const { client, server } = pair(key);
          const h = { type, flags, voiceId, sequence, timestamp };
          const packet = seal(client, h, payload);
          expect(packet.length).toBe(32 + payload.length);
          const out = plain();
          expect(server.open(packet, out)).toEqual({ ok: true, header: h, payloadLength: payload.length });
          expect(out.subarray(0, payload.length)).toEqual(payload);
          // And the other way round.
          const back = seal(server, h, payload);
          expect(client.open(back, out)).toEqual({ ok: true, header: h, payloadLength: payload.length });
          expect(out.subarray(0, payload.length)).toEqual(payload);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('encrypts: the payload does not appear in the packet', () => {
    const payload = new Uint8Array(64).fill(0x41);
    const packet = seal(new VoiceCipher(KEY, C2S), {}, payload);
    expect(hex(packet)).not.toContain('41414141');
  });

  it('rejects a duplicate as REPLAY, and accepts reordering inside the window', () => {
    const { client, server } = pair();
    const packets = [0, 1, 2, 3].map(() => seal(client, {}, Uint8Array.of(1)));
    const out = plain();
    expect(server.open(packets[2]!, out).ok).toBe(true);
    expect(server.open(packets[0]!, out).ok).toBe(true);
    expect(server.open(packets[2]!, out)).toEqual({ ok: false, error: 'REPLAY' });
    expect(server.open(packets[3]!, out).ok).toBe(true);
    expect(server.open(packets[1]!, out).ok).toBe(true);
    expect(server.open(packets[1]!, out)).toEqual({ ok: false, error: 'REPLAY' });
    expect(server.replay.received).toBe(4);
  });

  it('a forged packet (auth failure) never moves the replay window', () => {
    const { client, server } = pair();
    const genuine = seal(client, { sequence: 5 }, Uint8Array.of(1, 2, 3));
    // A forgery with a far-ahead sequence, sealed with the wrong key.
    const forged = seal(new VoiceCipher(createVoiceKey(), C2S), { sequence: 1_000_000 }, Uint8Array.of(9));
    const out = plain();
    expect(server.open(forged, out)).toEqual({ ok: false, error: 'AUTH_FAILED' });
    expect(server.replay.highest).toBe(-1);
    expect(server.open(genuine, out).ok).toBe(true);
    // A tampered copy of an accepted packet with a new sequence is also rejected, not committed.
    const tampered = genuine.slice();
    tampered[11] = 0x99; // sequence low byte
    expect(server.open(tampered, out)).toEqual({ ok: false, error: 'AUTH_FAILED' });
    expect(server.replay.highest).toBe(5);
    expect(server.replay.received).toBe(1);
  });

  it('a packet reflected to its sender fails (direction is in the nonce)', () => {
    const { client } = pair();
    const other = new VoiceCipher(KEY, C2S);
    const packet = seal(client, {}, Uint8Array.of(1, 2, 3));
    expect(other.open(packet, plain())).toEqual({ ok: false, error: 'AUTH_FAILED' });
  });

  it('a wrong key fails', () => {
    const packet = seal(new VoiceCipher(KEY, C2S), {}, Uint8Array.of(1));
    expect(new VoiceCipher(createVoiceKey(), S2C).open(packet, plain())).toEqual({
      ok: false,
      error: 'AUTH_FAILED',
    });
  });

  it('every single bit flip fails: framing error or AUTH_FAILED', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        (payload, at, bit) => {
          const { client, server } = pair();
          const packet = seal(client, { timestamp: 123, flags: VoiceFlags.FEC }, payload);
          const i = at % packet.length;
          packet[i]! ^= 1 << bit;
          const r = server.open(packet, plain());
          expect(r.ok).toBe(false);
          if (r.ok) return;
          if (i === 0) expect(r.error).toBe('BAD_MAGIC');
          else if (i === 1) expect(r.error).toBe('BAD_VERSION');
          else if (i === 2) expect(['BAD_TYPE', 'AUTH_FAILED']).toContain(r.error);
          else expect(r.error).toBe('AUTH_FAILED');
          expect(server.replay.received).toBe(0);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('every truncation or extension of a valid packet fails without throwing', () => {
    const { client, server } = pair();
    const packet = seal(client, {}, new Uint8Array(100).fill(7));
    for (let n = 0; n < packet.length; n++) {
      const r = server.open(packet.subarray(0, n), plain());
      expect(r).toEqual({ ok: false, error: n < 32 ? 'TOO_SHORT' : 'AUTH_FAILED' });
    }
    expect(server.open(Uint8Array.from([...packet, 0]), plain())).toEqual({
      ok: false,
      error: 'AUTH_FAILED',
    });
    expect(server.open(packet, plain()).ok).toBe(true);
  });

  it('open never throws on arbitrary bytes, including ones that pass the framing checks', () => {
    const server = new VoiceCipher(KEY, S2C);
    const out = plain();
    const framed = fc
      .tuple(fc.integer({ min: 1, max: 5 }), fc.uint8Array({ minLength: 29, maxLength: 1029 }))
      .map(([type, rest]) => Uint8Array.from([0x56, 1, type, ...rest]));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 1100 }), framed), (bytes) => {
        const r = server.open(bytes, out);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(VOICE_OPEN_ERRORS).toContain(r.error);
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(framed, (bytes) => {
        expect(server.open(bytes, out)).toEqual({ ok: false, error: 'AUTH_FAILED' });
      }),
      { numRuns: 300 },
    );
    expect(server.replay.received).toBe(0);
  });

  it('openInto fills a caller-owned header and returns the payload length', () => {
    const { client, server } = pair();
    const packet = seal(
      client,
      { type: VoicePacketType.HELLO, voiceId: 77, timestamp: 5 },
      encodeTimeBody(1),
    );
    const h = createVoiceHeader();
    const out = plain();
    expect(server.openInto(packet, out, h)).toBe(TIME_BODY_BYTES);
    expect(h).toEqual({ type: VoicePacketType.HELLO, flags: 0, voiceId: 77, sequence: 0, timestamp: 5 });
    expect(server.openInto(packet, out, h)).toBe('REPLAY');
    expect(server.openInto(new Uint8Array(3), out, h)).toBe('TOO_SHORT');
  });

  it('refuses to seal a sequence twice (nonce reuse) and checks its arguments', () => {
    const c = new VoiceCipher(KEY, C2S);
    const out = new Uint8Array(MAX_PACKET_BYTES);
    const h: VoiceHeader = { type: 1, flags: 0, voiceId: 1, sequence: 10, timestamp: 0 };
    expect(c.nextSequence).toBe(0);
    c.seal(h, Uint8Array.of(1), out);
    expect(c.nextSequence).toBe(11);
    expect(() => c.seal(h, Uint8Array.of(1), out)).toThrow(TypeError);
    expect(() => c.seal({ ...h, sequence: 9 }, Uint8Array.of(1), out)).toThrow(TypeError);
    expect(() => c.seal({ ...h, sequence: 11 }, new Uint8Array(MAX_PAYLOAD_BYTES + 1), out)).toThrow(
      TypeError,
    );
    expect(() => c.seal({ ...h, sequence: 11 }, new Uint8Array(10), new Uint8Array(41))).toThrow(TypeError);
    expect(() => c.seal({ ...h, sequence: 11, flags: 0x10 }, Uint8Array.of(1), out)).toThrow(TypeError);
    expect(c.seal({ ...h, sequence: 11 }, new Uint8Array(10), new Uint8Array(42))).toBe(42);
    c.seal({ ...h, sequence: 0xffff_ffff }, Uint8Array.of(1), out);
    expect(() => c.seal({ ...h, sequence: 2 ** 32 }, Uint8Array.of(1), out)).toThrow(TypeError);
    expect(() => new VoiceCipher(new Uint8Array(16), C2S)).toThrow(TypeError);
    expect(() => new VoiceCipher(KEY, 2 as VoiceDirection)).toThrow(TypeError);
    expect(() => c.open(new Uint8Array(40), new Uint8Array(999))).toThrow(TypeError);
  });

  it('check() costs no cryptography and moves nothing; openChecked() then authenticates', () => {
    const { client, server } = pair();
    const p0 = seal(client, { sequence: 5 }, new Uint8Array([1, 2, 3]));
    const h = createVoiceHeader();
    const out = new Uint8Array(MAX_PAYLOAD_BYTES);
    // Framing and the window only: a forged packet with a fresh sequence passes check()...
    const forged = p0.slice();
    forged[forged.length - 1]! ^= 1;
    expect(server.check(forged, h)).toBeNull();
    expect(h.sequence).toBe(5);
    // ...and only openChecked() finds it out, without moving the window.
    expect(server.openChecked(forged, out, h)).toBe('AUTH_FAILED');
    expect(server.replay.received).toBe(0);
    expect(server.check(p0, h)).toBeNull();
    expect(server.openChecked(p0, out, h)).toBe(3);
    expect(out.subarray(0, 3)).toEqual(new Uint8Array([1, 2, 3]));
    // Now a replay and a truncation are refused by check() alone.
    expect(server.check(p0, h)).toBe('REPLAY');
    expect(server.check(p0.subarray(0, 10), h)).toBe('TOO_SHORT');
    expect(() => server.openChecked(p0, new Uint8Array(10), h)).toThrow(TypeError);
  });

  it('seals the first payloadLength bytes of a larger buffer as it seals a copy of them', () => {
    const big = Uint8Array.from({ length: 100 }, (_, i) => i);
    const h: VoiceHeader = { type: VoicePacketType.AUDIO, flags: 0, voiceId: 9, sequence: 0, timestamp: 0 };
    const a = new Uint8Array(MAX_PACKET_BYTES);
    const b = new Uint8Array(MAX_PACKET_BYTES);
    const na = pair().server.seal(h, big, a, 40);
    const nb = pair().server.seal(h, big.slice(0, 40), b);
    expect(na).toBe(nb);
    expect(a.subarray(0, na)).toEqual(b.subarray(0, nb));
    expect(() => pair().server.seal(h, big, a, 101)).toThrow(TypeError);
    expect(() => pair().server.seal(h, big, a, -1)).toThrow(TypeError);
  });

  it('accepts an empty payload', () => {
    const { client, server } = pair();
    const packet = seal(client, { flags: VoiceFlags.DTX }, new Uint8Array(0));
    expect(packet.length).toBe(32);
    expect(server.open(packet, plain())).toMatchObject({ ok: true, payloadLength: 0 });
  });
});

/** The spec's replay rule as a plain model: a set of everything seen and the maximum. */
class ReferenceWindow {
  seen = new Set<number>();
  max = -1;
  min = -1;
  accept(s: number): boolean {
    if (this.seen.has(s)) return false;
    if (this.max >= 0 && s <= this.max && this.max - s >= REPLAY_WINDOW_SIZE) return false;
    this.seen.add(s);
    this.max = Math.max(this.max, s);
    this.min = this.min < 0 ? s : Math.min(this.min, s);
    return true;
  }
}

describe('ReplayWindow', () => {
  it('matches the reference model under random sequences', () => {
    // Steps relative to the highest sequence seen: mostly near it, sometimes far behind or ahead.
    const step = fc.oneof(
      { weight: 5, arbitrary: fc.integer({ min: -40, max: 40 }) },
      { weight: 2, arbitrary: fc.integer({ min: -1100, max: -1000 }) },
      { weight: 1, arbitrary: fc.integer({ min: -3000, max: 3000 }) },
      { weight: 1, arbitrary: fc.integer({ min: 1000, max: 1100 }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), fc.array(step, { maxLength: 400 }), (start, steps) => {
        const w = new ReplayWindow();
        const ref = new ReferenceWindow();
        let cursor = start;
        for (const d of steps) {
          const s = Math.min(0xffff_ffff, Math.max(0, cursor + d));
          const expected = ref.accept(s);
          expect(w.check(s)).toBe(expected);
          expect(w.commit(s)).toBe(expected);
          expect(w.check(s)).toBe(false);
          cursor = Math.max(cursor, s);
        }
        expect(w.highest).toBe(ref.max);
        expect(w.received).toBe(ref.seen.size);
        expect(w.lost).toBe(ref.seen.size === 0 ? 0 : ref.max - ref.min + 1 - ref.seen.size);
      }),
      { numRuns: 300 },
    );
  });

  it('matches the reference model when sequences densely revisit a range a few windows wide', () => {
    // Dense traffic over ~3 windows makes every slot get reused, so stale bits would show.
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffff_ffff - 4000 }),
        fc.array(fc.integer({ min: 0, max: 3500 }), { minLength: 100, maxLength: 1500 }),
        (base, offsets) => {
          const w = new ReplayWindow();
          const ref = new ReferenceWindow();
          for (const o of offsets) expect(w.commit(base + o)).toBe(ref.accept(base + o));
          expect([w.highest, w.received]).toEqual([ref.max, ref.seen.size]);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('has exactly a 1024-wide window', () => {
    const w = new ReplayWindow();
    expect(w.commit(5000)).toBe(true);
    expect(w.check(5000 - 1023)).toBe(true);
    expect(w.check(5000 - 1024)).toBe(false);
    expect(w.commit(5001)).toBe(true);
    expect(w.check(5000 - 1023)).toBe(false);
    expect(w.check(5000 - 1022)).toBe(true);
  });

  it('clears slots when sliding so old bits do not shadow new sequences', () => {
    const w = new ReplayWindow();
    for (let s = 0; s < 1024; s++) expect(w.commit(s)).toBe(true);
    // 1024 + 5 lands on slot 5, which holds sequence 5.
    expect(w.commit(1024 + 40)).toBe(true);
    for (let s = 1024; s < 1024 + 40; s++) expect(w.check(s)).toBe(true);
    expect(w.lost).toBe(40);
    expect(w.commit(3000)).toBe(true);
    for (let s = 3000 - 1023; s < 3000; s++) expect(w.check(s)).toBe(true);
  });

  it('slides correctly by every distance from every bit alignment of a full window', () => {
    for (let align = 0; align < 32; align++) {
      for (const d of [...Array.from({ length: 70 }, (_, i) => i + 1), 1022, 1023, 1024, 1025, 5000]) {
        const w = new ReplayWindow();
        const top = 2048 + align;
        for (let s = top - 1023; s <= top; s++) w.commit(s);
        expect(w.commit(top + d)).toBe(true);
        for (let s = Math.max(0, top + d - 1100); s <= top + d; s++) {
          const expected = s > top + d - 1024 && s > top && s < top + d;
          if (w.check(s) !== expected)
            expect({ align, d, s, accepted: w.check(s) }).toEqual({ align, d, s, accepted: expected });
        }
      }
    }
  });

  it('works at the top of the uint32 range and rejects non-uint32', () => {
    const w = new ReplayWindow();
    expect(w.commit(0)).toBe(true);
    expect(w.commit(0xffff_ffff)).toBe(true);
    expect(w.commit(0xffff_ffff - 1023)).toBe(true);
    expect(w.commit(0xffff_ffff - 1024)).toBe(false);
    expect(w.commit(0)).toBe(false);
    expect(() => w.check(-1)).toThrow(TypeError);
    expect(() => w.check(2 ** 32)).toThrow(TypeError);
    expect(() => w.check(0.5)).toThrow(TypeError);
    w.reset();
    expect([w.highest, w.received, w.lost]).toEqual([-1, 0, 0]);
    expect(w.commit(0)).toBe(true);
  });
});

describe('control bodies', () => {
  it('time and ack bodies round-trip', () => {
    fc.assert(
      fc.property(
        fc.double({ noNaN: true }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        (t, rx, lost) => {
          expect(readTimeBody(encodeTimeBody(t))).toBe(t);
          const ack = { sentAt: t, packetsReceived: rx, packetsLost: lost };
          expect(readAckBody(encodeAckBody(ack))).toEqual(ack);
        },
      ),
    );
  });

  it('have the documented layout', () => {
    expect(hex(encodeTimeBody(1))).toBe('3ff0000000000000');
    expect(hex(encodeAckBody({ sentAt: 1, packetsReceived: 258, packetsLost: 3 }))).toBe(
      '3ff0000000000000' + '00000102' + '00000003',
    );
    expect([TIME_BODY_BYTES, ACK_BODY_BYTES]).toEqual([8, 16]);
  });

  it('reject short bodies, ignore trailing bytes, check arguments', () => {
    expect(readTimeBody(new Uint8Array(7))).toBe(null);
    expect(readTimeBody(new Uint8Array(16), 7)).toBe(null);
    expect(readAckBody(new Uint8Array(15))).toBe(null);
    expect(readTimeBody(Uint8Array.from([...encodeTimeBody(2), 9, 9]))).toBe(2);
    expect(() => encodeAckBody({ sentAt: 0, packetsReceived: -1, packetsLost: 0 })).toThrow(TypeError);
    expect(() => encodeAckBody({ sentAt: 0, packetsReceived: 0, packetsLost: 2 ** 32 })).toThrow(TypeError);
  });

  it('ackFor reports the replay window counters', () => {
    const w = new ReplayWindow();
    for (const s of [0, 1, 2, 5, 6, 9]) w.commit(s);
    expect(ackFor(77, w)).toEqual({ sentAt: 77, packetsReceived: 6, packetsLost: 4 });
  });
});
