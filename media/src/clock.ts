import { Worker } from 'node:worker_threads';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import { loadNativeTimer, type NativeTimerHandle, type VoiceTimerAddon } from './timer-native.js';

/** Passed to `onTick`. The same object is reused for every tick: copy what you keep. */
export interface Tick {
  /** Tick number k; it was due at start + (k + 1) * period (+ the `shift()`s). Skipped ticks' numbers are not seen. */
  index: number;
  /** When it was due, ms since `start()` (hrtime-based). */
  dueMs: number;
  /** How late it fired, ms (>= 0). */
  latenessMs: number;
  /** Ticks skipped just before this one because the loop was more than `maxLatePeriods` behind. */
  skipped: number;
}

export type TickerWake = 'timer' | 'thread' | 'timerfd';

export interface TickerOptions {
  /** Period, ms (e.g. 10 or 20). */
  readonly periodMs: number;
  readonly onTick: (tick: Tick) => void;
  /** A tick due more than this many periods ago is skipped instead of replayed (default 3). */
  readonly maxLatePeriods?: number;
  /**
   * What wakes the loop for a tick. `timer` (default): setTimeout, whose 1 ms granularity makes
   * ticks 0.5-1 ms late (p99 1-2 ms). `thread`: a metronome thread sleeping in Atomics.wait (ns
   * timeouts) posts a message at each due time: p50 0.1 ms, p99 0.3 ms, no more CPU. It costs one
   * worker thread per ticker (~30 ms to start, timers cover that), so use one per process, not one
   * per channel. `timerfd`: a timerfd(2) on the main loop (our addon, media/native/voice_timer.c)
   * armed at each due time: the thread's precision without the thread, its message or a wake-up
   * on a second thread; where the addon is missing (not built, not Linux) it falls back to
   * `thread` (see `wakeBy`). Neither with an injected `now`.
   */
  readonly wake?: TickerWake;
  /** The timer addon for `timerfd` (default: `loadNativeTimer()`; null: none, fall back). */
  readonly nativeTimer?: VoiceTimerAddon | null;
  /** Called when `onTick` throws; the ticker keeps going either way. */
  readonly onError?: (err: unknown) => void;
  /** Monotonic clock in milliseconds (default `performance.now`); injectable for tests. */
  readonly now?: () => number;
  /**
   * Tick indices repeat with this period (1..31) and only those marked with `setActive` fire: the
   * ticker (and its metronome thread) sleeps through the others instead of waking for nothing,
   * and with none marked it does not wake at all, keeping its grid (the first tick after a phase
   * is marked again is on the same grid, with no skip counted). Default 0: every tick fires.
   */
  readonly activePeriod?: number;
  /** Unref the timers so the ticker alone does not keep the process alive (default false). */
  readonly unref?: boolean;
}

export interface TickerStats {
  readonly ticks: number;
  readonly skipped: number;
  readonly errors: number;
  /** Lateness per fired tick, ms. */
  readonly lateness: HistogramSnapshot;
}

/**
 * Drift-free periodic ticker: tick k is due at start + (k + 1) * period on the monotonic hrtime clock,
 * so timer error never accumulates (unlike setInterval). It is woken by setTimeout or by a metronome
 * thread (see `wake`). Lateness goes into a histogram for p50/p99 metrics. If the loop falls
 * more than `maxLatePeriods` behind, the missed ticks are counted and skipped rather than replayed in a
 * burst. `close()` is idempotent.
 *
 * Nothing is allocated per tick on the ticker's side (time is a float from performance.now, the
 * tick object is reused); with `activePeriod`, idle phases cost no wake-up at all.
 */
export class Ticker {
  readonly periodMs: number;
  private readonly onTick: (tick: Tick) => void;
  private readonly onError: ((err: unknown) => void) | undefined;
  private readonly maxLate: number;
  #wakeBy: TickerWake;
  /** The `nativeTimer` option until start, then the addon found (null: none). */
  private nativeTimer: VoiceTimerAddon | null | undefined;
  /** The armed timerfd (`timerfd` wake, once started). */
  private fd: NativeTimerHandle | null = null;
  private readonly clock: () => number;
  private readonly unref: boolean;
  private readonly tick: Tick = { index: 0, dueMs: 0, latenessMs: 0, skipped: 0 };
  private readonly lateness = new Histogram({ bucketWidth: 0.02, buckets: 5000 });
  private origin = 0;
  /** Sum of the `shift()`s: tick k is due at (k + 1) * period + offset after start. */
  private offset = 0;
  /** First tick index not fired yet. */
  private k = 0;
  /** Ticks jumped over and not yet reported (the next fired tick carries them). */
  private pendingSkipped = 0;
  private readonly activePeriod: number;
  /**
   * Shared with the metronome thread: [0] stop flag, [1] active phases (bit i: indices = i mod
   * activePeriod), [2] change counter the thread sleeps on.
   */
  private readonly ctl = new Int32Array(new SharedArrayBuffer(12));
  private state: 'new' | 'running' | 'closed' = 'new';
  /** When the last active phase was cleared (`activePeriod`; elapsed ms): see `setActive`. */
  private idleSince = 0;
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private metronome: Metronome | null = null;
  private nTicks = 0;
  private nSkipped = 0;
  private nErrors = 0;
  private readonly wake = (): void => {
    this.timer = null;
    this.immediate = null;
    this.poll();
  };
  /** The timerfd fired (called by the addon: must not throw). A pending immediate polls anyway. */
  private readonly fdWake = (): void => {
    if (this.immediate !== null) return;
    try {
      this.poll();
    } catch (err) {
      this.nErrors++;
      try {
        this.onError?.(err);
      } catch {
        // The clock goes on.
      }
    }
  };

  constructor(options: TickerOptions) {
    const {
      periodMs,
      onTick,
      maxLatePeriods = 3,
      wake = 'timer',
      onError,
      now,
      unref = false,
      activePeriod = 0,
    } = options;
    if (!Number.isInteger(activePeriod) || activePeriod < 0 || activePeriod > 31)
      throw new TypeError('activePeriod must be an integer in 0..31');
    if (!(periodMs >= 1) || !Number.isFinite(periodMs)) throw new TypeError('periodMs must be >= 1');
    if (!(maxLatePeriods >= 1)) throw new TypeError('maxLatePeriods must be >= 1');
    if (wake !== 'timer' && wake !== 'thread' && wake !== 'timerfd')
      throw new TypeError(`unknown wake: ${String(wake)}`);
    if (wake !== 'timer' && now)
      throw new TypeError(`wake "${wake}" runs on the real clock, not an injected one`);
    this.periodMs = periodMs;
    this.onTick = onTick;
    this.onError = onError;
    this.maxLate = maxLatePeriods;
    this.#wakeBy = wake;
    this.nativeTimer = options.nativeTimer;
    this.clock = now ?? (() => performance.now());
    this.unref = unref;
    this.activePeriod = activePeriod;
  }

  /** Marks phase `phase` (tick index mod `activePeriod`) as firing or idle. */
  setActive(phase: number, active: boolean): void {
    if (this.activePeriod === 0 || !Number.isInteger(phase) || phase < 0 || phase >= this.activePeriod)
      throw new TypeError(`phase must be an integer in 0..${this.activePeriod - 1}`);
    const bit = 1 << phase;
    const none = this.ctl[1] === 0;
    // The first phase marked after none was for a period or more: the time spent idle is no skip,
    // resume at now. (Not after a mark cleared and set again at once, as a task moving between
    // slots does: a tick due meanwhile must still fire.)
    if (active && none && this.state === 'running') {
      const now = this.elapsedMs();
      const current = Math.floor((now - this.offset) / this.periodMs);
      if (now - this.idleSince >= this.periodMs && current > this.k) this.k = current;
    }
    if (active) Atomics.or(this.ctl, 1, bit);
    else Atomics.and(this.ctl, 1, ~bit);
    if (!active && !none && this.ctl[1] === 0) this.idleSince = this.elapsedMs();
    // Wake the metronome: a newly active phase may be due before the one it sleeps towards.
    Atomics.add(this.ctl, 2, 1);
    Atomics.notify(this.ctl, 2);
    if (this.state === 'running' && active && this.metronome?.beating !== true && this.immediate === null) {
      // (With timerfd: re-aimed at once, the newly active phase may be due first.)
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      this.poll();
    }
  }

  /** The first index at or after `k` whose phase is active (all are, without `activePeriod`). */
  private nextActive(k: number): number {
    const p = this.activePeriod;
    if (p === 0) return k;
    const mask = this.ctl[1]!;
    if (mask === 0) return k; // poll() never asks while none is active; a loop with none would not end
    while (((mask >>> (k % p)) & 1) === 0) k++;
    return k;
  }

  get running(): boolean {
    return this.state === 'running';
  }

  /** What wakes it: the option, or `thread` once started where `timerfd` found no addon. */
  get wakeBy(): TickerWake {
    return this.#wakeBy;
  }

  /**
   * The clock's reading (performance.now unless injected) at `start()`: a tick was due at
   * `startedAtMs + tick.dueMs` on that clock, exactly, where `now - latenessMs` reads it again.
   */
  get startedAtMs(): number {
    return this.origin;
  }

  /** Starts ticking; the first tick is due one period from now. Calling it again does nothing. */
  start(): this {
    if (this.state !== 'new') return this;
    this.state = 'running';
    // The metronome thread keeps time on hrtime (CLOCK_MONOTONIC, shared by all threads); read it
    // with the main clock so both count from the same instant. The only BigInt, once per start.
    const hrOrigin = process.hrtime.bigint();
    this.origin = this.clock();
    this.k = 0;
    if (this.#wakeBy === 'timerfd') this.startTimerfd();
    if (this.#wakeBy === 'thread') this.startMetronome(hrOrigin);
    this.poll();
    return this;
  }

  /** Stops ticking; idempotent. A tick in progress completes. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    Atomics.store(this.ctl, 0, 1);
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.immediate !== null) clearImmediate(this.immediate);
    this.timer = null;
    this.immediate = null;
    this.metronome?.stop();
    this.metronome = null;
    if (this.fd !== null) this.nativeTimer?.close(this.fd);
    this.fd = null;
  }

  stats(): TickerStats {
    return {
      ticks: this.nTicks,
      skipped: this.nSkipped,
      errors: this.nErrors,
      lateness: this.lateness.snapshot(),
    };
  }

  /** Forgets the lateness recorded so far (e.g. after a warm-up); counters keep going. */
  resetLateness(): void {
    this.lateness.reset();
  }

  /**
   * Moves every later tick by `ms` (negative: earlier), less than one period either way: a sender
   * changes the phase at which it cuts frames (a timing advance) without a gap in tick indices. A
   * tick moved into the past fires at once. With the `timer` or `timerfd` wake, not `thread` (the
   * metronome thread keeps its own grid; so does a `timerfd` ticker that fell back to it).
   */
  shift(ms: number): void {
    if (!Number.isFinite(ms) || Math.abs(ms) >= this.periodMs)
      throw new TypeError(`shift must be a finite number of ms within one period (${this.periodMs})`);
    if (this.#wakeBy === 'thread') throw new TypeError('shift needs wake "timer" or "timerfd"');
    this.offset += ms;
    if (this.state !== 'running') return;
    if (this.timer !== null) {
      // The armed timer aims at the old due time: aim again.
      clearTimeout(this.timer);
      this.timer = null;
      this.poll();
    } else if (this.fd !== null && this.immediate === null) this.poll();
  }

  private elapsedMs(): number {
    return this.clock() - this.origin;
  }

  private startTimerfd(): void {
    const addon = this.nativeTimer === undefined ? loadNativeTimer() : this.nativeTimer;
    this.nativeTimer = addon;
    if (addon === null) {
      this.#wakeBy = 'thread';
      return;
    }
    this.fd = addon.create(this.fdWake);
    if (this.unref) addon.unref(this.fd, true);
  }

  private startMetronome(hrOrigin: bigint): void {
    const m = new Metronome(this.ctl, hrOrigin, this.periodMs, this.activePeriod, this.unref, {
      // Until the thread runs (tens of ms) the timer path keeps time; from its first beat on, it wakes us.
      beat: () => {
        if (this.metronome !== m || this.state !== 'running') return;
        if (this.timer !== null) clearTimeout(this.timer);
        this.timer = null;
        if (this.immediate === null) this.poll();
      },
      failed: (err) => {
        if (this.metronome !== m) return;
        this.metronome = null;
        this.nErrors++;
        this.onError?.(err);
        // Back to timers: the clock must not stop because its helper thread did.
        if (this.state === 'running' && this.timer === null && this.immediate === null) this.poll();
      },
    });
    this.metronome = m;
  }

  private poll(): void {
    if (this.state !== 'running') return;
    // No phase active: nothing to wake for until `setActive` marks one.
    if (this.activePeriod > 0 && this.ctl[1] === 0) return;
    const now = this.elapsedMs();
    // Idle phases are passed over without firing; `this.k` moves only when a tick fires, so a
    // phase that becomes active meanwhile is still found.
    let k = this.nextActive(this.k);
    let due = (k + 1) * this.periodMs + this.offset;
    if (now - due > this.maxLate * this.periodMs) {
      // Jump to the most recent due tick instead of bursting through the missed ones.
      const latest = Math.floor((now - this.offset) / this.periodMs) - 1;
      this.pendingSkipped += latest - this.k;
      this.nSkipped += latest - this.k;
      this.k = latest;
      k = this.nextActive(latest);
      due = (k + 1) * this.periodMs + this.offset;
    }
    const wait = due - now;
    // A beat can land a few microseconds early (two threads reading the clock): that is on time.
    if (wait > 0.02) {
      if (this.fd !== null) {
        this.nativeTimer!.arm(this.fd, wait);
        return;
      }
      if (this.metronome?.beating) return; // its next beat wakes us
      this.timer = setTimeout(this.wake, Math.max(1, Math.floor(wait)));
      if (this.unref) this.timer.unref();
      return;
    }
    this.k = k;
    const skipped = this.pendingSkipped;
    this.pendingSkipped = 0;
    const t = this.tick;
    t.index = this.k;
    t.dueMs = due;
    t.latenessMs = Math.max(0, now - due);
    t.skipped = skipped;
    this.lateness.record(t.latenessMs);
    this.nTicks++;
    this.k++;
    try {
      this.onTick(t);
    } catch (err) {
      this.nErrors++;
      try {
        this.onError?.(err);
      } catch {
        // A failing error handler must not stop the clock either.
      }
    }
    if (this.state !== 'running') return;
    // Yield to I/O before the next check, even when the next tick is already due. Never unref an
    // immediate: libuv's poll phase would then block until some other event.
    this.immediate = setImmediate(this.wake);
  }
}

/**
 * The metronome thread: sleeps in Atomics.wait until each due time on the shared monotonic clock
 * (hrtime is CLOCK_MONOTONIC in every thread) and posts the beat. It skips rather than bursts when
 * it falls behind; the ticker decides what is due, so a lost or extra beat is harmless.
 */
const METRONOME_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
const { ctl, origin, periodNs, activePeriod } = workerData;
let next = 0;
parentPort.postMessage(-1);
while (Atomics.load(ctl, 0) === 0) {
  const version = Atomics.load(ctl, 2);
  const mask = Atomics.load(ctl, 1);
  if (activePeriod > 0 && mask === 0) {
    // Nothing active: sleep until a phase is marked (or stop), then resume from the latest tick
    // due (a mark cleared and set again at once must not lose the beat of a tick due meanwhile).
    Atomics.wait(ctl, 2, version);
    const due = Math.floor(Number(process.hrtime.bigint() - origin) / periodNs) - 1;
    if (due > next) next = due;
    continue;
  }
  let k = next;
  if (activePeriod > 0) while (((mask >>> (k % activePeriod)) & 1) === 0) k++;
  const now = process.hrtime.bigint();
  const due = origin + BigInt(Math.round((k + 1) * periodNs));
  if (due > now) {
    // Sleeps until due, or until the active phases change (or stop is set).
    Atomics.wait(ctl, 2, version, Number(due - now) / 1e6);
    continue;
  }
  const behind = Number(now - due) / periodNs;
  if (behind > 1) k += Math.floor(behind);
  parentPort.postMessage(k);
  next = k + 1;
}
`;

class Metronome {
  /** Not private, for fault-injection tests. */
  readonly worker: Worker;
  #beating = false;
  #stopped = false;

  constructor(
    private readonly ctl: Int32Array,
    origin: bigint,
    periodMs: number,
    activePeriod: number,
    unref: boolean,
    on: { beat: () => void; failed: (err: unknown) => void },
  ) {
    this.worker = new Worker(METRONOME_SOURCE, {
      eval: true,
      workerData: { ctl, origin, periodNs: periodMs * 1e6, activePeriod },
      // The thread needs almost nothing: keep its heap small.
      resourceLimits: { maxOldGenerationSizeMb: 8, maxYoungGenerationSizeMb: 1 },
    });
    if (unref) this.worker.unref();
    this.worker.on('message', (k: number) => {
      if (k < 0) return; // started; the first real beat switches the ticker over
      this.#beating = true;
      on.beat();
    });
    const fail = (err: unknown) => {
      if (this.#stopped) return;
      this.#stopped = true;
      this.#beating = false;
      on.failed(err);
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`metronome thread exited (${code})`)));
  }

  /** True once beats arrive: the ticker then stops arming timers. */
  get beating(): boolean {
    return this.#beating;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#beating = false;
    Atomics.store(this.ctl, 0, 1);
    Atomics.add(this.ctl, 2, 1);
    Atomics.notify(this.ctl, 2);
    void this.worker.terminate();
  }
}
