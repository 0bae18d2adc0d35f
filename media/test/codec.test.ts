import OpusScript from 'opusscript';
import { describe, expect, it } from 'vitest';
import {
  createOpus,
  type DiscordOpusHandle,
  type DiscordOpusModule,
  loadDiscordOpus,
  MediaError,
  opusPacketSamples,
  OpusCodecError,
  OpusscriptFactory,
  rms,
  sineInt16,
  snrDb,
  toneDbfs,
  writeConcealmentPacket,
} from '../src/index.js';

const factory = new OpusscriptFactory();

/** Encodes `pcm` frame by frame; returns the packets. */
function encodeAll(pcm: Int16Array, frameSamples: number, f = factory): Uint8Array[] {
  const enc = f.createEncoder({ frameSamples });
  const out = new Uint8Array(1500);
  const packets: Uint8Array[] = [];
  for (let off = 0; off + frameSamples <= pcm.length; off += frameSamples) {
    const len = enc.encode(pcm.subarray(off, off + frameSamples), out);
    packets.push(out.slice(0, len));
  }
  enc.destroy();
  return packets;
}

describe('opus backends', () => {
  it('falls back to opusscript when the native binding cannot be loaded', async () => {
    expect(await loadDiscordOpus('no-such-package-xyz')).toBeNull();
    const opus = await createOpus({ loadNative: () => Promise.resolve(null), loadAddon: () => null });
    expect(opus.backend).toBe('opusscript');
    expect(opus.createEncoder().backend).toBe('opusscript');
    await expect(
      createOpus({ backend: 'native', loadNative: () => Promise.resolve(null) }),
    ).rejects.toBeInstanceOf(MediaError);
  });

  it('prefers the native binding, which the test environment builds, over opusscript', async () => {
    // @discordjs/opus is optional for a user (opusscript is the fallback, tested above), but not
    // here: npm ci builds it (package.json allowScripts; .ci/run installs make and g++), so its
    // absence is a broken environment and must fail rather than skip the round trip below.
    const native = await loadDiscordOpus();
    expect(native, '@discordjs/opus did not load: rebuild it (npm rebuild @discordjs/opus)').not.toBeNull();
    const opus = await createOpus({ loadAddon: () => null });
    expect(opus.backend).toBe('native');
    const input = sineInt16(48_000, 440, -12);
    const enc = opus.createEncoder({ frameSamples: 960 });
    const dec = opus.createDecoder({ frameSamples: 960 });
    const out = new Int16Array(input.length);
    const pkt = new Uint8Array(1000);
    for (let i = 0; i < 50; i++) {
      const n = enc.encode(input.subarray(i * 960, (i + 1) * 960), pkt);
      expect(dec.decode(pkt.subarray(0, n), out.subarray(i * 960, (i + 1) * 960))).toBe(960);
    }
    expect(Math.abs(toneDbfs(out.subarray(9600), 440) - -12)).toBeLessThan(3);
    expect(dec.conceal(out.subarray(0, 960))).toBe(960);
  });

  for (const frameSamples of [960, 480]) {
    it(`round-trips a 440 Hz tone within 3 dB (${frameSamples / 48} ms frames)`, () => {
      const input = sineInt16(48_000, 440, -12);
      const packets = encodeAll(input, frameSamples);
      expect(packets.length).toBe(48_000 / frameSamples);
      const dec = factory.createDecoder({ frameSamples });
      const output = new Int16Array(input.length);
      const frame = new Int16Array(frameSamples);
      packets.forEach((p, i) => {
        expect(dec.decode(p, frame)).toBe(frameSamples);
        output.set(frame, i * frameSamples);
      });
      // Skip the first 100 ms (encoder start-up and the 6.5 ms look-ahead).
      const inLevel = toneDbfs(input, 440, 48_000, 4800, 38_400);
      const outLevel = toneDbfs(output, 440, 48_000, 4800, 38_400);
      expect(inLevel).toBeCloseTo(-12, 1);
      expect(Math.abs(outLevel - inLevel)).toBeLessThan(3);
      // And the tone is the signal: an octave away there is (almost) nothing.
      expect(toneDbfs(output, 880, 48_000, 4800, 38_400)).toBeLessThan(outLevel - 30);
      dec.destroy();
    });
  }

  it('applies and reports encoder settings', () => {
    const enc = factory.createEncoder({ bitrate: 24_000 });
    expect(enc.getBitrate()).toBe(24_000);
    enc.setBitrate(40_000);
    expect(enc.getBitrate()).toBe(40_000);
    expect(enc.lookaheadSamples()).toBe(312); // 6.5 ms
    expect(() => enc.setBitrate(10)).toThrow(RangeError);
    expect(() => enc.setComplexity(11)).toThrow(RangeError);
    expect(() => enc.setPacketLossPercent(-1)).toThrow(RangeError);
    enc.setFec(false);
    enc.setDtx(true);
    expect(() => enc.encode(new Int16Array(100), new Uint8Array(1500))).toThrow(TypeError);
    expect(() => enc.encode(new Int16Array(960), new Uint8Array(0))).toThrow(OpusCodecError);
    enc.destroy();
    enc.destroy();
    expect(() => enc.encode(new Int16Array(960), new Uint8Array(1500))).toThrow(/destroyed/);
  });

  it('rejects malformed packets and packets longer than the output', () => {
    const dec = factory.createDecoder();
    const out = new Int16Array(960);
    expect(() => dec.decode(Uint8Array.of(0xf8 | 3), out)).toThrow(OpusCodecError); // code 3 without count
    // A 60 ms SILK packet does not fit a 20 ms output buffer.
    const long = encodeAll(sineInt16(2880, 300, -20), 2880)[0]!;
    expect(opusPacketSamples(long)).toBe(2880);
    try {
      dec.decode(long, out);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(OpusCodecError);
      expect((err as OpusCodecError).code).toBe('BUFFER_TOO_SMALL');
    }
    expect(dec.decode(long, new Int16Array(2880))).toBe(2880);
    dec.destroy();
  });

  it('keeps working after the WASM heap grows (opusscript instances would break)', () => {
    const first = factory.createEncoder();
    const firstDec = factory.createDecoder();
    const heapBefore = factory.module.HEAPU8.length;
    const many = Array.from({ length: 400 }, () => factory.createDecoder());
    expect(factory.module.HEAPU8.length).toBeGreaterThan(heapBefore);
    const out = new Uint8Array(1500);
    const len = first.encode(sineInt16(960, 440, -12), out);
    expect(firstDec.decode(out.subarray(0, len), new Int16Array(960))).toBe(960);
    for (const d of many) d.destroy();
    first.destroy();
    firstDec.destroy();
  });
});

describe('concealment (what the product really does with opusscript)', () => {
  const N = 960;
  // A voice-like steady signal: two partials.
  const input = new Int16Array(N * 40);
  for (let i = 0; i < input.length; i++) {
    input[i] = Math.round(
      8000 * Math.sin((2 * Math.PI * 440 * i) / 48_000) + 3000 * Math.sin((2 * Math.PI * 1230 * i) / 48_000),
    );
  }
  const packets = encodeAll(input, N);

  function decodeWithLosses(lost: ReadonlySet<number>, frames: number): Int16Array[] {
    const dec = factory.createDecoder();
    const out: Int16Array[] = [];
    for (let f = 0; f < frames; f++) {
      const frame = new Int16Array(N);
      if (lost.has(f)) {
        expect(dec.conceal(frame)).toBe(N);
        expect(dec.lastPacketDuration()).toBe(N);
      } else {
        dec.decode(packets[f]!, frame);
      }
      out.push(frame);
    }
    dec.destroy();
    return out;
  }

  it('conceal() returns exactly one frame, for 20 ms and 10 ms streams, before and after packets', () => {
    for (const frameSamples of [960, 480]) {
      const dec = factory.createDecoder({ frameSamples });
      const big = new Int16Array(5760);
      expect(dec.conceal(big)).toBe(frameSamples); // nothing decoded yet: silence
      expect(rms(big.subarray(0, frameSamples))).toBe(0);
      const pk = encodeAll(sineInt16(frameSamples * 5, 440, -12), frameSamples);
      for (const p of pk) dec.decode(p, big);
      expect(dec.conceal(big)).toBe(frameSamples);
      expect(dec.lastPacketDuration()).toBe(frameSamples);
      expect(dec.decode(new Uint8Array(0), big)).toBe(frameSamples); // empty packet = conceal
      expect(dec.decodeFec(pk[0]!, big)).toBe(frameSamples); // no FEC with opusscript: conceals
      expect(dec.supportsFec).toBe(false);
      dec.destroy();
    }
  });

  it('builds zero-length-frame packets for any frame size', () => {
    const buf = new Uint8Array(2);
    expect(writeConcealmentPacket(-1, 960, buf)).toBe(1);
    expect(opusPacketSamples(buf, 1)).toBe(960);
    expect(writeConcealmentPacket(0xf0 /* CELT 10 ms */, 960, buf)).toBe(2);
    expect(opusPacketSamples(buf, 2)).toBe(960);
    expect(writeConcealmentPacket(0xf8 /* CELT 20 ms */, 480, buf)).toBe(1);
    expect(opusPacketSamples(buf, 1)).toBe(480);
  });

  it('equals the first frame of the empty-packet concealment, but fades naturally over a burst', () => {
    // Reference: stock opusscript, fed an empty packet (it conceals 120 ms, returns the first 60 ms).
    const stock = new OpusScript(48_000, 1, OpusScript.Application.VOIP);
    const stockOut: Int16Array[] = [];
    for (let f = 0; f < 24; f++) {
      const buf = f >= 20 ? stock.decode(Buffer.alloc(0)) : stock.decode(Buffer.from(packets[f]!));
      const pcm = new Int16Array(buf.buffer, buf.byteOffset, buf.length / 2);
      if (f >= 20) expect(pcm.length).toBe(2880);
      stockOut.push(pcm.slice(0, N)); // "keep the first frame of the concealment"
    }
    stock.delete();
    const ours = decodeWithLosses(new Set([20, 21, 22, 23]), 24);
    const clean = decodeWithLosses(new Set(), 24);
    // Same packets before the loss: identical first concealed frame.
    expect(Array.from(ours[20]!)).toEqual(Array.from(stockOut[20]!));
    const level = (a: Int16Array, ref: Int16Array): number => 20 * Math.log10(rms(a) / rms(ref));
    const fade = [20, 21, 22, 23].map((f) => level(ours[f]!, clean[f]!));
    const stockFade = [20, 21, 22, 23].map((f) => level(stockOut[f]!, clean[f]!));
    // Ours: libopus's own fade (each lost frame moves the decoder by one frame).
    expect(fade[0]).toBeGreaterThan(-3);
    expect(fade[1]).toBeGreaterThan(-12);
    expect(fade[2]).toBeLessThan(fade[1]!);
    // "Keep the first 20 ms of 120 ms" makes every later loss in a burst silent.
    expect(stockFade[1]).toBeLessThan(-40);
  });

  it('recovers after a loss: the stream converges back to the lossless decode', () => {
    const clean = decodeWithLosses(new Set(), 30);
    for (const lost of [[20], [20, 21], [20, 21, 22]]) {
      const out = decodeWithLosses(new Set(lost), 30);
      const after = lost[lost.length - 1]! + 1;
      // Measured: the first good frame after a loss is still a cross-fade (SNR 1-6 dB), then 12-30 dB,
      // and the waveform matches the lossless decode again (SNR > 40 dB) within 3-4 frames.
      expect(snrDb(clean[after + 4]!, out[after + 4]!)).toBeGreaterThan(20);
      expect(snrDb(clean[after + 6]!, out[after + 6]!)).toBeGreaterThan(35);
    }
  });
});

describe('native backend wrapper (@discordjs/opus API, faked over opusscript)', () => {
  /** Implements @discordjs/opus's OpusEncoder surface with stock opusscript. */
  function fakeModule(withConceal: boolean): DiscordOpusModule {
    class FakeOpusEncoder implements DiscordOpusHandle {
      private readonly os = new OpusScript(48_000, 1, OpusScript.Application.AUDIO);
      private bitrate = 0;
      conceal?: (frameSize: number, packet?: Buffer | null) => Buffer;
      constructor() {
        if (withConceal) {
          this.conceal = (frameSize: number): Buffer => Buffer.alloc(frameSize * 2, 1);
        }
      }
      encode(pcm: Buffer): Buffer {
        return this.os.encode(pcm, pcm.length / 2);
      }
      decode(packet: Buffer): Buffer {
        return this.os.decode(packet);
      }
      applyEncoderCTL(ctl: number, value: number): void {
        if (ctl === 4002) this.bitrate = value;
        this.os.encoderCTL(ctl, value);
      }
      applyDecoderCTL(ctl: number, value: number): void {
        this.os.decoderCTL(ctl, value);
      }
      setBitrate(bitrate: number): void {
        this.applyEncoderCTL(4002, bitrate);
      }
      getBitrate(): number {
        return this.bitrate;
      }
    }
    return { OpusEncoder: FakeOpusEncoder };
  }

  it('prefers the native module when it loads, and round-trips audio through it', async () => {
    const opus = await createOpus({
      loadNative: () => Promise.resolve(fakeModule(false)),
      loadAddon: () => null,
    });
    expect(opus.backend).toBe('native');
    const enc = opus.createEncoder();
    const dec = opus.createDecoder();
    expect(enc.getBitrate()).toBe(32_000);
    expect(dec.supportsFec).toBe(false);
    const input = sineInt16(48_000, 440, -12);
    const out = new Uint8Array(1500);
    const frame = new Int16Array(960);
    const decoded = new Int16Array(input.length);
    for (let f = 0; f < 50; f++) {
      const len = enc.encode(input.subarray(f * 960, (f + 1) * 960), out);
      expect(dec.decode(out, frame, len)).toBe(960);
      decoded.set(frame, f * 960);
    }
    expect(Math.abs(toneDbfs(decoded, 440, 48_000, 4800, 38_400) + 12)).toBeLessThan(3);
    expect(dec.conceal(frame)).toBe(960);
    enc.destroy();
    dec.destroy();
    expect(() => dec.conceal(frame)).toThrow(OpusCodecError);
  });

  it('uses the binding conceal() for PLC and FEC when it has one', async () => {
    const opus = await createOpus({ backend: 'native', loadNative: () => Promise.resolve(fakeModule(true)) });
    const dec = opus.createDecoder({ frameSamples: 480 });
    expect(dec.supportsFec).toBe(true);
    const frame = new Int16Array(480);
    expect(dec.conceal(frame)).toBe(480);
    expect(frame[0]).toBe(257);
    expect(dec.decodeFec(Uint8Array.of(0xf0, 1, 2), frame)).toBe(480);
  });
});
