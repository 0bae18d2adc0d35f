import { beforeAll, describe, expect, it } from 'vitest';
import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  STREAM_SOURCE_BYTES,
  VoiceCipher,
  VoiceDirection,
  VoiceFlags,
  VoicePacketType,
  createVoiceHeader,
  writeStreamSource,
} from '@voice/protocol';
import { createOpus, opusPacketHasLbrr, sineInt16, type OpusFactory } from '@voice/media';
import { Playout, SOURCE_FREE_AFTER_MS, type PlayoutOptions } from '../src/index.js';
import { leastYoungBytes } from '../../test-support/heap.js';
import { findFrame, level, minus, nonZero } from '../../test-support/pcm-match.js';

/**
 * The client's playout of several speakers' STREAM packets (protocol README 8.8), no server: packets
 * are encoded here with real Opus, sealed with VoiceCipher in the server's direction and opened as
 * the session opens them, then fed to a Playout on a virtual clock (one frame per 20 ms tick), so
 * every run plays the same samples. What is played is compared with local decodes of the packets.
 */

const FRAME = 960;
const TICK_MS = 20;
const KEY = new Uint8Array(32).fill(7);
const ALICE = 'u_Alice-Bob_12';
const BOB = 'u_Bob-Carol_34';
const CAROL = 'u_Carol-Dave56';
const DAVE = 'u_Dave-Erin_78';

let opus: OpusFactory;
beforeAll(async () => {
  opus = await createOpus();
});

/** `frames` Opus packets of a tone at `dbfs` (peak), as a speaker's client would send them. */
function encodeTone(hz: number, dbfs: number, frames: number, fec = false): Uint8Array[] {
  // With FEC, the 'voice' hint keeps libopus in SILK/hybrid, the modes that carry LBRR data.
  const enc = opus.createEncoder({
    frameSamples: FRAME,
    bitrate: fec ? 32_000 : 48_000,
    fec,
    ...(fec ? { packetLossPercent: 10, signal: 'voice' as const } : {}),
  });
  const pcm = sineInt16(frames * FRAME, hz, dbfs);
  // SILK's voice activity detector takes a steady tone for noise and stops sending LBRR for it:
  // with FEC the tone swells and fades 3 times a second, as syllables do.
  if (fec)
    for (let i = 0; i < pcm.length; i++)
      pcm[i] = Math.round(pcm[i]! * (0.7 + 0.3 * Math.sin((2 * Math.PI * 3 * i) / 48_000)));
  const buf = new Uint8Array(1500);
  const out: Uint8Array[] = [];
  for (let f = 0; f < frames; f++) {
    const n = enc.encode(pcm.subarray(f * FRAME, (f + 1) * FRAME), buf);
    out.push(buf.slice(0, n));
  }
  enc.destroy();
  return out;
}

/**
 * What a FramePlayout makes of `packets` with the frames in `lost` missing: decoded, and a lost one
 * rebuilt from the next packet's FEC when the decoder can and the packet carries it, else concealed.
 */
function localDecode(packets: Uint8Array[], lost: ReadonlySet<number> = new Set()): Int16Array {
  const dec = opus.createDecoder({ frameSamples: FRAME });
  const out = new Int16Array(packets.length * FRAME);
  for (let f = 0; f < packets.length; f++) {
    const at = out.subarray(f * FRAME, (f + 1) * FRAME);
    const next = packets[f + 1];
    if (!lost.has(f)) dec.decode(packets[f]!, at);
    else if (dec.supportsFec && next && opusPacketHasLbrr(next)) dec.decodeFec(next, at);
    else dec.conceal(at);
  }
  dec.destroy();
  return out;
}

/** The server's side of one session: seals STREAM and AUDIO packets as the server does. */
class FakeServer {
  private readonly server = new VoiceCipher(KEY, VoiceDirection.SERVER_TO_CLIENT);
  private readonly client = new VoiceCipher(KEY, VoiceDirection.CLIENT_TO_SERVER);
  private readonly sealed = new Uint8Array(MAX_PACKET_BYTES);
  private readonly payload = new Uint8Array(MAX_PAYLOAD_BYTES);
  private readonly h = createVoiceHeader();
  private readonly rh = createVoiceHeader();
  /** Where the client's session opens packets (as VoiceSession.receive). */
  readonly plain = new Uint8Array(MAX_PAYLOAD_BYTES);

  /** A STREAM packet of `source`, sealed and opened again: returns the opened payload length. */
  stream(source: string, timestamp: number, opusPacket: Uint8Array, flags = 0): number {
    writeStreamSource(this.payload, 0, source);
    this.payload.set(opusPacket, STREAM_SOURCE_BYTES);
    return this.roundTrip(VoicePacketType.STREAM, timestamp, STREAM_SOURCE_BYTES + opusPacket.length, flags);
  }

  /** An AUDIO packet (the server's mix), sealed and opened again. */
  audio(timestamp: number, opusPacket: Uint8Array): number {
    this.payload.set(opusPacket, 0);
    return this.roundTrip(VoicePacketType.AUDIO, timestamp, opusPacket.length, 0);
  }

  private roundTrip(type: VoicePacketType, timestamp: number, length: number, flags: number): number {
    const h = this.h;
    h.type = type;
    h.flags = flags;
    h.voiceId = 0xdeadbeef;
    h.sequence = this.server.nextSequence;
    h.timestamp = timestamp >>> 0;
    const n = this.server.seal(h, this.payload.subarray(0, length), this.sealed);
    const r = this.client.openInto(this.sealed.subarray(0, n), this.plain, this.rh);
    if (typeof r !== 'number' || this.rh.type !== type) throw new Error(`open failed: ${String(r)}`);
    return r;
  }
}

/**
 * A Playout on a virtual clock: `send` feeds what arrives now, `play()` plays one pull (a frame, or
 * `pullSamples`) and moves the clock on by as much.
 */
class Rig {
  readonly playout: Playout;
  readonly server = new FakeServer();
  private now = 1000;
  private readonly out: Int16Array;
  private readonly chunks: Int16Array[] = [];

  constructor(
    sources: number,
    extra: Partial<PlayoutOptions> = {},
    factory: OpusFactory = opus,
    pullSamples = FRAME,
  ) {
    this.out = new Int16Array(pullSamples);
    this.playout = new Playout({
      frameMs: 20,
      opus: factory,
      recording: null,
      clock: 'pull',
      sources,
      now: () => this.now,
      ...extra,
    });
  }

  send(source: string, timestamp: number, packet: Uint8Array, flags = 0): number {
    const len = this.server.stream(source, timestamp, packet, flags);
    return this.playout.insertStream(this.server.plain, len, timestamp >>> 0, flags, this.now);
  }

  sendMix(timestamp: number, packet: Uint8Array): void {
    const len = this.server.audio(timestamp, packet);
    this.playout.insert(timestamp >>> 0, this.server.plain, len, this.now);
  }

  play(): void {
    this.playout.pull(this.out, this.now);
    this.chunks.push(this.out.slice());
    this.now += this.out.length / 48;
  }

  recording(): Int16Array {
    const r = new Int16Array(this.chunks.length * this.out.length);
    this.chunks.forEach((c, i) => r.set(c, i * this.out.length));
    return r;
  }
}

/** `a` plus `b`, sample by sample, clamped to int16 (what a lone loud source plus a quiet one sum to). */
function sumClamped(a: Int16Array, b: Int16Array): Int16Array {
  const out = new Int16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.max(-32768, Math.min(32767, a[i]! + (b[i] ?? 0)));
  return out;
}

describe('Playout of STREAM sources (virtual clock, real Opus)', () => {
  it('plays two sources and the mix as the sample-exact sum of their local decodes, each tone at level', () => {
    const a = encodeTone(440, -20, 70);
    const b = encodeTone(660, -20, 60);
    const m = encodeTone(1000, -20, 50);
    const rig = new Rig(4);
    // Each source on its own clock: Alice's starts high and wraps past 2^32 on the way.
    const aTs = 0x1_0000_0000 - 20 * FRAME;
    const bTs = 123 * FRAME + 17;
    for (let k = 0; k < 90; k++) {
      if (k < 70) rig.send(ALICE, aTs + k * FRAME, a[k]!, k === 0 ? VoiceFlags.MARKER : 0);
      if (k >= 10 && k < 70) rig.send(BOB, bTs + (k - 10) * FRAME, b[k - 10]!);
      if (k >= 20 && k < 70) rig.sendMix((k - 20) * FRAME, m[k - 20]!);
      rig.play();
    }
    const rec = rig.recording();
    const da = localDecode(a);
    const db = localDecode(b);
    const dm = localDecode(m);
    // Alice plays alone first, then Bob joins her, then the mix: each found where it starts.
    const oa = findFrame(rec, da, 0, 10 * FRAME);
    expect(oa, 'Alice heard sample for sample').toBeGreaterThanOrEqual(0);
    const ra = minus(rec, da, oa);
    const ob = findFrame(ra, db, oa, oa + 20 * FRAME);
    expect(ob, 'Bob heard sample for sample').toBeGreaterThanOrEqual(0);
    const rab = minus(ra, db, ob);
    const om = findFrame(rab, dm, ob, ob + 20 * FRAME);
    expect(om, 'the mix heard sample for sample').toBeGreaterThanOrEqual(0);
    const rest = minus(rab, dm, om);
    // Everything up to the end of the shortest decode is the exact sum (under -6 dBFS the limiter
    // passes sums bit-exact): not one sample differs.
    const end = Math.min(oa + da.length, ob + db.length, om + dm.length);
    expect(end - om).toBeGreaterThan(40 * FRAME);
    expect(nonZero(rest, 0, end)).toBe(0);
    // And each tone at the level it was sent at (Opus keeps a tone within a dB).
    for (const [hz, from] of [
      [440, om],
      [660, om],
      [1000, om],
    ] as const) {
      expect(level(rec, hz, from, end), `${hz} Hz`).toBeGreaterThan(-21.5);
      expect(level(rec, hz, from, end), `${hz} Hz`).toBeLessThan(-18.5);
    }
    const st = rig.playout.sourceStats()!;
    expect(st.active).toBe(2);
    expect(st.sources.map((s) => [s.source, s.framesPlayed, s.late, s.framesConcealed]).sort()).toEqual([
      [ALICE, 70, 0, 2],
      [BOB, 60, 0, 2],
    ]);
    // Totals count the mix and both sources.
    const p = rig.playout.stats();
    expect(p.accepted).toBe(70 + 60 + 50);
    expect(p.framesPlayed).toBe(70 + 60 + 50);
    rig.playout.close();
  });

  it('plays a loud speaker beside a member sending digital silence exactly as alone (no limiter)', () => {
    // A -1 dBFS tone: through the limiter (knee -6 dBFS) its peaks would be compressed. Beside it a
    // member whose client sends encoded digital silence, which decodes to a few LSB, not zeros.
    const a = encodeTone(440, -1, 40);
    const enc = opus.createEncoder({ frameSamples: FRAME, bitrate: 48_000 });
    const buf = new Uint8Array(1500);
    const silence: Uint8Array[] = [];
    for (let f = 0; f < 40; f++) silence.push(buf.slice(0, enc.encode(new Int16Array(FRAME), buf)));
    enc.destroy();
    const rig = new Rig(4);
    for (let k = 0; k < 50; k++) {
      if (k < 40) {
        rig.send(ALICE, k * FRAME, a[k]!, k === 0 ? VoiceFlags.MARKER : 0);
        rig.send(BOB, 5000 * FRAME + k * FRAME, silence[k]!, k === 0 ? VoiceFlags.MARKER : 0);
      }
      rig.play();
    }
    const rec = rig.recording();
    const da = localDecode(a);
    const ds = localDecode(silence);
    expect(Math.max(...ds.map(Math.abs)), 'digital silence decodes to a few LSB').toBeLessThan(32);
    const oa = findFrame(rec, sumClamped(da, ds), 0, 10 * FRAME);
    expect(oa, 'the exact sum of both decodes, unlimited').toBeGreaterThanOrEqual(0);
    const rest = minus(minus(rec, da, oa), ds, oa);
    expect(nonZero(rest, oa, oa + 38 * FRAME)).toBe(0);
    rig.playout.close();
  });

  it('starts each source at its own phase: packets half a frame apart wait alike, on 10 ms pulls', () => {
    const a = encodeTone(440, -20, 40);
    const b = encodeTone(660, -20, 40);
    const rig = new Rig(4, {}, opus, FRAME / 2);
    // Alice's packets arrive on the 20 ms grid, Bob's 10 ms later: a sound card pulls every 10 ms.
    for (let j = 0; j < 100; j++) {
      const k = j >> 1;
      if (k < 40) rig.send(j % 2 === 0 ? ALICE : BOB, k * FRAME, (j % 2 === 0 ? a : b)[k]!);
      rig.play();
    }
    const rec = rig.recording();
    const da = localDecode(a);
    const db = localDecode(b);
    // Their first frames overlap: found together. Sources start on a pull (480 samples here).
    const at = (d: Int16Array, o: number, k: number): number => (k >= o && k - o < d.length ? d[k - o]! : 0);
    let oa = -1;
    let ob = -1;
    for (let x = 0; x < 20 * FRAME && oa < 0; x += FRAME / 2) {
      for (let y = 0; y < 20 * FRAME && oa < 0; y += FRAME / 2) {
        let k = 0;
        while (k < Math.max(x, y) + 2 * FRAME && rec[k] === at(da, x, k) + at(db, y, k)) k++;
        if (k === Math.max(x, y) + 2 * FRAME) [oa, ob] = [x, y];
      }
    }
    expect(oa, 'Alice and Bob found sample for sample').toBeGreaterThanOrEqual(0);
    expect(nonZero(minus(minus(rec, da, oa), db, ob), 0, Math.min(oa + da.length, ob + db.length))).toBe(0);
    // From its first packet's arrival (Alice at 0 ms, Bob at 10 ms of the recording) to its first
    // sample played: the same wait for both, not a frame boundary shared with the other.
    const waitA = oa / 48;
    const waitB = ob / 48 - 10;
    expect(waitB).toBe(waitA);
    expect(waitA).toBeLessThanOrEqual(30);
    rig.playout.close();
  });

  it('rebuilds a lost frame of one source from its FEC (or conceals it) in that source only', () => {
    const a = encodeTone(440, -20, 60, true);
    const b = encodeTone(660, -20, 60, true);
    const rig = new Rig(4);
    // A frame whose successor carries LBRR data (libopus puts it in some packets of a steady tone).
    const LOST = a.findIndex((_, f) => f >= 25 && f < 45 && opusPacketHasLbrr(a[f + 1]!));
    expect(LOST).toBeGreaterThan(0);
    for (let k = 0; k < 60; k++) {
      if (k !== LOST) rig.send(ALICE, k * FRAME, a[k]!);
      rig.send(BOB, 5000 * FRAME + k * FRAME, b[k]!);
      rig.play();
    }
    const rec = rig.recording();
    const db = localDecode(b);
    const da = localDecode(a, new Set([LOST]));
    // Before the loss the sum is exact; Bob stays exact to the end: what is left after taking him
    // out holds none of his tone, while Alice's is there at level after the loss.
    const first = findFrame(rec, db, 0, 10 * FRAME);
    expect(first, 'both start at the same tick: not found alone').toBe(-1);
    let ob = -1;
    let oA = -1;
    for (let o = 0; o < 10 * FRAME && ob < 0; o += FRAME) {
      const r = minus(rec, db, o);
      const x = findFrame(r, da, 0, 10 * FRAME);
      if (x >= 0) {
        ob = o;
        oA = x;
      }
    }
    expect(ob, 'Alice and Bob found sample for sample').toBeGreaterThanOrEqual(0);
    const withoutBob = minus(rec, db, ob);
    const lossAt = oA + LOST * FRAME;
    expect(nonZero(minus(withoutBob, da, oA), 0, lossAt)).toBe(0);
    const end = ob + db.length;
    expect(level(withoutBob, 660, ob, end), "Bob's tone all gone: he was played unchanged").toBeLessThan(-60);
    expect(level(rec, 440, lossAt + FRAME, end), "Alice's tone plays on").toBeGreaterThan(-25);
    const st = rig.playout.sourceStats()!;
    const alice = st.sources.find((s) => s.source === ALICE)!;
    const bob = st.sources.find((s) => s.source === BOB)!;
    if (opus.createDecoder().supportsFec) expect(alice.fecRecovered).toBe(1);
    else expect(alice.framesConcealed).toBeGreaterThanOrEqual(1);
    expect(bob.framesConcealed, 'Bob lost nothing').toBe(0);
    expect(bob.fecRecovered).toBe(0);
    expect(rig.playout.stats().fecRecovered).toBe(alice.fecRecovered);
    rig.playout.close();
  });

  it.each([
    ['back 600 ms with MARKER (the speaker rebound)', -30 * FRAME, VoiceFlags.MARKER],
    ['ahead 3 s without MARKER', 150 * FRAME, 0],
  ])('restarts a source whose timestamps jump %s: it plays on as after a pause', (_, jump, flags) => {
    const a = encodeTone(440, -20, 80);
    const rig = new Rig(4);
    for (let k = 0; k < 80; k++) {
      const ts = 7_000_000 + k * FRAME + (k >= 40 ? jump : 0);
      expect(rig.send(ALICE, ts, a[k]!, k === 40 ? flags : 0)).toBe(0); // ACCEPTED
      rig.play();
    }
    const st = rig.playout.sourceStats()!;
    expect(st.sources).toHaveLength(1);
    const alice = st.sources[0]!;
    expect({ restarts: alice.restarts, late: alice.late, concealed: alice.framesConcealed }).toEqual({
      restarts: 1,
      late: 0,
      concealed: 0,
    });
    // Every frame played in order, the new timeline right after the old one: the whole run is the
    // local decode (no gap, no frame dropped as late or held back for 3 s).
    expect(alice.framesPlayed).toBe(79);
    const rec = rig.recording();
    const da = localDecode(a);
    const oa = findFrame(rec, da, 0, 5 * FRAME);
    expect(oa).toBeGreaterThanOrEqual(0);
    expect(nonZero(minus(rec, da, oa), oa, rec.length)).toBe(0);
    rig.playout.close();
  });

  it('plays at most `sources` speakers: a new one waits for an idle playout, and takes the stalest', () => {
    const a = encodeTone(440, -20, 100);
    const b = encodeTone(660, -20, 100);
    const c = encodeTone(880, -20, 100);
    const rig = new Rig(2);
    let dropped = 0;
    for (let k = 0; k < 100; k++) {
      if (k < 40) rig.send(ALICE, k * FRAME, a[k]!);
      rig.send(BOB, k * FRAME, b[k]!);
      if (k >= 20 && rig.send(CAROL, k * FRAME, c[k]!) === -1) dropped++;
      rig.play();
    }
    const st = rig.playout.sourceStats()!;
    // Carol's packets were refused while Alice played (her last frame, then two concealed), then
    // Carol took Alice's playout.
    expect(dropped).toBeGreaterThanOrEqual(20);
    expect(dropped).toBeLessThanOrEqual(25);
    expect({ dropped: st.dropped, replaced: st.replaced, active: st.active }).toEqual({
      dropped,
      replaced: 1,
      active: 2,
    });
    expect(st.sources.map((s) => s.source).sort()).toEqual([BOB, CAROL]);
    const rec = rig.recording();
    const tail = rec.length - 40 * FRAME;
    expect(level(rec, 880, tail, rec.length), 'Carol heard once she has a playout').toBeGreaterThan(-21.5);
    expect(level(rec, 660, tail, rec.length)).toBeGreaterThan(-21.5);
    expect(level(rec, 440, tail, rec.length), 'Alice gone').toBeLessThan(-60);
    expect(level(rec, 880, 25 * FRAME, 35 * FRAME), 'Carol not heard while both were busy').toBeLessThan(-60);
    rig.playout.close();
  });

  it('frees a source 2 s after its last packet and reuses its decoder for the next source', () => {
    let decoders = 0;
    // The real factory, counting the decoders it makes.
    const counting: OpusFactory = {
      backend: opus.backend,
      description: opus.description,
      createEncoder: (o) => opus.createEncoder(o),
      createDecoder: (o) => {
        decoders++;
        return opus.createDecoder(o);
      },
    };
    const a = encodeTone(440, -20, 30);
    const rig = new Rig(4, {}, counting);
    const mixDecoders = decoders;
    for (let k = 0; k < 30; k++) {
      rig.send(ALICE, k * FRAME, a[k]!);
      rig.send(BOB, k * FRAME, a[k]!);
      rig.play();
    }
    expect(decoders - mixDecoders).toBe(2);
    const idleTicks = Math.ceil(SOURCE_FREE_AFTER_MS / TICK_MS);
    for (let k = 0; k < idleTicks - 5; k++) rig.play();
    expect(rig.playout.sourceStats()!.active, 'kept until 2 s after the last packet').toBe(2);
    for (let k = 0; k < 10; k++) rig.play();
    const st = rig.playout.sourceStats()!;
    expect({ active: st.active, freed: st.freed }).toEqual({ active: 0, freed: 2 });
    // Two new speakers take the freed playouts: no new decoder.
    for (let k = 0; k < 30; k++) {
      rig.send(CAROL, k * FRAME, a[k]!);
      rig.send(DAVE, k * FRAME, a[k]!);
      rig.play();
    }
    expect(decoders - mixDecoders).toBe(2);
    const again = rig.playout.sourceStats()!;
    expect(again.sources.map((s) => [s.source, s.framesPlayed]).sort()).toEqual([
      [CAROL, 29],
      [DAVE, 29],
    ]);
    // Totals keep the freed sources' frames.
    expect(rig.playout.stats().framesPlayed).toBe(2 * 30 + 2 * 29);
    rig.playout.close();
  });

  it('refuses STREAM without streams granted, and bad sources, without crashing', () => {
    const a = encodeTone(440, -20, 2);
    const none = new Rig(1);
    expect(none.playout.sources).toBeNull();
    expect(none.send(ALICE, 0, a[0]!)).toBe(-1);
    expect(none.playout.stats().invalid).toBe(1);
    const rig = new Rig(2);
    const bad = new Uint8Array(20).fill(0x20); // spaces: not base64url
    expect(rig.playout.insertStream(bad, 20, 0, 0, 0)).toBe(-1);
    expect(rig.playout.insertStream(bad, STREAM_SOURCE_BYTES, 0, 0, 0)).toBe(-1); // no Opus
    expect(rig.playout.insertStream(bad, 999, 0, 0, 0)).toBe(-1); // longer than the buffer
    expect(rig.playout.sourceStats()!.invalid).toBe(3);
    expect(rig.playout.sourceStats()!.active).toBe(0);
    none.playout.close();
    rig.playout.close();
  });

  it('allocates nothing per packet: two sources and the mix, 2,000 frames', () => {
    expect(opus.backend, 'the libopus addon decodes without allocating').toBe('libopus');
    const a = encodeTone(440, -20, 50);
    // Opened payloads as VoiceSession.receive hands them over (the client's cipher is node:crypto,
    // which allocates per packet on its own: not measured here).
    const alice: Uint8Array[] = [];
    const bob: Uint8Array[] = [];
    for (const [list, src] of [
      [alice, ALICE],
      [bob, BOB],
    ] as const) {
      for (const op of a) {
        const p = new Uint8Array(STREAM_SOURCE_BYTES + op.length);
        writeStreamSource(p, 0, src);
        p.set(op, STREAM_SOURCE_BYTES);
        list.push(p);
      }
    }
    const out = new Int16Array(FRAME);
    let k = 0;
    let now = 1000;
    const playout = new Playout({
      frameMs: 20,
      opus,
      recording: null,
      clock: 'pull',
      sources: 4,
      now: () => now,
    });
    const run = (n: number): void => {
      for (const end = k + n; k < end; k++) {
        const f = k % a.length;
        playout.insertStream(alice[f]!, alice[f]!.length, k * FRAME, 0, now);
        playout.insertStream(bob[f]!, bob[f]!.length, k * FRAME, 0, now);
        playout.insert(k * FRAME, a[f]!, a[f]!.length, now);
        playout.pull(out, now);
        now += TICK_MS;
      }
    };
    run(6000); // warm up: optimised code, every playout and decoder made
    // 2,000 frames of three streams left at most a few kilobytes of young objects in the least of
    // three rounds: nothing per packet (one 16-byte object per packet would be 96 KB).
    const bytes = leastYoungBytes(() => run(2000), 3, 16 * 1024);
    expect(bytes).toBeLessThan(16 * 1024);
    expect(playout.sourceStats()!.sources.map((s) => s.framesPlayed)).toEqual([k - 1, k - 1]);
    playout.close();
  });

  it('allocates nothing per packet with RED: copies of lost frames split into two sources and the mix', () => {
    expect(opus.backend, 'the libopus addon decodes without allocating').toBe('libopus');
    const a = encodeTone(440, -20, 50);
    // Frame f's RED block: [length][frame f - 1][frame f] (README 9.1), as VoiceSession hands it over.
    const block = (f: number): Uint8Array => {
      const prev = a[(f + a.length - 1) % a.length]!;
      const cur = a[f]!;
      const b = new Uint8Array(2 + prev.length + cur.length);
      b[0] = prev.length >> 8;
      b[1] = prev.length & 0xff;
      b.set(prev, 2);
      b.set(cur, 2 + prev.length);
      return b;
    };
    const audio = a.map((_, f) => block(f));
    const streams = [ALICE, BOB].map((src) =>
      audio.map((b) => {
        const p = new Uint8Array(STREAM_SOURCE_BYTES + b.length);
        writeStreamSource(p, 0, src);
        p.set(b, STREAM_SOURCE_BYTES);
        return p;
      }),
    );
    const out = new Int16Array(FRAME);
    let k = 0;
    let now = 1000;
    const playout = new Playout({
      frameMs: 20,
      opus,
      recording: null,
      clock: 'pull',
      sources: 4,
      red: true,
      // Two frames deep, fixed: a lost frame's copy, one packet later, is here before its turn. (An
      // adaptive target's percentile returns a fractional double, boxed now and then, with or without
      // RED: V8's sampling heap profiler finds nothing else, and nothing in the RED path.)
      jitter: { minTargetFrames: 2, adaptive: false, catchUpMs: 0 },
      now: () => now,
    });
    const run = (n: number): void => {
      for (const end = k + n; k < end; k++) {
        const f = k % a.length;
        // Every 7th packet of each stream is lost; the next one carries it.
        if (k % 7 !== 3) {
          for (const list of streams)
            playout.insertStream(list[f]!, list[f]!.length, k * FRAME, VoiceFlags.RED, now);
          playout.insert(k * FRAME, audio[f]!, audio[f]!.length, now, VoiceFlags.RED);
        }
        playout.pull(out, now);
        now += TICK_MS;
      }
    };
    run(6000);
    const rec0 = playout.stats().redRecovered;
    const k0 = k;
    const bytes = leastYoungBytes(() => run(2000), 3, 16 * 1024);
    expect(bytes).toBeLessThan(16 * 1024);
    const s = playout.stats();
    // Every lost packet of the three streams was played from its copy: none concealed.
    const played = k - k0;
    expect(s.redRecovered - rec0).toBeGreaterThanOrEqual(3 * Math.floor(played / 7));
    expect(s.redRecovered - rec0).toBeLessThanOrEqual(3 * Math.ceil(played / 7));
    expect(s.redMalformed).toBe(0);
    playout.close();
  });
});
