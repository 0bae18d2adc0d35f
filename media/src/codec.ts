import { MediaError } from './errors.js';
import type { OpusSignal } from './opus-packet.js';
import { AddonOpusFactory, loadVoiceOpusAddon, type VoiceOpusAddon } from './opus-addon.js';
import { loadDiscordOpus, NativeOpusFactory, type DiscordOpusModule } from './opus-native.js';
import { OpusscriptFactory } from './opus-wasm.js';

/**
 * Opus, 48 kHz mono, behind one interface with three backends:
 * - `libopus`: our addon over the system libopus (opus-addon.ts), built when libopus-dev is
 *   installed; the only one that decodes in-band FEC;
 * - `native`: `@discordjs/opus` (libopus in C), used only when that optional package is installed;
 * - `opusscript`: libopus 1.4 compiled to WebAssembly (always available; see opus-wasm.ts).
 *
 * Every call works on caller-owned typed arrays, so a steady stream allocates nothing per frame
 * (the native backend allocates the Buffers its binding returns).
 */
export type OpusBackendName = 'opusscript' | 'native' | 'libopus';

export interface OpusEncoderSettings {
  /** Target bitrate in bit/s (500..512000). Default 32000. */
  readonly bitrate?: number;
  /** 0..10; default 9 (the figure BRIEF.md measures). */
  readonly complexity?: number;
  /** In-band forward error correction (SILK LBRR). Default true. */
  readonly fec?: boolean;
  /** Expected packet loss, 0..100; drives how much FEC the encoder spends. Default 10. */
  readonly packetLossPercent?: number;
  /** Discontinuous transmission (1-byte packets during silence). Default false. */
  readonly dtx?: boolean;
  /**
   * Signal hint. Default 'auto'. 'voice' pushes libopus to SILK/hybrid modes, about 3x the encode
   * cost of CELT when FEC is off (with FEC on it uses hybrid anyway).
   */
  readonly signal?: OpusSignal;
}

export interface OpusEncoderOptions extends OpusEncoderSettings {
  /** Samples per frame: 480 (10 ms) or 960 (20 ms); any Opus frame size is accepted. Default 960. */
  readonly frameSamples?: number;
}

export interface OpusDecoderOptions {
  /** Samples per frame the stream uses; `conceal()` produces exactly this many. Default 960. */
  readonly frameSamples?: number;
}

export interface OpusEncoder {
  readonly backend: OpusBackendName;
  readonly frameSamples: number;
  /** Encodes one frame (`pcm.length === frameSamples`) into `out`; returns the packet length. */
  encode(pcm: Int16Array, out: Uint8Array): number;
  setBitrate(bitsPerSecond: number): void;
  getBitrate(): number;
  setComplexity(complexity: number): void;
  setFec(enabled: boolean): void;
  setPacketLossPercent(percent: number): void;
  setDtx(enabled: boolean): void;
  /** Frees the native state; idempotent. Any later call throws. */
  destroy(): void;
}

export interface OpusDecoder {
  readonly backend: OpusBackendName;
  readonly frameSamples: number;
  /** True when `decodeFec` really decodes the FEC data of the next packet; false when it conceals. */
  readonly supportsFec: boolean;
  /**
   * Decodes `packet[0..length)` into `out`; returns the samples written. A zero-length packet
   * conceals one frame. Throws `OpusCodecError` (INVALID_PACKET, BUFFER_TOO_SMALL, CODEC_FAILED).
   */
  decode(packet: Uint8Array, out: Int16Array, length?: number): number;
  /** Produces exactly one frame of loss concealment into `out`; returns `frameSamples`. */
  conceal(out: Int16Array): number;
  /**
   * Reconstructs the lost frame just before `next` from the FEC data in `next` when supported,
   * otherwise conceals. Either way it writes one frame and leaves `next` to be decoded normally.
   */
  decodeFec(next: Uint8Array, out: Int16Array, length?: number): number;
  /** Forgets the stream (OPUS_RESET_STATE), e.g. when a new talker reuses the decoder. */
  reset(): void;
  destroy(): void;
}

/** Builds encoders and decoders of one backend; holds the loaded module. */
export interface OpusFactory {
  readonly backend: OpusBackendName;
  /** Human-readable, for logs and BENCHMARKS.md. */
  readonly description: string;
  createEncoder(options?: OpusEncoderOptions): OpusEncoder;
  createDecoder(options?: OpusDecoderOptions): OpusDecoder;
}

export interface CreateOpusOptions {
  /**
   * 'auto' (default): the libopus addon when built, else native when installed, else opusscript.
   * 'libopus' and 'native' throw when they are missing.
   */
  readonly backend?: 'auto' | OpusBackendName;
  /** Replaces the `@discordjs/opus` loader (tests inject fakes here). */
  readonly loadNative?: () => Promise<DiscordOpusModule | null>;
  /** Replaces the addon loader (tests make it missing here). */
  readonly loadAddon?: () => VoiceOpusAddon | null;
}

/** Picks the backend: native `@discordjs/opus` when it loads, opusscript otherwise. */
export async function createOpus(options: CreateOpusOptions = {}): Promise<OpusFactory> {
  const want = options.backend ?? 'auto';
  if (want === 'auto' || want === 'libopus') {
    const addon = (options.loadAddon ?? loadVoiceOpusAddon)();
    if (addon !== null) return new AddonOpusFactory(addon);
    if (want === 'libopus') {
      throw new MediaError(
        'CODEC_UNAVAILABLE',
        'the voice_opus addon is not built (install libopus-dev, then run `npm run build`)',
      );
    }
  }
  if (want !== 'opusscript') {
    const mod = await (options.loadNative ?? loadDiscordOpus)();
    if (mod !== null) return new NativeOpusFactory(mod);
    if (want === 'native') {
      throw new MediaError(
        'CODEC_UNAVAILABLE',
        '@discordjs/opus is not installed or its binary did not load',
      );
    }
  }
  return new OpusscriptFactory();
}
