import { monitorEventLoopDelay } from 'node:perf_hooks';

/**
 * Stalls of the whole test process. The voice tests run the server and its bots in one process; on
 * a loaded machine (the full suite runs many files beside each other on 2 cores) that process can
 * be held off the CPU for a few hundred ms. Nothing in the product can play audio on time through
 * that: the sender, the mixer and the playout all stop together. A test that asserts real-time
 * audio over a window therefore measures the window again when the process stalled in it. The stall
 * is measured by the event loop's own delay, independently of the audio asserted on, so a window
 * without a stall is held to the same bounds as ever, and a broken feature fails every window.
 */

/** A stall longer than this spoils a window of real-time audio (a frame or two of buffering). */
export const STALL_SPOILS_MS = 50;

/** Runs `fn` and reports the longest event-loop delay seen meanwhile, ms. */
export async function watchStalls<T>(fn: () => Promise<T>): Promise<{ value: T; stallMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 10 });
  h.enable();
  let value: T;
  try {
    value = await fn();
  } finally {
    h.disable();
  }
  // The histogram counts the timer's whole delay, its resolution included.
  return { value, stallMs: Math.max(0, h.max / 1e6 - 10) };
}

/**
 * Runs `measure` until one run saw no stall over `spoilsMs` (at most `tries` runs) and returns that
 * run's result, or the last run's when every one stalled (then the caller's assertions judge it
 * as it is). `spoiled` may judge a run spoiled too, by a witness of the same stall elsewhere (a
 * server process of a cluster stalls unseen here): it must not look at what the caller asserts.
 * A spoiled run's result goes to `discard` (to stop what it started); `onStall` hears about each
 * spoiled run (for the log).
 */
export async function steadyRun<T>(
  measure: (attempt: number) => Promise<T>,
  {
    tries = 3,
    spoilsMs = STALL_SPOILS_MS,
    discard = () => undefined,
    spoiled = () => false,
    onStall = (attempt: number, stallMs: number) =>
      console.log(
        `steadyRun: run ${attempt} spoiled (longest stall of this process ${stallMs.toFixed(0)} ms; ` +
          `${spoilsMs} ms or the caller's witness spoils a run)`,
      ),
  }: {
    tries?: number;
    spoilsMs?: number;
    discard?: (value: T) => unknown;
    spoiled?: (value: T) => boolean;
    onStall?: (attempt: number, stallMs: number) => void;
  } = {},
): Promise<T> {
  if (!(Number.isInteger(tries) && tries >= 1)) throw new TypeError(`tries must be a positive integer`);
  for (let attempt = 1; ; attempt++) {
    const { value, stallMs } = await watchStalls(() => measure(attempt));
    if ((stallMs <= spoilsMs && !spoiled(value)) || attempt === tries) return value;
    onStall(attempt, stallMs);
    await discard(value);
  }
}
