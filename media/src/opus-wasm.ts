import { createRequire } from 'node:module';
import type {
  OpusDecoder,
  OpusDecoderOptions,
  OpusEncoder,
  OpusEncoderOptions,
  OpusEncoderSettings,
  OpusFactory,
} from './codec.js';
import { MediaError, OpusCodecError } from './errors.js';
import {
  assertFrameSamples,
  DEFAULT_ENCODER_SETTINGS,
  encoderCtlFor,
  OPUS_APPLICATION_VOIP,
  checkedDecodeSamples,
  OPUS_MAX_PACKET_SAMPLES,
  OPUS_SAMPLE_RATE,
  OpusCtl,
  writeConcealmentPacket,
} from './opus-packet.js';

/**
 * The opusscript backend, driven through its WebAssembly module directly rather than through the
 * `OpusScript` class, for three reasons measured on opusscript 0.1.1:
 *
 * 1. `OpusScript` keeps typed-array views of the WASM heap made at construction. The module is built
 *    with ALLOW_MEMORY_GROWTH, so once enough instances exist (about 300 handlers here) the heap grows,
 *    the old views are detached, and every earlier instance throws "Cannot perform
 *    %TypedArray%.prototype.set on a detached ArrayBuffer". We read `Module.HEAPU8` / `HEAP16` afresh
 *    on each call instead.
 * 2. `OpusScript.decode` copies into a new Buffer per call and caps at 60 ms; we copy into the caller's
 *    Int16Array.
 * 3. Concealment: the handler always calls `opus_decode(..., frame_size = 5760, decode_fec = 0)`, so an
 *    empty packet conceals 120 ms (the JS wrapper then truncates that to 2880 samples = 60 ms) and moves
 *    the decoder 120 ms ahead; a second loss in a row then comes out as silence. We conceal by decoding
 *    a packet whose frame has zero bytes (see `writeConcealmentPacket`): libopus conceals exactly one
 *    frame. Measured (media/test/codec.test.ts): its samples equal the first frame of the 120 ms
 *    concealment, the decoder's last packet duration is one frame, and consecutive losses fade the way
 *    libopus intends (20 ms frames of a steady two-tone signal: -1.4, -6.6, -22.6, -39, -52 dB) instead
 *    of going silent from the second lost frame (keeping the first frame of each 120 ms concealment
 *    gives -1.4 dB, then below -40 dB). After the loss the output matches the lossless decode again
 *    (SNR > 40 dB) within 3-4 frames.
 *
 * FEC cannot be decoded: the handler hard-codes `decode_fec = 0`, so `supportsFec` is false and
 * `decodeFec()` conceals.
 *
 * Handler ABI (src/opusscript_encoder.cpp): `_encode(pcmPtr, bytes, outPtr, frameSize)` first packs
 * `bytes` byte-per-int16 slots into int16 samples, so with `bytes = 0` it encodes int16 samples as they
 * are; `_decode(inPtr, len, outPtr)` writes each decoded sample as two int16 slots (low byte, high byte).
 */

interface EmHandler {
  _encode(pcmPtr: number, bytes: number, outPtr: number, frameSize: number): number;
  _decode(inPtr: number, bytes: number, outPtr: number): number;
  _encoder_ctl(ctl: number, arg: number): number;
  _decoder_ctl(ctl: number, arg: number): number;
}

interface EmHandlerClass {
  new (sampleRate: number, channels: number, application: number): EmHandler;
  destroy_handler(handler: EmHandler): void;
}

/** The parts of opusscript's Emscripten module we use. */
export interface OpusscriptModule {
  readonly HEAPU8: Uint8Array;
  readonly HEAP16: Int16Array;
  readonly HEAP32: Int32Array;
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  readonly OpusScriptHandler: EmHandlerClass;
}

function isOpusscriptModule(m: unknown): m is OpusscriptModule {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Record<string, unknown>;
  return (
    typeof r._malloc === 'function' &&
    typeof r._free === 'function' &&
    typeof r.OpusScriptHandler === 'function' &&
    r.HEAPU8 instanceof Uint8Array
  );
}

/** Instantiates a fresh copy of opusscript's WASM module (synchronous; about 5 ms). */
export function loadOpusscriptModule(): OpusscriptModule {
  const require = createRequire(import.meta.url);
  const factory: unknown = require('opusscript/build/opusscript_native_wasm.js');
  if (typeof factory !== 'function') {
    throw new MediaError('CODEC_UNAVAILABLE', 'opusscript/build/opusscript_native_wasm.js is not a factory');
  }
  const mod: unknown = (factory as () => unknown)();
  if (!isOpusscriptModule(mod)) {
    throw new MediaError('CODEC_UNAVAILABLE', 'opusscript WASM module has an unexpected shape');
  }
  return mod;
}

// Per-coder scratch memory inside the WASM heap.
const PCM_BYTES = OPUS_MAX_PACKET_SAMPLES * 2 * 2; // decode writes 2 int16 slots per sample
const PACKET_BYTES = 4096; // >= OPUS_MAX_DECODE_BYTES (3828), what the handler allows opus_encode
const SCRATCH_BYTES = 16;

class WasmCoderBase {
  protected readonly m: OpusscriptModule;
  protected handler: EmHandler | null;
  protected readonly pcmPtr: number;
  protected readonly packetPtr: number;
  protected readonly scratchPtr: number;
  private readonly block: number;

  constructor(m: OpusscriptModule) {
    this.m = m;
    this.handler = new m.OpusScriptHandler(OPUS_SAMPLE_RATE, 1, OPUS_APPLICATION_VOIP);
    this.block = m._malloc(PCM_BYTES + PACKET_BYTES + SCRATCH_BYTES);
    if (this.block === 0) {
      m.OpusScriptHandler.destroy_handler(this.handler);
      throw new OpusCodecError('CODEC_FAILED', 'opusscript could not allocate its buffers');
    }
    this.pcmPtr = this.block;
    this.packetPtr = this.block + PCM_BYTES;
    this.scratchPtr = this.packetPtr + PACKET_BYTES;
  }

  protected live(): EmHandler {
    if (this.handler === null) throw new OpusCodecError('DESTROYED');
    return this.handler;
  }

  protected check(status: number, what: string): number {
    if (status < 0)
      throw new OpusCodecError('CODEC_FAILED', `${what} failed with libopus status ${status}`, status);
    return status;
  }

  destroy(): void {
    if (this.handler === null) return;
    this.m.OpusScriptHandler.destroy_handler(this.handler);
    this.m._free(this.block);
    this.handler = null;
  }
}

export class OpusscriptEncoder extends WasmCoderBase implements OpusEncoder {
  readonly backend = 'opusscript' as const;
  readonly frameSamples: number;

  constructor(
    m: OpusscriptModule,
    options: OpusEncoderOptions = {},
    defaults: Required<OpusEncoderSettings>,
  ) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    super(m);
    this.frameSamples = frameSamples;
    try {
      this.ctl(...encoderCtlFor('signal', options.signal ?? defaults.signal));
      this.setBitrate(options.bitrate ?? defaults.bitrate);
      this.setComplexity(options.complexity ?? defaults.complexity);
      this.setFec(options.fec ?? defaults.fec);
      this.setPacketLossPercent(options.packetLossPercent ?? defaults.packetLossPercent);
      this.setDtx(options.dtx ?? defaults.dtx);
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  private ctl(request: number, value: number): void {
    this.check(this.live()._encoder_ctl(request, value), `opus_encoder_ctl(${request})`);
  }

  /** Reads an integer GET ctl: the handler forwards its int argument, which libopus takes as the pointer. */
  private get32(request: number): number {
    this.ctl(request, this.scratchPtr);
    return this.m.HEAP32[this.scratchPtr >> 2]!;
  }

  encode(pcm: Int16Array, out: Uint8Array): number {
    const h = this.live();
    if (pcm.length !== this.frameSamples) {
      throw new TypeError(`encode expects ${this.frameSamples} samples, got ${pcm.length}`);
    }
    const m = this.m;
    m.HEAP16.set(pcm, this.pcmPtr >> 1);
    const len = this.check(h._encode(this.pcmPtr, 0, this.packetPtr, this.frameSamples), 'opus_encode');
    if (len > out.length) throw new OpusCodecError('BUFFER_TOO_SMALL', `packet of ${len} bytes`);
    const heap = m.HEAPU8;
    const base = this.packetPtr;
    for (let i = 0; i < len; i++) out[i] = heap[base + i]!;
    return len;
  }

  setBitrate(bitsPerSecond: number): void {
    this.ctl(...encoderCtlFor('bitrate', bitsPerSecond));
  }
  getBitrate(): number {
    return this.get32(OpusCtl.GET_BITRATE);
  }
  setComplexity(complexity: number): void {
    this.ctl(...encoderCtlFor('complexity', complexity));
  }
  setFec(enabled: boolean): void {
    this.ctl(...encoderCtlFor('fec', enabled));
  }
  setPacketLossPercent(percent: number): void {
    this.ctl(...encoderCtlFor('packetLossPercent', percent));
  }
  setDtx(enabled: boolean): void {
    this.ctl(...encoderCtlFor('dtx', enabled));
  }
  /** Encoder look-ahead in samples (312 = 6.5 ms for VOIP at 48 kHz). */
  lookaheadSamples(): number {
    return this.get32(OpusCtl.GET_LOOKAHEAD);
  }
}

export class OpusscriptDecoder extends WasmCoderBase implements OpusDecoder {
  readonly backend = 'opusscript' as const;
  readonly frameSamples: number;
  readonly supportsFec = false;
  private lastToc = -1;

  constructor(m: OpusscriptModule, options: OpusDecoderOptions = {}) {
    const frameSamples = options.frameSamples ?? 960;
    assertFrameSamples(frameSamples);
    super(m);
    this.frameSamples = frameSamples;
  }

  /** Runs the handler's decode on `len` bytes already at packetPtr and copies the samples out. */
  private run(h: EmHandler, len: number, out: Int16Array): number {
    const n = this.check(h._decode(this.packetPtr, len, this.pcmPtr), 'opus_decode');
    if (n > out.length) throw new OpusCodecError('BUFFER_TOO_SMALL', `${n} samples decoded`);
    const h16 = this.m.HEAP16;
    let j = this.pcmPtr >> 1;
    for (let i = 0; i < n; i++, j += 2) out[i] = (h16[j + 1]! << 8) | (h16[j]! & 0xff);
    return n;
  }

  decode(packet: Uint8Array, out: Int16Array, length: number = packet.length): number {
    const h = this.live();
    if (length === 0) return this.conceal(out);
    checkedDecodeSamples(packet, length, out);
    const heap = this.m.HEAPU8;
    if (length === packet.length) heap.set(packet, this.packetPtr);
    else for (let i = 0, p = this.packetPtr; i < length; i++) heap[p + i] = packet[i]!;
    const n = this.run(h, length, out);
    this.lastToc = packet[0]!;
    return n;
  }

  conceal(out: Int16Array): number {
    const h = this.live();
    if (out.length < this.frameSamples) throw new OpusCodecError('BUFFER_TOO_SMALL');
    const len = writeConcealmentPacket(this.lastToc, this.frameSamples, this.m.HEAPU8, this.packetPtr);
    return this.run(h, len, out);
  }

  decodeFec(_next: Uint8Array, out: Int16Array): number {
    return this.conceal(out);
  }

  reset(): void {
    this.check(this.live()._decoder_ctl(OpusCtl.RESET_STATE, 0), 'OPUS_RESET_STATE');
    this.lastToc = -1;
  }

  /** OPUS_GET_LAST_PACKET_DURATION: samples the last decode or concealment produced. */
  lastPacketDuration(): number {
    this.check(this.live()._decoder_ctl(OpusCtl.GET_LAST_PACKET_DURATION, this.scratchPtr), 'decoder ctl');
    return this.m.HEAP32[this.scratchPtr >> 2]!;
  }
}

export class OpusscriptFactory implements OpusFactory {
  readonly backend = 'opusscript' as const;
  readonly description = 'opusscript 0.1.1 (libopus 1.4, WebAssembly)';
  readonly module: OpusscriptModule;
  private readonly defaults: Required<OpusEncoderSettings>;

  constructor(
    module: OpusscriptModule = loadOpusscriptModule(),
    defaults: Partial<OpusEncoderSettings> = {},
  ) {
    this.module = module;
    this.defaults = { ...DEFAULT_ENCODER_SETTINGS, ...defaults };
  }

  createEncoder(options?: OpusEncoderOptions): OpusscriptEncoder {
    return new OpusscriptEncoder(this.module, options, this.defaults);
  }

  createDecoder(options?: OpusDecoderOptions): OpusscriptDecoder {
    return new OpusscriptDecoder(this.module, options);
  }
}
