import type { PlayoutHook } from '@voice/client';

export interface ClickMeterOptions {
  /** Clicks are captured on multiples of this period of the shared clock (see Talker). */
  readonly clickPeriodMs: number;
  /** performance.now() to the shared monotonic clock. */
  readonly toMono: (perfMs: number) => number;
  /** A click onset is the first sample at or above this amplitude (linear, 0..1) after quiet. */
  readonly threshold: number;
  /** Samples at or above this amplitude count as audio (for the first-audio time). */
  readonly audible: number;
  /** Quiet needed before an onset counts, ms (the click's own ringing is not a second onset). */
  readonly quietMs?: number;
  /** Called with the delay of each click heard, ms. */
  readonly onDelay: (ms: number) => void;
}

/**
 * Measures what a user hears, from the playout hook: the end-to-end delay of each click (played
 * instant minus the instant it was captured, both on the shared clock) and when audio was first
 * played. A delay longer than the click period would alias onto the next click: such runs show as
 * delays near zero and a click count above expectations, which the report flags.
 */
export class ClickMeter {
  /** Shared-clock time of the first audible sample played, NaN until then. */
  firstAudioAt = Number.NaN;
  clicksHeard = 0;
  private quiet = 0;
  private readonly quietSamples: number;
  private readonly thr: number;
  private readonly audible: number;

  constructor(private readonly o: ClickMeterOptions) {
    if (!(o.threshold > 0 && o.threshold <= 1)) throw new TypeError('threshold must be in (0, 1]');
    if (!(o.audible > 0 && o.audible < o.threshold)) throw new TypeError('audible must be in (0, threshold)');
    if (!(o.clickPeriodMs > 0)) throw new TypeError('clickPeriodMs must be > 0');
    this.thr = Math.round(o.threshold * 32767);
    this.audible = Math.round(o.audible * 32767);
    this.quietSamples = Math.round((o.quietMs ?? 30) * 48);
    this.quiet = this.quietSamples;
  }

  readonly hook: PlayoutHook = (pcm, samples, playTime) => {
    const thr = this.thr;
    for (let i = 0; i < samples; i++) {
      const x = pcm[i]!;
      const a = x < 0 ? -x : x;
      if (a < thr) {
        if (a >= this.audible && Number.isNaN(this.firstAudioAt))
          this.firstAudioAt = this.o.toMono(playTime + i / 48);
        this.quiet++;
        continue;
      }
      if (Number.isNaN(this.firstAudioAt)) this.firstAudioAt = this.o.toMono(playTime + i / 48);
      if (this.quiet >= this.quietSamples) {
        const at = this.o.toMono(playTime + i / 48);
        const p = this.o.clickPeriodMs;
        this.clicksHeard++;
        this.o.onDelay(at - Math.floor(at / p) * p);
      }
      this.quiet = 0;
    }
  };
}
