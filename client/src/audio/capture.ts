import { floatToI16Array, framesIn, toMonoFloat } from './convert.js';
import type { ProcessingChain } from './processing.js';
import { SincResampler } from './resampler.js';
import { checkStreamFormat, ENGINE_RATE, type StreamFormat } from './types.js';

/** Receives each processed 48 kHz mono frame (valid during the call only). */
export type FrameHandler = (pcm: Int16Array, captureTime: number) => void;

export interface CaptureChainOptions {
  readonly device: StreamFormat;
  /** Frame size at 48 kHz: 480 (10 ms) or 960 (20 ms). */
  readonly frameSamples: number;
  readonly processing: ProcessingChain;
  readonly onFrame: FrameHandler;
}

/** Largest device chunk converted in one go; longer chunks are taken in pieces. */
const SCRATCH_FRAMES = 8192;

/**
 * Device bytes in, processed 48 kHz mono frames out, as fast as the device delivers them: the device's
 * clock drives the sender (no timer), so capture needs no drift compensation of its own; the
 * receivers' jitter buffers follow our clock like any sender's.
 */
export class CaptureChain {
  readonly device: StreamFormat;
  readonly frameSamples: number;
  /** Frames handed to onFrame. */
  frames = 0;
  private readonly resampler: SincResampler | null;
  private readonly scratch = new Float32Array(SCRATCH_FRAMES);
  private readonly frame: Float32Array;
  private readonly pcm: Int16Array;
  private fill = 0;

  constructor(private readonly o: CaptureChainOptions) {
    checkStreamFormat(o.device);
    if (o.frameSamples !== 480 && o.frameSamples !== 960)
      throw new TypeError('frameSamples must be 480 or 960');
    this.device = o.device;
    this.frameSamples = o.frameSamples;
    this.frame = new Float32Array(o.frameSamples);
    this.pcm = new Int16Array(o.frameSamples);
    this.resampler =
      o.device.sampleRate === ENGINE_RATE
        ? null
        : new SincResampler({
            inRate: o.device.sampleRate,
            outRate: ENGINE_RATE,
            capacity: 4 * SCRATCH_FRAMES,
          });
  }

  /** Takes one device chunk (interleaved bytes); calls onFrame for every frame it completes. */
  write(chunk: Uint8Array, captureTime: number): void {
    const bpf = framesIn(chunk.byteLength, this.device);
    const frameBytes = chunk.byteLength / Math.max(1, bpf);
    for (let done = 0; done < bpf;) {
      const n = Math.min(SCRATCH_FRAMES, bpf - done);
      const part = chunk.subarray(done * frameBytes, (done + n) * frameBytes);
      toMonoFloat(part, this.device, this.scratch, n);
      done += n;
      if (this.resampler) {
        this.resampler.write(this.scratch, n);
        for (;;) {
          const got = this.resampler.read(this.frame, this.frameSamples - this.fill, this.fill);
          this.fill += got;
          if (this.fill < this.frameSamples) break;
          this.emit(captureTime);
        }
      } else {
        for (let i = 0; i < n;) {
          const k = Math.min(n - i, this.frameSamples - this.fill);
          this.frame.set(this.scratch.subarray(i, i + k), this.fill);
          this.fill += k;
          i += k;
          if (this.fill === this.frameSamples) this.emit(captureTime);
        }
      }
    }
  }

  private emit(captureTime: number): void {
    this.fill = 0;
    this.o.processing.process(this.frame, this.frameSamples);
    floatToI16Array(this.frame, this.pcm, this.frameSamples);
    this.frames++;
    this.o.onFrame(this.pcm, captureTime);
  }

  /** Forgets partial frames (after a device switch). */
  reset(): void {
    this.fill = 0;
    this.resampler?.reset();
  }
}
