import { detectOnset, toneDbfs } from '@voice/media';
import type { RecordingSnapshot, SentLog } from '../client/src/index.js';

const SAMPLES_PER_MS = 48;
/** Goertzel window: 100 ms, so one concealed frame (a phase jump) spoils at most one window. */
const WINDOW = 4800;

/** A recording too short to judge: the playout did not run, so "nothing heard" would mean nothing. */
export class ShortRecordingError extends Error {
  override readonly name = 'ShortRecordingError';
}

/**
 * Level in dBFS of `hz` over the last `ms` of `samples` (48 kHz): the median of 100 ms Goertzel
 * windows. Throws when the recording holds less than `ms`: a playout that never ran must fail a test,
 * not read as silence (the recordings hold played silence too, so a live playout always fills them).
 */
export function medianToneDbfs(samples: Int16Array, hz: number, ms: number): number {
  if (!(ms * SAMPLES_PER_MS >= WINDOW)) throw new TypeError(`ms must be at least 100, got ${ms}`);
  const need = ms * SAMPLES_PER_MS;
  if (samples.length < need) {
    throw new ShortRecordingError(
      `recording holds ${(samples.length / SAMPLES_PER_MS).toFixed(0)} ms, ${ms} ms needed`,
    );
  }
  const levels: number[] = [];
  for (let at = samples.length - need; at + WINDOW <= samples.length; at += WINDOW)
    levels.push(toneDbfs(samples, hz, 48_000, at, WINDOW));
  levels.sort((a, b) => a - b);
  return levels[Math.floor(levels.length / 2)]!;
}

/** Where each click of a `ClickSource` was heard, and which were not heard at all. */
export interface ClickDelays {
  /** Capture to play-out, ms, for each click heard (in click order). */
  readonly delays: number[];
  /** Source samples of the clicks not heard within the window. */
  readonly missed: number[];
}

/**
 * Mouth-to-ear delay of each click: from the instant its first sample was captured to its onset in the
 * listener's recording. The sent log dates a frame by its completion (its last sample captured, as a
 * sound card delivers it), so a click `o` samples into a frame of `frameSamples` was captured
 * `(frameSamples - o) / 48` ms before that: the capture frame's own duration counts, as a listener
 * hears it. Every click is accounted for, heard or missed; none is skipped. A click the
 * speaker never sent is a broken test, so it throws. An onset found only after `windowMs` belongs to a
 * later click: the click counts as missed (keep `windowMs` under the click period).
 */
export function clickDelays(
  clicks: readonly number[],
  sent: Pick<SentLog, 'findBySourceSample'>,
  frameSamples: number,
  rec: RecordingSnapshot,
  windowMs: number,
): ClickDelays {
  const delays: number[] = [];
  const missed: number[] = [];
  for (const s of clicks) {
    const f = sent.findBySourceSample(s, frameSamples);
    if (!f) throw new Error(`the click at source sample ${s} was never sent`);
    const clickTime = f.captureTime - (frameSamples - (s - f.sourceSample)) / SAMPLES_PER_MS;
    const from = Math.max(0, Math.round((clickTime - rec.startTime) * SAMPLES_PER_MS));
    const at = detectOnset(rec.samples, 0.1, from);
    if (at < 0 || at - from >= windowMs * SAMPLES_PER_MS) missed.push(s);
    else delays.push(rec.startTime + at / SAMPLES_PER_MS - clickTime);
  }
  return { delays, missed };
}

/** The `q` quantile (0..1) of `xs`, nearest rank. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) throw new RangeError('quantile of nothing');
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

/**
 * The longest stretch, in ms, from sample `from` on, where `hz` stays below `floorDb` in 20 ms
 * windows: the audio gap a listener heard (a failover, a drain). A window at level ends a gap.
 */
export function longestGapMs(samples: Int16Array, hz: number, from: number, floorDb = -40): number {
  return longestGap(samples, hz, from, floorDb).ms;
}

/**
 * The longest gap as `longestGapMs` finds it, and the sample where it starts (-1 when none); and
 * `silentMs`, every window below the floor added up (gaps apart from the longest count too).
 */
export function longestGap(
  samples: Int16Array,
  hz: number,
  from: number,
  floorDb = -40,
): { ms: number; start: number; silentMs: number } {
  const win = 20 * SAMPLES_PER_MS;
  let longest = 0;
  let start = -1;
  let run = 0;
  let silent = 0;
  for (let at = Math.max(0, from); at + win <= samples.length; at += win) {
    if (toneDbfs(samples, hz, 48_000, at, win) < floorDb) {
      run++;
      silent++;
    } else run = 0;
    if (run > longest) {
      longest = run;
      start = at - (run - 1) * win;
    }
  }
  return { ms: longest * 20, start, silentMs: silent * 20 };
}
