import type {
  OpusDecoder,
  OpusDecoderOptions,
  OpusEncoder,
  OpusEncoderOptions,
  OpusFactory,
} from '@voice/media';
import type { FrameBank } from './frame-bank.js';
import type { FrameCue } from './talker.js';

/**
 * An Opus "encoder" that copies the bank's pre-encoded frame named by the talker's cue: a user's
 * VoiceClient runs its real sender (pacing, sequence numbers, sealing) and costs no encode. Codec
 * setters are accepted and ignored: the frames were encoded once, at fixed settings.
 */
class BankEncoder implements OpusEncoder {
  readonly backend;
  readonly frameSamples: number;
  private destroyed = false;

  constructor(
    private readonly cue: FrameCue,
    frameSamples: number,
    backend: OpusEncoder['backend'],
  ) {
    this.backend = backend;
    this.frameSamples = frameSamples;
  }

  encode(_pcm: Int16Array, out: Uint8Array): number {
    if (this.destroyed) throw new Error('encoder destroyed');
    const frame = this.cue.frame;
    out.set(frame);
    return frame.length;
  }
  setBitrate(): void {}
  getBitrate(): number {
    return 0;
  }
  setComplexity(): void {}
  setFec(): void {}
  setPacketLossPercent(): void {}
  setDtx(): void {}
  destroy(): void {
    this.destroyed = true;
  }
}

/**
 * An OpusFactory for one load-test user: encoders send the shared bank's frames, decoders are the
 * real backend's (each user decodes and measures the mix it receives).
 */
export class PreEncodedOpus implements OpusFactory {
  readonly backend;
  readonly description: string;

  constructor(
    private readonly real: OpusFactory,
    private readonly bank: FrameBank,
    private readonly cue: FrameCue,
  ) {
    this.backend = real.backend;
    this.description = `pre-encoded frames; decoding with ${real.description}`;
  }

  createEncoder(options: OpusEncoderOptions = {}): OpusEncoder {
    const n = options.frameSamples ?? 960;
    if (n !== this.bank.frameSamples) {
      throw new TypeError(`the channel's frame (${n} samples) is not the bank's (${this.bank.frameSamples})`);
    }
    return new BankEncoder(this.cue, n, this.real.backend);
  }

  createDecoder(options?: OpusDecoderOptions): OpusDecoder {
    return this.real.createDecoder(options);
  }
}
