import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** True when the module at `url` is the script node was started with. */
export function isMain(url: string): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(url));
  } catch {
    return false;
  }
}

/** Prints one `name: value unit` line per figure. */
export function printFigures(title: string, figures: Record<string, number>): void {
  console.log(`# ${title}`);
  for (const [name, value] of Object.entries(figures)) {
    const digits = Math.abs(value) >= 1000 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
    console.log(`${name.padEnd(44)} ${value.toLocaleString('en-US', { maximumFractionDigits: digits })}`);
  }
}

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Runs `fn(iterations)` until it has taken at least `minMs`; returns ns per iteration of the best run. */
export function measure(fn: (iterations: number) => void, minMs: number = 300, rounds: number = 5): number {
  let n = 1;
  for (;;) {
    const t0 = nowNs();
    fn(n);
    const ms = Number(nowNs() - t0) / 1e6;
    if (ms >= minMs / rounds) break;
    n *= ms < 1 ? 10 : 2;
  }
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < rounds; r++) {
    const t0 = nowNs();
    fn(n);
    best = Math.min(best, Number(nowNs() - t0) / n);
  }
  return best;
}
