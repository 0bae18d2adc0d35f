/**
 * One clock for every virtual user on this machine: CLOCK_MONOTONIC in ms. Artillery runs users in
 * several worker threads (and the runner may start several processes); performance.now() has a
 * different origin in each, hrtime does not, so a click captured in one thread and heard in another
 * is timed on the same scale.
 */
export const monoMs = (): number => Number(process.hrtime.bigint()) / 1e6;

/** Converts this thread's performance.now() values to monoMs (both tick at the same rate). */
export function perfToMono(): (perfMs: number) => number {
  const offset = monoMs() - performance.now();
  return (perfMs) => perfMs + offset;
}
