import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';

/** How big a run is: users arriving over `rampSeconds`, each staying `seconds` (voice: counting). */
export interface RunSize {
  users: number;
  rampSeconds: number;
  seconds: number;
}

/** The parts of an Artillery script the runner reads or rewrites. */
export interface ScenarioScript {
  config: {
    target?: string;
    phases?: unknown[];
    voice?: { sizes?: Record<string, Partial<RunSize>>; [k: string]: unknown };
    [k: string]: unknown;
  };
  scenarios: { engine?: string; flow: Record<string, unknown>[] }[];
}

export function loadScenario(file: string): ScenarioScript {
  const doc = yaml.load(readFileSync(file, 'utf8')) as ScenarioScript | null;
  if (!doc || typeof doc !== 'object' || !doc.config || !Array.isArray(doc.scenarios)) {
    throw new TypeError(`${file}: not an Artillery script (config and scenarios)`);
  }
  return doc;
}

/** The named size from the script (`config.voice.sizes.<name>`), with command-line overrides. */
export function resolveSize(s: ScenarioScript, name: string, override: Partial<RunSize>): RunSize {
  const base = s.config.voice?.sizes?.[name];
  if (!base) throw new TypeError(`the scenario has no size ${JSON.stringify(name)} (config.voice.sizes)`);
  const size = { ...base, ...override } as Partial<RunSize>;
  for (const k of ['users', 'rampSeconds', 'seconds'] as const) {
    const v = size[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new TypeError(`size.${k} must be > 0`);
  }
  if (!Number.isInteger(size.users)) throw new TypeError('size.users must be an integer');
  return size as RunSize;
}

/**
 * The script Artillery runs: one arrival phase of `users` over `rampSeconds` (split evenly across
 * workers by Artillery), and the size's `seconds` in every voice step (its counting window) and
 * signaling step (how long sessions are held); a signaling step's `usersPerChannel` becomes its
 * channel count for this size.
 */
export function sizeScript(s: ScenarioScript, size: RunSize): ScenarioScript {
  const out = structuredClone(s);
  out.config.phases = [{ name: 'arrive', duration: size.rampSeconds, arrivalCount: size.users }];
  for (const sc of out.scenarios) {
    for (const step of sc.flow) {
      if (step.voice && typeof step.voice === 'object')
        (step.voice as Record<string, unknown>).seconds = size.seconds;
      if (step.signaling && typeof step.signaling === 'object') {
        const g = step.signaling as Record<string, unknown>;
        g.holdSeconds = size.seconds;
        // Every join, leave and mute is announced to the channel: channels grow with the run, or
        // the events grow with its square and measure the generator's decoding.
        if (typeof g.usersPerChannel === 'number') {
          g.channels = Math.max(1, Math.ceil(size.users / g.usersPerChannel));
          delete g.usersPerChannel;
        }
      }
    }
  }
  return out;
}

/** Longest a run of this size may take before the runner stops it: arrivals, stays, margins. */
export function runDeadlineSeconds(s: ScenarioScript, size: RunSize): number {
  let extra = 0;
  for (const sc of s.scenarios) {
    for (const step of sc.flow) {
      const v = (step.voice ?? step.lean) as Record<string, number> | undefined;
      if (v) extra = Math.max(extra, (v.warmupSeconds ?? 2) + (v.lingerSeconds ?? 2));
      const g = step.signaling as Record<string, number> | undefined;
      if (g) extra = Math.max(extra, ((g.cycles ?? 3) * ((g.thinkMs ?? 200) * 1.5 + 500)) / 1000);
    }
  }
  // A minute of margin, and more for big runs, whose users take longer to log in and leave.
  return Math.ceil(size.rampSeconds + size.seconds + extra + 60 + size.users * 0.05);
}

export function dumpScript(s: ScenarioScript): string {
  return yaml.dump(s, { lineWidth: 120 });
}
