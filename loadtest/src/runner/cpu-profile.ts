import { readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';

/** A V8 .cpuprofile (what `node --cpu-prof` writes), the fields used here. */
interface CpuProfile {
  nodes: {
    id: number;
    hitCount?: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
  }[];
  startTime: number;
  endTime: number;
}

export interface ProfileEntry {
  /** `function (file:line)`, file relative to the repository when inside it. */
  where: string;
  selfPct: number;
}

/**
 * Self time by function over every profile in `dir` (a server writes one per thread: the main
 * loop and the clock's metronome), heaviest first. Idle and GC are kept as V8 names them.
 */
export function summarizeProfiles(
  dir: string,
  root: string,
  top = 20,
): { file: string; entries: ProfileEntry[] }[] {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  return files.map((f) => {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const self = new Map<string, number>();
    let total = 0;
    for (const n of p.nodes) {
      const hits = n.hitCount ?? 0;
      if (hits === 0) continue;
      const cf = n.callFrame;
      const file = cf.url.replace(`file://${root}/`, '').replace(/^file:\/\//, '');
      const where = `${cf.functionName || '(anonymous)'}${file ? ` (${basename(file) === file ? file : file}:${cf.lineNumber + 1})` : ''}`;
      self.set(where, (self.get(where) ?? 0) + hits);
      total += hits;
    }
    const entries = [...self.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([where, hits]) => ({ where, selfPct: Math.round((1000 * hits) / Math.max(1, total)) / 10 }));
    return { file: f, entries };
  });
}
