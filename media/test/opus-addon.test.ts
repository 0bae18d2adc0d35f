import { describe, expect, it } from 'vitest';
import {
  createOpus,
  loadVoiceOpusAddon,
  MediaError,
  OpusCodecError,
  opusPacketHasLbrr,
  sineInt16,
  toneDbfs,
  type OpusFactory,
} from '../src/index.js';

/**
 * The libopus backend: our addon over the system libopus (built by scripts/build-native.mjs;
 * provision installs libopus-dev for the tests). It is the backend that decodes in-band FEC.
 */
const addon = loadVoiceOpusAddon();

/** Correlation of two frames, 1 = identical shape. */
function correlation(a: Int16Array, b: Int16Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa === 0 || bb === 0 ? 0 : ab / Math.sqrt(aa * bb);
}

/** A tone that changes pitch every frame: concealment cannot guess it, FEC carries it. */
function chirpFrames(frames: number, frame: number): Int16Array {
  const pcm = new Int16Array(frames * frame);
  let phase = 0;
  for (let f = 0; f < frames; f++) {
    const hz = 300 + ((f * 137) % 900);
    for (let i = 0; i < frame; i++) {
      phase += (2 * Math.PI * hz) / 48_000;
      pcm[f * frame + i] = Math.round(8000 * Math.sin(phase));
    }
  }
  return pcm;
}

describe('libopus addon backend', () => {
  it('is built here (provision installs libopus-dev) and auto picks it first', async () => {
    expect(addon, 'media/native/build/voice_opus.node did not load').not.toBeNull();
    const opus = await createOpus();
    expect(opus.backend).toBe('libopus');
    expect(opus.description).toMatch(/libopus 1\./);
    expect(opus.createDecoder().supportsFec).toBe(true);
    await expect(createOpus({ backend: 'libopus', loadAddon: () => null })).rejects.toBeInstanceOf(
      MediaError,
    );
  });

  for (const frame of [960, 480]) {
    it(`round-trips a tone at its level and conceals exactly one frame (${frame / 48} ms)`, async () => {
      const opus: OpusFactory = await createOpus({ backend: 'libopus' });
      const enc = opus.createEncoder({ frameSamples: frame });
      const dec = opus.createDecoder({ frameSamples: frame });
      const input = sineInt16(48_000, 440, -12);
      const out = new Int16Array(input.length);
      const pkt = new Uint8Array(1500);
      const frames = input.length / frame;
      for (let f = 0; f < frames; f++) {
        const n = enc.encode(input.subarray(f * frame, (f + 1) * frame), pkt);
        expect(dec.decode(pkt, out.subarray(f * frame, (f + 1) * frame), n)).toBe(frame);
      }
      expect(Math.abs(toneDbfs(out.subarray(9600), 440) - -12)).toBeLessThan(3);
      const plc = new Int16Array(5760);
      expect(dec.conceal(plc)).toBe(frame);
      enc.setBitrate(24_000);
      expect(Math.abs(enc.getBitrate() - 24_000)).toBeLessThan(1000);
      enc.destroy();
      enc.destroy();
      expect(() => enc.encode(input.subarray(0, frame), pkt)).toThrow(OpusCodecError);
      dec.destroy();
    });
  }

  it('recovers a lost frame from the next packet’s in-band FEC, far better than concealment', async () => {
    const opus = await createOpus({ backend: 'libopus' });
    const frame = 960;
    const input = chirpFrames(60, frame);
    const enc = opus.createEncoder({
      frameSamples: frame,
      fec: true,
      packetLossPercent: 20,
      signal: 'voice',
    });
    const packets: Uint8Array[] = [];
    const buf = new Uint8Array(1500);
    for (let f = 0; f < 60; f++)
      packets.push(buf.slice(0, enc.encode(input.subarray(f * frame, (f + 1) * frame), buf)));
    const lost = 40;
    const run = (useFec: boolean): Int16Array => {
      const dec = opus.createDecoder({ frameSamples: frame });
      const out = new Int16Array(60 * frame);
      for (let f = 0; f < 60; f++) {
        const o = out.subarray(f * frame, (f + 1) * frame);
        if (f === lost) {
          expect(useFec ? dec.decodeFec(packets[f + 1]!, o) : dec.conceal(o)).toBe(frame);
        } else dec.decode(packets[f]!, o);
      }
      return out;
    };
    const reference = run(false);
    const fec = run(true);
    // Opus delays its output by its look-ahead (312 samples at 48 kHz): compare decoded with decoded.
    const clean = opus.createDecoder({ frameSamples: frame });
    const lossless = new Int16Array(60 * frame);
    for (let f = 0; f < 60; f++) clean.decode(packets[f]!, lossless.subarray(f * frame, (f + 1) * frame));
    const at = (x: Int16Array) => x.subarray(lost * frame, (lost + 1) * frame);
    const fecCorr = correlation(at(fec), at(lossless));
    const plcCorr = correlation(at(reference), at(lossless));
    expect(fecCorr).toBeGreaterThan(0.5);
    expect(fecCorr).toBeGreaterThan(plcCorr + 0.3);
  });

  it('opusPacketHasLbrr tells a packet with FEC data from one without (libopus decodes only those)', async () => {
    const opus = await createOpus({ backend: 'libopus' });
    for (const frame of [480, 960]) {
      const input = chirpFrames(40, frame);
      const encode = (fec: boolean): Uint8Array[] => {
        const enc = opus.createEncoder({ frameSamples: frame, fec, packetLossPercent: 20, signal: 'voice' });
        const buf = new Uint8Array(1500);
        const out: Uint8Array[] = [];
        for (let f = 0; f < 40; f++)
          out.push(buf.slice(0, enc.encode(input.subarray(f * frame, (f + 1) * frame), buf)));
        enc.destroy();
        return out;
      };
      const withFec = encode(true);
      const without = encode(false);
      expect(without.filter((p) => opusPacketHasLbrr(p)).length, `${frame}: FEC off`).toBe(0);
      // SILK adds LBRR only after frames its VAD found active: a good share, not all.
      expect(withFec.filter((p) => opusPacketHasLbrr(p)).length, `${frame}: FEC on`).toBeGreaterThan(8);
      // Ground truth from libopus, packet by packet: the FEC decode of a packet with LBRR rebuilds the
      // lost frame (close to its lossless decode); without LBRR it is no better than concealment.
      for (const packets of [withFec, without]) {
        const clean = opus.createDecoder({ frameSamples: frame });
        const lossless = packets.map((p) => {
          const o = new Int16Array(frame);
          clean.decode(p, o);
          return o;
        });
        for (let k = 4; k < 38; k++) {
          const a = opus.createDecoder({ frameSamples: frame });
          const b = opus.createDecoder({ frameSamples: frame });
          const tmp = new Int16Array(frame);
          for (let f = 0; f < k; f++) {
            a.decode(packets[f]!, tmp);
            b.decode(packets[f]!, tmp);
          }
          const viaFec = new Int16Array(frame);
          const viaPlc = new Int16Array(frame);
          a.decodeFec(packets[k + 1]!, viaFec);
          b.conceal(viaPlc);
          a.destroy();
          b.destroy();
          const fec = correlation(viaFec, lossless[k]!);
          const plc = correlation(viaPlc, lossless[k]!);
          const rebuilt = fec > 0.75 && fec > plc + 0.1;
          expect(rebuilt, `${frame} packet ${k + 1}: ${fec} vs ${plc}`).toBe(
            opusPacketHasLbrr(packets[k + 1]!),
          );
          if (!rebuilt) expect(Math.abs(fec - plc)).toBeLessThan(0.05);
        }
      }
    }
    // CELT-only packets never carry LBRR; malformed ones answer false.
    const celt = opus.createEncoder({ frameSamples: 480, fec: false, signal: 'music', bitrate: 64000 });
    const buf = new Uint8Array(1500);
    const n = celt.encode(sineInt16(480, 1000, -20), buf);
    expect((buf[0]! >> 3) & 0x1f, 'a CELT-only packet').toBeGreaterThanOrEqual(16);
    expect(opusPacketHasLbrr(buf, n)).toBe(false);
    expect(opusPacketHasLbrr(new Uint8Array([0]), 1)).toBe(false);
    expect(opusPacketHasLbrr(new Uint8Array([3, 0]), 2)).toBe(false);
    expect(opusPacketHasLbrr(new Uint8Array(0), 0)).toBe(false);
  });

  it('refuses bad packets with a codec error, and FEC of a bad packet conceals instead', async () => {
    const opus = await createOpus({ backend: 'libopus' });
    const dec = opus.createDecoder({ frameSamples: 960 });
    const out = new Int16Array(960);
    expect(() => dec.decode(new Uint8Array([0xff, 0xff, 0xff]), out)).toThrow(OpusCodecError);
    expect(() => dec.decode(new Uint8Array(10), new Int16Array(10))).toThrow(OpusCodecError);
    expect(dec.decodeFec(new Uint8Array([0xff, 0xff, 0xff]), out)).toBe(960);
  });
});
