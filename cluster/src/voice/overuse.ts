/**
 * CPU overuse detection for one channel, after WebRTC's OveruseFrameDetector: every channel shares
 * one event loop, so a channel whose ticks run long delays the channels due after it. When its mean
 * tick time over a window passes the budget, it lowers its encoders' complexity (the one cost it
 * controls: an Opus encode at complexity 9 costs about twice one at 5); when it has been well under
 * budget for several windows, it climbs back one step at a time towards the configured value.
 */
export interface OveruseOptions {
  /** Mean tick time above which the channel adapts down, ms. */
  readonly budgetMs: number;
  /** Ticks per decision (default 50: one second at 20 ms). */
  readonly windowTicks?: number;
  /** Never below this complexity (default 1). */
  readonly minComplexity?: number;
  /** Complexity steps per overuse decision (default 2: relief must come fast). */
  readonly downStep?: number;
  /** Calm windows (mean under half the budget) before one step back up (default 5). */
  readonly upAfterWindows?: number;
}

export class OveruseDetector {
  #configured: number;
  #effective: number;
  #sum = 0;
  #n = 0;
  #calm = 0;
  /** Times the complexity was lowered because of overuse. */
  adaptedDown = 0;
  readonly #budget: number;
  readonly #window: number;
  readonly #min: number;
  readonly #down: number;
  readonly #upAfter: number;

  constructor(configured: number, o: OveruseOptions) {
    if (!(o.budgetMs > 0)) throw new TypeError('budgetMs must be > 0');
    this.#budget = o.budgetMs;
    this.#window = o.windowTicks ?? 50;
    this.#min = o.minComplexity ?? 1;
    this.#down = o.downStep ?? 2;
    this.#upAfter = o.upAfterWindows ?? 5;
    this.#configured = configured;
    this.#effective = configured;
  }

  /** The complexity encoders should use now. */
  get complexity(): number {
    return this.#effective;
  }

  get overused(): boolean {
    return this.#effective < this.#configured;
  }

  /** The owner changed the channel's complexity: start from it again. */
  configure(complexity: number): void {
    this.#configured = complexity;
    this.#effective = complexity;
    this.#sum = 0;
    this.#n = 0;
    this.#calm = 0;
  }

  /** Records one tick's duration; returns true when `complexity` changed. */
  record(tickMs: number): boolean {
    this.#sum += tickMs;
    if (++this.#n < this.#window) return false;
    const mean = this.#sum / this.#n;
    this.#sum = 0;
    this.#n = 0;
    if (mean > this.#budget) {
      this.#calm = 0;
      const next = Math.max(Math.min(this.#min, this.#configured), this.#effective - this.#down);
      if (next === this.#effective) return false;
      this.#effective = next;
      this.adaptedDown++;
      return true;
    }
    if (mean < this.#budget / 2 && this.#effective < this.#configured) {
      if (++this.#calm < this.#upAfter) return false;
      this.#calm = 0;
      this.#effective++;
      return true;
    }
    this.#calm = 0;
    return false;
  }
}
