import type { OpusFactory } from '@voice/media';
import type { EncoderSlot } from './member.js';

/** An encoder unused for this many ticks is freed (its stream ended). */
export const ENCODER_IDLE_TICKS = 100;

/**
 * A channel's mix encoders, one per distinct mix stream (the shared mix, a speaker's mix-minus, a
 * listener's own volumes): created when a stream first needs one, freed once unused, bounded by the
 * channel's members (each stream key names a member or a mix group).
 */
export class MixEncoders {
  readonly #slots = new Map<string, EncoderSlot>();
  #bitrate: number;
  #complexity: number;

  constructor(
    private readonly opus: OpusFactory,
    private readonly frameSamples: number,
    bitrate: number,
    complexity: number,
  ) {
    this.#bitrate = bitrate;
    this.#complexity = complexity;
  }

  get size(): number {
    return this.#slots.size;
  }

  /** The encoder of stream `key`, created on first use. */
  get(key: string): EncoderSlot {
    let slot = this.#slots.get(key);
    if (!slot) {
      slot = {
        encoder: this.opus.createEncoder({
          frameSamples: this.frameSamples,
          bitrate: this.#bitrate,
          complexity: this.#complexity,
          // FEC would put every mix encoder in hybrid mode, about 4x the encode time per tick; the
          // downstream leg is one hop and clients conceal. Upstream FEC (clients') is decoded.
          fec: false,
        }),
        pcm: new Int16Array(this.frameSamples),
        prevPcm: new Int16Array(this.frameSamples),
        out: new Uint8Array(1000),
        len: 0,
        // Not run yet: primed before its first frame when a listener switches onto it.
        lastTick: -2,
        prevTick: -2,
      };
      this.#slots.set(key, slot);
    }
    return slot;
  }

  /** Live settings: every encoder changes at once. */
  setBitrate(bitrate: number): void {
    this.#bitrate = bitrate;
    for (const slot of this.#slots.values()) slot.encoder.setBitrate(bitrate);
  }

  setComplexity(complexity: number): void {
    this.#complexity = complexity;
    for (const slot of this.#slots.values()) slot.encoder.setComplexity(complexity);
  }

  /** Frees the encoders no stream used for ENCODER_IDLE_TICKS ticks before `tick`. */
  freeIdle(tick: number): void {
    for (const [key, slot] of this.#slots) {
      if (tick - slot.lastTick > ENCODER_IDLE_TICKS) {
        slot.encoder.destroy();
        this.#slots.delete(key);
      }
    }
  }

  close(): void {
    for (const slot of this.#slots.values()) slot.encoder.destroy();
    this.#slots.clear();
  }
}
