/** How often a watch looks by default, ms: a tenth of stallMs, at least 10. */
export function stallCheckMs(stallMs: number): number {
  return Math.max(10, Math.round(stallMs / 10));
}

/** A check this many periods late means our own event loop was blocked: that window is not judged. */
const LATE_CHECKS = 3;

/**
 * The latest a watch with the default check period reports a stall, ms after the device's last
 * period, while the event loop is not blocked: stallMs, plus a check period to look, plus the
 * lateness a check may have and still judge. A longer block restarts the window instead.
 */
export function stallReportWithinMs(stallMs: number): number {
  return stallMs + (1 + LATE_CHECKS) * stallCheckMs(stallMs);
}

export interface StallWatchOptions {
  /** This long without a period is a stall, ms. */
  readonly stallMs: number;
  /**
   * Nothing is judged this long after start, ms: a device may take its time to start (PulseAudio
   * took about 1.6 s here), and an output takes its first periods into buffers before it runs.
   */
  readonly startMs: number;
  /** How often to look, ms (default a tenth of stallMs, at least 10). */
  readonly checkMs?: number;
  /** Called once, with how long nothing came, ms. */
  readonly onStall: (silentMs: number) => void;
  readonly now?: () => number;
}

/**
 * Notices a sound device that stops running. When the sound server dies or a device wedges,
 * PortAudio's thread stops calling back and naudiodon reports nothing: no error, no end, the
 * stream just goes quiet. The stream calls `beat()` for each period; no period for `stallMs` is a
 * stall. A check that runs late means our own event loop was blocked (periods are queued behind
 * it, not missing): that window is not judged.
 */
export class StallWatch {
  private readonly now: () => number;
  private readonly checkMs: number;
  private timer: NodeJS.Timeout | null = null;
  private lastBeat = 0;
  private lastCheck = 0;
  private startedAt = 0;

  constructor(private readonly o: StallWatchOptions) {
    if (!(o.stallMs > 0) || !(o.startMs > 0)) throw new TypeError('stallMs and startMs must be > 0');
    this.now = o.now ?? (() => performance.now());
    this.checkMs = o.checkMs ?? stallCheckMs(o.stallMs);
  }

  start(): void {
    this.stop();
    this.lastBeat = this.lastCheck = this.startedAt = this.now();
    this.timer = setInterval(() => this.check(), this.checkMs);
    this.timer.unref();
  }

  /** One period went by. */
  beat(): void {
    this.lastBeat = this.now();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private check(): void {
    const now = this.now();
    const late = now - this.lastCheck > LATE_CHECKS * this.checkMs;
    this.lastCheck = now;
    if (late) {
      this.lastBeat = Math.max(this.lastBeat, now - this.checkMs);
      return;
    }
    const silent = now - this.lastBeat;
    if (now - this.startedAt < this.o.startMs || silent < this.o.stallMs) return;
    this.stop();
    this.o.onStall(Math.round(silent));
  }
}
