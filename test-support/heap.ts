import v8 from 'node:v8';

/**
 * Bytes in use in V8's young generation, where short-lived objects (a closure, a Buffer slice)
 * land: tests of "allocates nothing per packet" read it before and after a loop. A scavenge in
 * between makes the difference negative, which such a test must refuse rather than read as zero.
 */
export const newSpaceUsed = (): number =>
  v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
