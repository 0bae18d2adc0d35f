import { OpusCodecError } from './errors.js';
/**
 * Opus facts shared by the backends: sample rate, CTL numbers, and just enough of the packet
 * layout (RFC 6716 section 3.1, the TOC byte) to validate packets before decoding and to build the
 * zero-length-frame packets we conceal with.
 */

export const OPUS_SAMPLE_RATE = 48_000;
/** Largest packet libopus produces for one frame (1275 bytes of payload plus the TOC byte). */
export const OPUS_MAX_PACKET_BYTES = 1276;
/** Largest packet libopus accepts for decoding (three maximal frames). */
export const OPUS_MAX_DECODE_BYTES = 1276 * 3;
/** Longest duration one packet can carry: 120 ms at 48 kHz. */
export const OPUS_MAX_PACKET_SAMPLES = 5760;
/** Frame sizes libopus can encode at 48 kHz: 2.5, 5, 10, 20, 40 and 60 ms. */
export const OPUS_FRAME_SAMPLES = [120, 240, 480, 960, 1920, 2880] as const;

export const OPUS_APPLICATION_VOIP = 2048;

/**
 * Encoder settings used when the caller gives none: the figures BRIEF.md measures, FEC for ~10% loss.
 * Measured cost of that FEC (media/bench/opus.ts, voice-like signal, 20 ms): with FEC on and a loss
 * percentage > 0 libopus always picks hybrid (SILK+CELT) mode, about 520 us per frame with opusscript;
 * with FEC off and `signal: 'auto'` it mostly picks CELT, about 130 us. Neither backend can decode FEC
 * (see opus-wasm.ts), so FEC only helps a receiver with a FEC-capable decoder.
 */
export const DEFAULT_ENCODER_SETTINGS = {
  bitrate: 32_000,
  complexity: 9,
  fec: true,
  packetLossPercent: 10,
  dtx: false,
  signal: 'auto',
} as const;

export type OpusSignal = 'auto' | 'voice' | 'music';
export const OPUS_AUTO = -1000;
export const OPUS_SIGNAL_VOICE = 3001;
export const OPUS_SIGNAL_MUSIC = 3002;

/** The `opus_encoder_ctl` / `opus_decoder_ctl` request numbers we use (opus_defines.h). */
export const OpusCtl = {
  SET_APPLICATION: 4000,
  SET_BITRATE: 4002,
  GET_BITRATE: 4003,
  SET_COMPLEXITY: 4010,
  SET_INBAND_FEC: 4012,
  SET_PACKET_LOSS_PERC: 4014,
  SET_DTX: 4016,
  SET_SIGNAL: 4024,
  GET_LOOKAHEAD: 4027,
  RESET_STATE: 4028,
  GET_LAST_PACKET_DURATION: 4039,
} as const;

const SILK_SAMPLES = [480, 960, 1920, 2880] as const;
const HYBRID_SAMPLES = [480, 960] as const;
const CELT_SAMPLES = [120, 240, 480, 960] as const;

/** Samples (at 48 kHz) in each frame of a packet with this TOC byte. */
export function tocFrameSamples(toc: number): number {
  const config = (toc >> 3) & 0x1f;
  if (config < 12) return SILK_SAMPLES[config & 3]!;
  if (config < 16) return HYBRID_SAMPLES[config & 1]!;
  return CELT_SAMPLES[config & 3]!;
}

/** Number of frames in a packet, or -1 when the header is malformed. */
export function opusPacketFrames(packet: Uint8Array, length: number = packet.length): number {
  if (length < 1) return -1;
  const code = packet[0]! & 3;
  if (code === 0) return 1;
  if (code !== 3) return 2;
  if (length < 2) return -1;
  const count = packet[1]! & 0x3f;
  return count === 0 ? -1 : count;
}

/** Samples a packet decodes to (48 kHz), or -1 when the header is malformed or over 120 ms. */
export function opusPacketSamples(packet: Uint8Array, length: number = packet.length): number {
  const frames = opusPacketFrames(packet, length);
  if (frames < 0) return -1;
  const samples = frames * tocFrameSamples(packet[0]!);
  return samples > OPUS_MAX_PACKET_SAMPLES ? -1 : samples;
}

/** A TOC byte (one frame, code 0) for a fullband CELT frame, or a wideband SILK one for 40/60 ms. */
export function tocForFrame(frameSamples: number): number {
  switch (frameSamples) {
    case 120:
      return 28 << 3;
    case 240:
      return 29 << 3;
    case 480:
      return 30 << 3;
    case 960:
      return 31 << 3;
    case 1920:
      return 10 << 3;
    case 2880:
      return 11 << 3;
    default:
      throw new TypeError(`no Opus frame of ${frameSamples} samples`);
  }
}

/**
 * Writes into `out` a packet whose frames all have zero length, lasting exactly `frameSamples`.
 * libopus decodes a zero-length frame by running its loss concealment for that frame's duration only
 * (`opus_decode_frame` with len <= 1: "don't conceal more than what the ToC says"), with the mode of
 * the last decoded packet. It is the same code path as `opus_decode(st, NULL, 0, pcm, frameSamples, 0)`,
 * which the bindings can't express because they always pass a 60 or 120 ms `frame_size`.
 * `lastToc` is the TOC of the last decoded packet (-1 if none). Returns the packet length (1 or 2).
 */
export function writeConcealmentPacket(
  lastToc: number,
  frameSamples: number,
  out: Uint8Array,
  offset: number = 0,
): number {
  if (lastToc >= 0) {
    const each = tocFrameSamples(lastToc);
    if (each === frameSamples) {
      out[offset] = lastToc & 0xfc;
      return 1;
    }
    const count = frameSamples / each;
    if (Number.isInteger(count) && count >= 2 && count <= 48) {
      // Code 3, CBR, no padding: `count` frames of (0 bytes / count) each.
      out[offset] = (lastToc & 0xfc) | 3;
      out[offset + 1] = count;
      return 2;
    }
  }
  out[offset] = tocForFrame(frameSamples);
  return 1;
}

export function assertFrameSamples(frameSamples: number): void {
  if (!(OPUS_FRAME_SAMPLES as readonly number[]).includes(frameSamples)) {
    throw new TypeError(`frameSamples must be one of ${OPUS_FRAME_SAMPLES.join(', ')} (got ${frameSamples})`);
  }
}

export function assertIntRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer in ${min}..${max} (got ${value})`);
  }
}

/** Validates one encoder setting and returns the CTL request and value that apply it. */
export function encoderCtlFor(
  setting: 'bitrate' | 'complexity' | 'fec' | 'packetLossPercent' | 'dtx' | 'signal',
  value: number | boolean | OpusSignal,
): readonly [number, number] {
  switch (setting) {
    case 'signal':
      if (value === 'voice') return [OpusCtl.SET_SIGNAL, OPUS_SIGNAL_VOICE];
      if (value === 'music') return [OpusCtl.SET_SIGNAL, OPUS_SIGNAL_MUSIC];
      if (value === 'auto') return [OpusCtl.SET_SIGNAL, OPUS_AUTO];
      throw new TypeError(`signal must be 'auto', 'voice' or 'music' (got ${String(value)})`);
    case 'bitrate':
      assertIntRange('bitrate', Number(value), 500, 512_000);
      return [OpusCtl.SET_BITRATE, Number(value)];
    case 'complexity':
      assertIntRange('complexity', Number(value), 0, 10);
      return [OpusCtl.SET_COMPLEXITY, Number(value)];
    case 'packetLossPercent':
      assertIntRange('packetLossPercent', Number(value), 0, 100);
      return [OpusCtl.SET_PACKET_LOSS_PERC, Number(value)];
    case 'fec':
      return [OpusCtl.SET_INBAND_FEC, value === true ? 1 : 0];
    case 'dtx':
      return [OpusCtl.SET_DTX, value === true ? 1 : 0];
  }
}

/**
 * Whether a packet carries in-band FEC (SILK LBRR data) for the frame before it: the same test as
 * libopus 1.5's `opus_packet_has_lbrr` (Debian's libopus 1.3 lacks it). CELT-only packets carry none.
 * The SILK header's VAD and LBRR flags are the first range-coded symbols, each of probability 1/2,
 * so they read as the top bits of the first frame's first byte. Malformed packets answer false.
 */
export function opusPacketHasLbrr(packet: Uint8Array, length: number = packet.length): boolean {
  if (length < 2 || length > packet.length) return false;
  const toc = packet[0]!;
  if (((toc >> 3) & 0x1f) >= 16) return false; // CELT only
  const code = toc & 3;
  let offset = 1;
  let size: number;
  if (code === 0) size = length - 1;
  else if (code === 1) size = (length - 1) >> 1;
  else if (code === 2) {
    const b1 = packet[1]!;
    if (b1 < 252) {
      size = b1;
      offset = 2;
    } else {
      if (length < 3) return false;
      size = b1 + 4 * packet[2]!;
      offset = 3;
    }
  } else {
    const b1 = packet[1]!;
    const count = b1 & 0x3f;
    if (count === 0) return false;
    offset = 2;
    let padding = 0;
    if (b1 & 0x40) {
      for (;;) {
        if (offset >= length) return false;
        const p = packet[offset++]!;
        padding += p === 255 ? 254 : p;
        if (p !== 255) break;
      }
    }
    if (b1 & 0x80) {
      if (offset >= length) return false;
      const b = packet[offset]!;
      if (b < 252) {
        size = b;
        offset += 1;
      } else {
        if (offset + 1 >= length) return false;
        size = b + 4 * packet[offset + 1]!;
        offset += 2;
      }
      // The other frames' sizes follow; the first frame's data comes after them all.
      for (let f = 1; f < count - 1; f++) {
        if (offset >= length) return false;
        offset += packet[offset]! < 252 ? 1 : 2;
      }
    } else size = Math.floor((length - offset - padding) / count);
  }
  if (size <= 0 || offset >= length) return false;
  const frameSamples = tocFrameSamples(toc);
  const silkFrames = frameSamples > 960 ? frameSamples / 960 : 1;
  const first = packet[offset]!;
  if ((first >> (7 - silkFrames)) & 1) return true;
  return (toc & 4) !== 0 && ((first >> (6 - 2 * silkFrames)) & 1) === 1;
}

/**
 * The samples `packet[0..length)` decodes to, checked as every backend's `decode` must before it
 * hands the packet to libopus: a readable Opus packet within the decode limit whose frames fit `out`.
 */
export function checkedDecodeSamples(packet: Uint8Array, length: number, out: Int16Array): number {
  if (length > OPUS_MAX_DECODE_BYTES || length > packet.length)
    throw new OpusCodecError('INVALID_PACKET', `packet of ${length} bytes`);
  const samples = opusPacketSamples(packet, length);
  if (samples < 0) throw new OpusCodecError('INVALID_PACKET');
  if (samples > out.length)
    throw new OpusCodecError('BUFFER_TOO_SMALL', `packet holds ${samples} samples, output has ${out.length}`);
  return samples;
}
