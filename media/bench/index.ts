import { benchJitter } from './jitter.js';
import { benchMixer } from './mixer.js';
import { benchOpus } from './opus.js';
import { benchStretch } from './stretch.js';
import { isMain, printFigures } from './util.js';

export { benchJitter, benchMixer, benchOpus, benchStretch };

/** Every media benchmark; figures keyed by name (rates per second, costs in µs or ns as named). */
export async function benchMedia(): Promise<Record<string, number>> {
  return {
    ...(await benchJitter()),
    ...(await benchMixer()),
    ...(await benchOpus()),
    ...(await benchStretch()),
  };
}

if (isMain(import.meta.url)) {
  printFigures('media', await benchMedia());
}
