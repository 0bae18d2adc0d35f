import type {
  OpusDecoder,
  OpusDecoderOptions,
  OpusEncoder,
  OpusEncoderOptions,
  OpusEncoderSettings,
  OpusFactory,
} from './codec.js';
import { OpusCodecError } from './errors.js';
import { builtAddonUrl, loadAddon } from './native-addon.js';
import {
  assertFrameSamples,
  DEFAULT_ENCODER_SETTINGS,
  encoderCtlFor,
  checkedDecodeSamples,
  OPUS_MAX_DECODE_BYTES,
  OpusCtl,
  opusPacketSamples,
} from './opus-packet.js';

/**
 * The `libopus` backend: our own small Node-API addon (media/native/voice_opus.c) over the system
 * libopus, built by `scripts/build-native.mjs` when Debian's libopus-dev is installed. It is the
 * only backend that really decodes in-band FEC and conceals exactly one frame of any size, and it
 * allocates nothing per frame (it reads and writes the caller's arrays).
 */

type Handle = object;

/** The addon's exports (see media/native/voice_opus.c). */
export interface VoiceOpusAddon {
  createEncoder(frameSamples: number): Handle;
  createDecoder(frameSamples: number): Handle;
  encode(h: Handle, pcm: Int16Array, out: Uint8Array): number;
  decode(h: Handle, packet: Uint8Array | null, length: number, out: Int16Array, fec: boolean): number;
  encoderCtl(h: Handle, request: number, value: number): number;
  decoderReset(h: Handle): void;
  destroy(h: Handle): void;
  version(): string;
}

/** Where the build script puts the addon (relative to media/src and media/dist alike). */
export const ADDON_PATH = builtAddonUrl('voice_opus');

/** Loads the addon when it was built; null otherwise (never throws). */
export function loadVoiceOpusAddon(path: URL = ADDON_PATH): VoiceOpusAddon | null {
  return loadAddon<VoiceOpusAddon>(
    path,
    (mod) => typeof mod.createEncoder === 'function' && typeof mod.decode === 'function',
  );
}

function failed(err: unknown): OpusCodecError {
  return new OpusCodecError('CODEC_FAILED', err instanceof Error ? err.message : String(err));
}

export class AddonOpusEncoder implements OpusEncoder {
  readonly backend = 'libopus' as const;
  readonly frameSamples: number;
  #h: Handle | null;

  constructor(
    private readonly addon: VoiceOpusAddon,
    options: OpusEncoderOptions,
    defaults: Required<OpusEncoderSettings>,
  ) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    this.frameSamples = frameSamples;
    this.#h = addon.createEncoder(frameSamples);
    this.#ctl(encoderCtlFor('signal', options.signal ?? defaults.signal));
    this.setBitrate(options.bitrate ?? defaults.bitrate);
    this.setComplexity(options.complexity ?? defaults.complexity);
    this.setFec(options.fec ?? defaults.fec);
    this.setPacketLossPercent(options.packetLossPercent ?? defaults.packetLossPercent);
    this.setDtx(options.dtx ?? defaults.dtx);
  }

  #live(): Handle {
    if (this.#h === null) throw new OpusCodecError('DESTROYED');
    return this.#h;
  }

  #ctl([request, value]: readonly [number, number]): void {
    this.addon.encoderCtl(this.#live(), request, value);
  }

  encode(pcm: Int16Array, out: Uint8Array): number {
    const h = this.#live();
    if (pcm.length !== this.frameSamples)
      throw new TypeError(`encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    try {
      return this.addon.encode(h, pcm, out);
    } catch (err) {
      throw (err as { code?: string }).code === 'OPUS_-2'
        ? new OpusCodecError('BUFFER_TOO_SMALL', 'output too small for the packet')
        : failed(err);
    }
  }

  setBitrate(bitsPerSecond: number): void {
    this.#ctl(encoderCtlFor('bitrate', bitsPerSecond));
  }
  getBitrate(): number {
    return this.addon.encoderCtl(this.#live(), OpusCtl.GET_BITRATE, 0);
  }
  setComplexity(complexity: number): void {
    this.#ctl(encoderCtlFor('complexity', complexity));
  }
  setFec(enabled: boolean): void {
    this.#ctl(encoderCtlFor('fec', enabled));
  }
  setPacketLossPercent(percent: number): void {
    this.#ctl(encoderCtlFor('packetLossPercent', percent));
  }
  setDtx(enabled: boolean): void {
    this.#ctl(encoderCtlFor('dtx', enabled));
  }

  destroy(): void {
    if (this.#h !== null) this.addon.destroy(this.#h);
    this.#h = null;
  }
}

export class AddonOpusDecoder implements OpusDecoder {
  readonly backend = 'libopus' as const;
  readonly frameSamples: number;
  readonly supportsFec = true;
  #h: Handle | null;

  constructor(
    private readonly addon: VoiceOpusAddon,
    options: OpusDecoderOptions = {},
  ) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    this.frameSamples = frameSamples;
    this.#h = addon.createDecoder(frameSamples);
  }

  #live(): Handle {
    if (this.#h === null) throw new OpusCodecError('DESTROYED');
    return this.#h;
  }

  decode(packet: Uint8Array, out: Int16Array, length: number = packet.length): number {
    const h = this.#live();
    if (length === 0) return this.conceal(out);
    checkedDecodeSamples(packet, length, out);
    try {
      return this.addon.decode(h, packet, length, out, false);
    } catch (err) {
      throw failed(err);
    }
  }

  conceal(out: Int16Array): number {
    const h = this.#live();
    if (out.length < this.frameSamples) throw new OpusCodecError('BUFFER_TOO_SMALL');
    try {
      return this.addon.decode(h, null, 0, out, false);
    } catch (err) {
      throw failed(err);
    }
  }

  decodeFec(next: Uint8Array, out: Int16Array, length: number = next.length): number {
    const h = this.#live();
    if (length === 0) return this.conceal(out);
    if (out.length < this.frameSamples) throw new OpusCodecError('BUFFER_TOO_SMALL');
    if (length > OPUS_MAX_DECODE_BYTES || length > next.length || opusPacketSamples(next, length) < 0)
      return this.conceal(out);
    try {
      return this.addon.decode(h, next, length, out, true);
    } catch {
      // A next packet libopus refuses still leaves a frame to fill: conceal it.
      return this.conceal(out);
    }
  }

  reset(): void {
    this.addon.decoderReset(this.#live());
  }

  destroy(): void {
    if (this.#h !== null) this.addon.destroy(this.#h);
    this.#h = null;
  }
}

export class AddonOpusFactory implements OpusFactory {
  readonly backend = 'libopus' as const;
  readonly description: string;
  private readonly defaults: Required<OpusEncoderSettings>;

  constructor(
    private readonly addon: VoiceOpusAddon,
    defaults: Partial<OpusEncoderSettings> = {},
  ) {
    this.defaults = { ...DEFAULT_ENCODER_SETTINGS, ...defaults };
    this.description = `system ${addon.version()} (voice_opus addon, decodes FEC)`;
  }

  createEncoder(options: OpusEncoderOptions = {}): AddonOpusEncoder {
    return new AddonOpusEncoder(this.addon, options, this.defaults);
  }

  createDecoder(options?: OpusDecoderOptions): AddonOpusDecoder {
    return new AddonOpusDecoder(this.addon, options);
  }
}
