import { Ticker, type Tick, type TickerWake } from '@voice/media';

export interface ScheduledHandle {
  readonly slot: number;
  /** Moves up to `slots` phases earlier, less if the target phase is crowded; returns the move. */
  advance(slots: number): number;
  /**
   * `true`: this task's tick is cheap and its phase does not matter (a channel that mixes nothing),
   * so it joins the one slot such tasks share: the clock wakes once a frame for all of them instead
   * of once per slot. `false`: back to the least loaded slot. Called from the task's own `due`.
   */
  share(on: boolean): void;
  /** In the shared slot. */
  readonly shared: boolean;
  /**
   * `true`: the task is not called until woken (a channel nobody speaks in); it keeps its slot, so
   * it wakes at the same phase, and a slot whose tasks all sleep costs no wake-up. `false`: due
   * again from its slot's next wake-up.
   */
  sleep(on: boolean): void;
  readonly asleep: boolean;
  remove(): void;
}

export interface ScheduledTask {
  /** Called when the task's slot is due; `dueAt` is on the performance.now() clock. */
  due(dueAt: number): void;
}

/**
 * The most tasks one slot holds that `share()`: they run back to back, so the last one's tick waits
 * for the others (a channel that only streams ticks in about 10-20 µs: 16 of them, under 0.5 ms).
 */
export const SHARED_SLOT_TASKS = 16;

/**
 * One drift-free clock for every channel with the same frame size. The frame is cut into `slots`
 * phases and each channel gets the least loaded one, so channel ticks are spread over the frame
 * instead of colliding: independent per-channel timers made the p99 tick lateness grow with the
 * number of channels (timer wake-ups queued behind each other's work).
 */
export class TickScheduler {
  readonly #slots: ScheduledTask[][];
  /** Phases per frame: as asked, but at most one per millisecond (the clock's finest period). */
  readonly slotCount: number;
  #ticker: Ticker | null = null;
  #size = 0;
  #lastTickerP99 = 0;
  /** Per slot, the tasks in it that `share()`: a slot with some takes more, up to SHARED_SLOT_TASKS. */
  readonly #sharedIn: number[];
  /** Per slot, its sleeping tasks (out of the slot's list, still its load). */
  readonly #asleepIn: number[];
  /** The slot running now (-1 outside a wake-up): a task moved to a later slot skips it this frame. */
  #runningSlot = -1;
  /** Tasks moved into a slot still to run in this frame: not run again until the next frame. */
  readonly #skipOnce = new Set<ScheduledTask>();

  constructor(
    readonly frameMs: number,
    slots = 8,
    private readonly onError: (err: unknown) => void = () => {},
    /** `timerfd` or `thread`: sub-ms wake-ups (a timerfd on the loop, a metronome thread), not 1 ms-granular timers. */
    private readonly wake: TickerWake = 'timer',
    /**
     * Runs right after the tasks due at a wake-up (their `due` calls do their work): the voice
     * plane sends the tick's batched packets there. Work a task defers is not waited for.
     */
    private readonly afterRun: (() => void) | null = null,
    /**
     * Each wake-up's lateness (due time to the loop running it), ms: the server's event loop
     * delay figures sample it instead of waking on a timer of their own.
     */
    private readonly onWake: ((latenessMs: number) => void) | null = null,
  ) {
    if (!Number.isInteger(slots) || slots < 1) throw new TypeError('slotCount must be a positive integer');
    this.slotCount = Math.max(1, Math.min(slots, Math.floor(frameMs)));
    this.#slots = Array.from({ length: this.slotCount }, () => []);
    this.#sharedIn = new Array<number>(this.slotCount).fill(0);
    this.#asleepIn = new Array<number>(this.slotCount).fill(0);
  }

  /** The clock runs only while some channel is active: an idle home server does not wake at all. */
  #startClock(): void {
    this.#ticker = new Ticker({
      periodMs: this.frameMs / this.slotCount,
      onTick: (t) => this.#run(t),
      onError: this.onError,
      // A late slot still runs; only a whole lost frame is skipped (a channel never ticks twice at once).
      maxLatePeriods: this.slotCount,
      wake: this.wake,
      unref: true,
      // Wake only for phases that have channels: one channel costs 1/frame wake-ups, not slots/frame.
      activePeriod: this.slotCount,
    });
    for (let i = 0; i < this.slotCount; i++) if (this.#slots[i]!.length > 0) this.#ticker.setActive(i, true);
    this.#ticker.start();
  }

  /** Keeps the clock's idea of which phases have work in step with the slots. */
  #changed(slot: number): void {
    this.#ticker?.setActive(slot, this.#slots[slot]!.length > 0);
  }

  #stopClock(): void {
    if (!this.#ticker) return;
    this.#lastTickerP99 = this.#ticker.stats().lateness.p99;
    this.#ticker.close();
    this.#ticker = null;
  }

  get running(): boolean {
    return this.#ticker !== null;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Where a task in slot `from` goes to share: the fullest slot others already share that has room,
   * else `from` itself (it starts one). The cap bounds how long the last of them waits for the others.
   */
  #sharedSlotFor(from: number): number {
    const n = this.#sharedIn[from]!;
    if (n > 0 && n < SHARED_SLOT_TASKS) return from;
    let best = -1;
    for (let i = 0; i < this.slotCount; i++) {
      const k = this.#sharedIn[i]!;
      if (k > 0 && k < SHARED_SLOT_TASKS && (best < 0 || k > this.#sharedIn[best]!)) best = i;
    }
    return best >= 0 ? best : from;
  }

  /** Tasks placed in slot `i`, sleeping ones included: a sleeper wakes into its own slot. */
  #load(i: number): number {
    return this.#slots[i]!.length + this.#asleepIn[i]!;
  }

  #leastLoaded(): number {
    let best = 0;
    for (let i = 1; i < this.slotCount; i++) if (this.#load(i) < this.#load(best)) best = i;
    return best;
  }

  /**
   * Moves `task` between slots. Into a slot still to come in the frame that is running, it skips
   * that slot once (else it would tick twice in one frame); into one already past, its next tick
   * comes less than a frame after the last, as after `advance`.
   */
  #move(task: ScheduledTask, from: number, to: number): void {
    const slot = this.#slots[from]!;
    const i = slot.indexOf(task);
    if (i >= 0) slot.splice(i, 1);
    this.#changed(from);
    this.#slots[to]!.push(task);
    this.#changed(to);
    if (this.#runningSlot >= 0 && to > this.#runningSlot) this.#skipOnce.add(task);
  }

  /** Adds a task to the least loaded phase; returns its handle (move it, remove it). */
  add(task: ScheduledTask): ScheduledHandle {
    const best = this.#leastLoaded();
    this.#slots[best]!.push(task);
    this.#size++;
    if (this.#size === 1) this.#startClock();
    else this.#changed(best);
    let current = best;
    let removed = false;
    let shared = false;
    // A sleeping task is out of its slot's list (so neither run nor counted as load) but keeps `current`.
    let asleep = false;
    const unshare = () => {
      shared = false;
      this.#sharedIn[current]!--;
    };
    return {
      get slot() {
        return current;
      },
      get shared() {
        return shared;
      },
      get asleep() {
        return asleep;
      },
      sleep: (on: boolean) => {
        if (removed || on === asleep) return;
        asleep = on;
        this.#asleepIn[current]! += on ? 1 : -1;
        const slot = this.#slots[current]!;
        if (on) {
          this.#skipOnce.delete(task);
          const i = slot.indexOf(task);
          if (i >= 0) slot.splice(i, 1);
        } else slot.push(task);
        this.#changed(current);
      },
      share: (on: boolean) => {
        if (removed || asleep || on === shared) return;
        if (on) {
          shared = true;
          const to = this.#sharedSlotFor(current);
          if (to !== current) {
            this.#move(task, current, to);
            current = to;
          }
          this.#sharedIn[current]!++;
          return;
        }
        unshare();
        // Leave only if the slot is crowded by the others that share it.
        if (this.#slots[current]!.length === 1) return;
        const best = this.#leastLoaded();
        if (this.#load(best) + 1 >= this.#load(current)) return;
        this.#move(task, current, best);
        current = best;
      },
      // Moving earlier makes the next tick come that much sooner, once: used to tick just after a
      // channel's packets arrive instead of up to a frame later.
      advance: (wanted: number) => {
        if (removed || asleep || wanted <= 0) return 0;
        // Never crowd a phase: a slot's channels run back to back, so load must stay spread.
        const cap = Math.ceil(this.#size / this.slotCount) + 1;
        let slots = Math.min(wanted, this.slotCount - 1);
        while (
          slots > 0 &&
          this.#load((((current - slots) % this.slotCount) + this.slotCount) % this.slotCount) >= cap
        )
          slots--;
        if (slots === 0) return 0;
        // A phase of its own again: it no longer shares.
        if (shared) unshare();
        const from = this.#slots[current]!;
        const i = from.indexOf(task);
        if (i >= 0) from.splice(i, 1);
        this.#changed(current);
        current = (((current - slots) % this.slotCount) + this.slotCount) % this.slotCount;
        this.#slots[current]!.push(task);
        this.#changed(current);
        return slots;
      },
      remove: () => {
        if (removed) return;
        removed = true;
        if (shared) unshare();
        if (asleep) this.#asleepIn[current]!--;
        this.#skipOnce.delete(task);
        const slot = this.#slots[current]!;
        const i = slot.indexOf(task);
        if (i >= 0) slot.splice(i, 1);
        if (--this.#size === 0) this.#stopClock();
        else this.#changed(current);
      },
    };
  }

  get slotMs(): number {
    return this.frameMs / this.slotCount;
  }

  #run(t: Tick): void {
    this.onWake?.(t.latenessMs);
    // The tasks run after the sockets were read once more: woken by a timer (the timers phase) the
    // check phase of this loop iteration follows its socket reads; woken by the timerfd or the
    // metronome's message (the poll phase), a packet whose event came after the wake-up's in that
    // poll would be missed until the next frame: a talkspurt's first packet, arrived just before
    // its tick, then waited a whole frame (cluster/test/advance.test.ts). So two immediates: the
    // second runs after the next iteration's poll (which does not block while an immediate is
    // pending). Until channel ticks were called directly the nact message per tick made that hop.
    const index = t.index;
    const skipped = t.skipped;
    // Its exact due instant on performance.now (the ticker's clock), not a second reading of the
    // clock minus the lateness: that one drifted by the microseconds between the two reads.
    const dueNow = this.#ticker!.startedAtMs + t.dueMs;
    setImmediate(() =>
      setImmediate(() => {
        try {
          this.#runSlots(index, skipped, dueNow);
        } catch (err) {
          this.onError(err);
        }
      }),
    );
  }

  #runSlots(index: number, skipped: number, dueNow: number): void {
    // After a skip the clock jumped; run every slot passed over in this frame so none loses a tick.
    const from = skipped > 0 ? index - Math.min(skipped, this.slotCount - 1) : index;
    try {
      for (let k = from; k <= index; k++) {
        const s = k % this.slotCount;
        const slot = this.#slots[s]!;
        const dueAt = dueNow - (index - k) * (this.frameMs / this.slotCount);
        this.#runningSlot = s;
        // A task may move during its own call (share): iterate over the tasks there at the start.
        for (let i = 0, n = slot.length; i < n && i < slot.length; i++) {
          const task = slot[i]!;
          if (this.#skipOnce.size > 0 && this.#skipOnce.delete(task)) continue;
          task.due(dueAt);
          // It moved out of this slot: the next task now sits at index i.
          if (slot[i] !== task) {
            i--;
            n--;
          }
        }
      }
    } finally {
      this.#runningSlot = -1;
    }
    // Right after the tasks: their work (a tick's packets) leaves in this iteration.
    this.afterRun?.();
  }

  /** The clock's own wake-up lateness (not the channels'), p50 and p99, ms. */
  clockLateness(): { p50: number; p99: number } {
    if (!this.#ticker) return { p50: 0, p99: this.#lastTickerP99 };
    const l = this.#ticker.stats().lateness;
    return { p50: l.p50, p99: l.p99 };
  }

  resetClockLateness(): void {
    this.#ticker?.resetLateness();
  }

  close(): void {
    this.#stopClock();
  }
}
