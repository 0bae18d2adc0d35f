import type { Logger } from '../log.js';
import type { Config } from '../config.js';
import { TickScheduler, type ScheduledHandle, type ScheduledTask } from './scheduler.js';

/**
 * Scheduling: one clock per frame size, shared by the channels using it (see TickScheduler for
 * why channels share a clock and are spread over its phases).
 */
export class ChannelClocks {
  readonly #schedulers = new Map<number, TickScheduler>();

  constructor(
    private readonly clock: Config['clock'],
    private readonly log: Logger,
    /** Called after each tick's channels have run (see TickScheduler's `afterRun`). */
    private readonly afterTick: (() => void) | null = null,
    /** Each clock wake-up's lateness, ms (see TickScheduler's `onWake`). */
    private readonly onWake: ((latenessMs: number) => void) | null = null,
  ) {}

  /** Gives `task` a phase on the clock for `frameMs`; returns its handle and the clock's slot size. */
  add(frameMs: number, task: ScheduledTask): { handle: ScheduledHandle; slotMs: number } {
    const s = this.#scheduler(frameMs);
    return { handle: s.add(task), slotMs: s.slotMs };
  }

  #scheduler(frameMs: number): TickScheduler {
    let s = this.#schedulers.get(frameMs);
    if (!s) {
      const { slots, wake } = this.clock;
      s = new TickScheduler(
        frameMs,
        slots,
        (err) => this.log.error({ err }, 'tick scheduler failed'),
        wake,
        this.afterTick,
        this.onWake,
      );
      this.#schedulers.set(frameMs, s);
    }
    return s;
  }

  /** The wake-up lateness of the clock for `frameMs` alone (before any channel work). */
  lateness(frameMs: number): { p50: number; p99: number } {
    return this.#schedulers.get(frameMs)?.clockLateness() ?? { p50: 0, p99: 0 };
  }

  /** Benchmarks: measure the clocks from now on. */
  resetLateness(): void {
    for (const s of this.#schedulers.values()) s.resetClockLateness();
  }

  close(): void {
    for (const s of this.#schedulers.values()) s.close();
  }
}
