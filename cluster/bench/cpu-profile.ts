/**
 * A V8 CPU profile of this process's main thread over a chosen window (the benches' steady state,
 * not start-up and log-in), written as a .cpuprofile (Chrome DevTools and speedscope open it), and a
 * summary of self time by function and by file:
 *
 *   node --conditions=source --import tsx cluster/bench/cpu-profile.ts FILE.cpuprofile [--top 30]
 */
import { Session } from 'node:inspector/promises';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';

export interface CpuProfileRun {
  /** Stops the profiler and writes the profile to `file`. */
  stopInto(file: string): Promise<void>;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export async function startCpuProfile(intervalUs = 250): Promise<CpuProfileRun> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.post('Profiler.start');
  return {
    async stopInto(file: string) {
      const { profile } = await session.post('Profiler.stop');
      session.disconnect();
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(file, JSON.stringify(profile));
    },
  };
}

export interface SelfTime {
  name: string;
  ms: number;
  pct: number;
}

/** Self time per function (name + file:line) and per file, from the samples' time deltas. */
export function summarise(p: Profile): { totalMs: number; byFunction: SelfTime[]; byFile: SelfTime[] } {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const node = byId.get(p.samples[i]!);
    // A sample's time is the delta to the next one.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    if (!node) continue;
    total += dt;
    const f = node.callFrame;
    const short = f.url.replace(/^.*\/(cluster|media|protocol|client|loadtest|node_modules)\//, '$1/');
    const where = short ? `${short}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName || '(anonymous)'} ${where}`.trim();
    fn.set(key, (fn.get(key) ?? 0) + dt);
    const fileKey = short || f.functionName;
    file.set(fileKey, (file.get(fileKey) ?? 0) + dt);
  }
  const rows = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .map(([name, ms]) => ({ name, ms: Math.round(ms), pct: Math.round((ms / total) * 1000) / 10 }));
  return { totalMs: Math.round(total), byFunction: rows(fn), byFile: rows(file) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '30' } },
  });
  const top = Number(values.top);
  for (const path of positionals) {
    const s = summarise(JSON.parse(readFileSync(path, 'utf8')) as Profile);
    console.log(`${path}: ${s.totalMs} ms sampled`);
    console.log('  self time by function:');
    for (const r of s.byFunction.slice(0, top))
      console.log(`  ${String(r.pct).padStart(5)} %  ${String(r.ms).padStart(6)} ms  ${r.name}`);
    console.log('  self time by file:');
    for (const r of s.byFile.slice(0, top))
      console.log(`  ${String(r.pct).padStart(5)} %  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  }
}
