import v8 from 'node:v8';

/**
 * Bytes in use in V8's young generation, where short-lived objects (a closure, a Buffer slice)
 * land: tests of "allocates nothing per packet" read it before and after a loop. A scavenge in
 * between makes the difference negative, which such a test must refuse rather than read as zero.
 */
export const newSpaceUsed = (): number =>
  v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;

/**
 * The fewest young-generation bytes `round()` left over up to `rounds` tries, stopping at the first
 * under `enough`. On a loaded machine one round may catch the interpreter boxing numbers or the
 * runner's own work, but a per-packet allocation shows in every round. A round during which a
 * scavenge ran reads negative and proves nothing: it is not counted (all such: +Infinity).
 */
export function leastYoungBytes(round: () => void, rounds: number, enough: number): number {
  let bytes = Number.POSITIVE_INFINITY;
  for (let i = 0; i < rounds && !(bytes < enough); i++) {
    const before = newSpaceUsed();
    round();
    const used = newSpaceUsed() - before;
    if (used >= 0) bytes = Math.min(bytes, used);
  }
  return bytes;
}
