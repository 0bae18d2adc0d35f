import type {
  OpusDecoder,
  OpusDecoderOptions,
  OpusEncoder,
  OpusEncoderOptions,
  OpusEncoderSettings,
  OpusFactory,
} from './codec.js';
import { OpusCodecError } from './errors.js';
import {
  assertFrameSamples,
  DEFAULT_ENCODER_SETTINGS,
  encoderCtlFor,
  OPUS_APPLICATION_VOIP,
  checkedDecodeSamples,
  OPUS_SAMPLE_RATE,
  OpusCtl,
  writeConcealmentPacket,
} from './opus-packet.js';

/**
 * The native backend over `@discordjs/opus` (libopus in C through N-API). It is an optional package:
 * not installed by default, loaded with a dynamic import only when present.
 *
 * Its binding (0.10.0) decodes with a fixed 120 ms `frame_size` and `decode_fec = 0`, like opusscript,
 * so concealment uses the same zero-length-frame packet (exactly one frame). Newer builds that expose
 * `conceal(frameSize, packet?)` are used for concealment and FEC when that method exists.
 * The binding returns a new Buffer per encode/decode; we copy it into the caller's array.
 */

/** The shape of `@discordjs/opus`'s `OpusEncoder` (it encodes and decodes). */
export interface DiscordOpusHandle {
  encode(pcm: Buffer): Buffer;
  decode(packet: Buffer): Buffer;
  applyEncoderCTL(ctl: number, value: number): void;
  applyDecoderCTL(ctl: number, value: number): void;
  setBitrate(bitrate: number): void;
  getBitrate(): number;
  conceal?(frameSize: number, packet?: Buffer | null): Buffer;
}

export interface DiscordOpusModule {
  readonly OpusEncoder: new (rate: number, channels: number) => DiscordOpusHandle;
}

function asDiscordOpus(mod: unknown): DiscordOpusModule | null {
  for (const candidate of [mod, (mod as { default?: unknown } | null)?.default]) {
    if (typeof candidate === 'object' && candidate !== null && 'OpusEncoder' in candidate) {
      if (typeof candidate.OpusEncoder === 'function') return candidate as DiscordOpusModule;
    }
  }
  return null;
}

/**
 * Loads `@discordjs/opus` if it is installed and its binary loads; null otherwise (never throws).
 * The specifier is a variable so that neither TypeScript nor a bundler requires the package.
 */
export async function loadDiscordOpus(
  specifier: string = '@discordjs/opus',
): Promise<DiscordOpusModule | null> {
  try {
    const mod: unknown = await import(specifier);
    return asDiscordOpus(mod);
  } catch {
    return null;
  }
}

function codecFailed(err: unknown): OpusCodecError {
  return new OpusCodecError('CODEC_FAILED', err instanceof Error ? err.message : String(err));
}

function bufferView(a: Uint8Array, length: number): Buffer {
  return Buffer.from(a.buffer, a.byteOffset, length);
}

export class NativeOpusEncoder implements OpusEncoder {
  readonly backend = 'native' as const;
  readonly frameSamples: number;
  private handle: DiscordOpusHandle | null;
  private lastPcm: Int16Array | null = null;
  private lastPcmView: Buffer | null = null;

  constructor(
    mod: DiscordOpusModule,
    options: OpusEncoderOptions = {},
    defaults: Required<OpusEncoderSettings>,
  ) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    this.frameSamples = frameSamples;
    this.handle = new mod.OpusEncoder(OPUS_SAMPLE_RATE, 1);
    // The binding creates its encoder with OPUS_APPLICATION_AUDIO; switching is allowed before the first frame.
    this.handle.applyEncoderCTL(OpusCtl.SET_APPLICATION, OPUS_APPLICATION_VOIP);
    this.ctl(encoderCtlFor('signal', options.signal ?? defaults.signal));
    this.setBitrate(options.bitrate ?? defaults.bitrate);
    this.setComplexity(options.complexity ?? defaults.complexity);
    this.setFec(options.fec ?? defaults.fec);
    this.setPacketLossPercent(options.packetLossPercent ?? defaults.packetLossPercent);
    this.setDtx(options.dtx ?? defaults.dtx);
  }

  private live(): DiscordOpusHandle {
    if (this.handle === null) throw new OpusCodecError('DESTROYED');
    return this.handle;
  }

  private ctl([request, value]: readonly [number, number]): void {
    this.live().applyEncoderCTL(request, value);
  }

  encode(pcm: Int16Array, out: Uint8Array): number {
    const h = this.live();
    if (pcm.length !== this.frameSamples) {
      throw new TypeError(`encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    }
    // The binding takes the frame size from the Buffer's length; reuse the view for a reused array.
    if (pcm !== this.lastPcm || this.lastPcmView === null) {
      this.lastPcm = pcm;
      this.lastPcmView = Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
    }
    const packet = h.encode(this.lastPcmView);
    if (packet.length > out.length)
      throw new OpusCodecError('BUFFER_TOO_SMALL', `packet of ${packet.length} bytes`);
    out.set(packet);
    return packet.length;
  }

  setBitrate(bitsPerSecond: number): void {
    this.ctl(encoderCtlFor('bitrate', bitsPerSecond));
  }
  getBitrate(): number {
    return this.live().getBitrate();
  }
  setComplexity(complexity: number): void {
    this.ctl(encoderCtlFor('complexity', complexity));
  }
  setFec(enabled: boolean): void {
    this.ctl(encoderCtlFor('fec', enabled));
  }
  setPacketLossPercent(percent: number): void {
    this.ctl(encoderCtlFor('packetLossPercent', percent));
  }
  setDtx(enabled: boolean): void {
    this.ctl(encoderCtlFor('dtx', enabled));
  }

  /** The binding frees libopus state in its finalizer; we drop our reference. Idempotent. */
  destroy(): void {
    this.handle = null;
    this.lastPcm = null;
    this.lastPcmView = null;
  }
}

export class NativeOpusDecoder implements OpusDecoder {
  readonly backend = 'native' as const;
  readonly frameSamples: number;
  readonly supportsFec: boolean;
  private handle: DiscordOpusHandle | null;
  private lastToc = -1;
  private readonly plc1 = Buffer.alloc(1);
  private readonly plc2 = Buffer.alloc(2);

  constructor(mod: DiscordOpusModule, options: OpusDecoderOptions = {}) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    this.frameSamples = frameSamples;
    this.handle = new mod.OpusEncoder(OPUS_SAMPLE_RATE, 1);
    this.supportsFec = typeof this.handle.conceal === 'function';
  }

  private live(): DiscordOpusHandle {
    if (this.handle === null) throw new OpusCodecError('DESTROYED');
    return this.handle;
  }

  private copyOut(pcm: Buffer, out: Int16Array): number {
    const n = pcm.length >> 1;
    if (n > out.length) throw new OpusCodecError('BUFFER_TOO_SMALL', `${n} samples decoded`);
    if ((pcm.byteOffset & 1) === 0) {
      out.set(new Int16Array(pcm.buffer, pcm.byteOffset, n));
    } else {
      for (let i = 0; i < n; i++) out[i] = pcm.readInt16LE(i * 2);
    }
    return n;
  }

  decode(packet: Uint8Array, out: Int16Array, length: number = packet.length): number {
    const h = this.live();
    if (length === 0) return this.conceal(out);
    checkedDecodeSamples(packet, length, out);
    let pcm: Buffer;
    try {
      pcm = h.decode(bufferView(packet, length));
    } catch (err) {
      throw codecFailed(err);
    }
    this.lastToc = packet[0]!;
    return this.copyOut(pcm, out);
  }

  conceal(out: Int16Array): number {
    const h = this.live();
    if (out.length < this.frameSamples) throw new OpusCodecError('BUFFER_TOO_SMALL');
    let pcm: Buffer;
    try {
      if (h.conceal !== undefined) {
        pcm = h.conceal(this.frameSamples, null);
      } else if (writeConcealmentPacket(this.lastToc, this.frameSamples, this.plc2) === 1) {
        this.plc1[0] = this.plc2[0]!;
        pcm = h.decode(this.plc1);
      } else {
        pcm = h.decode(this.plc2);
      }
    } catch (err) {
      throw codecFailed(err);
    }
    return this.copyOut(pcm, out);
  }

  decodeFec(next: Uint8Array, out: Int16Array, length: number = next.length): number {
    const h = this.live();
    if (h.conceal === undefined || length === 0) return this.conceal(out);
    if (out.length < this.frameSamples) throw new OpusCodecError('BUFFER_TOO_SMALL');
    let pcm: Buffer;
    try {
      pcm = h.conceal(this.frameSamples, bufferView(next, length));
    } catch (err) {
      throw codecFailed(err);
    }
    return this.copyOut(pcm, out);
  }

  reset(): void {
    this.live().applyDecoderCTL(OpusCtl.RESET_STATE, 0);
    this.lastToc = -1;
  }

  destroy(): void {
    this.handle = null;
  }
}

export class NativeOpusFactory implements OpusFactory {
  readonly backend = 'native' as const;
  readonly description = '@discordjs/opus (native libopus)';
  private readonly defaults: Required<OpusEncoderSettings>;

  constructor(
    private readonly mod: DiscordOpusModule,
    defaults: Partial<OpusEncoderSettings> = {},
  ) {
    this.defaults = { ...DEFAULT_ENCODER_SETTINGS, ...defaults };
  }

  createEncoder(options?: OpusEncoderOptions): NativeOpusEncoder {
    return new NativeOpusEncoder(this.mod, options, this.defaults);
  }

  createDecoder(options?: OpusDecoderOptions): NativeOpusDecoder {
    return new NativeOpusDecoder(this.mod, options);
  }
}
