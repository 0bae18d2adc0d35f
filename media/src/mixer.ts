/**
 * Mix-minus primitives for a channel tick. Frames are Float32 (full scale = 1.0), all the same length.
 *
 * Sharing (BRIEF §2): the server mixes the full sum once per tick; a speaker hears `sum - own`; every
 * silent listener with default gains hears the same "everyone" mix; listeners whose custom gain maps are
 * equal (same `gainMapKey`) share one mix. So the number of distinct mixes, and of Opus encodes, follows
 * the number of speakers and of distinct gain settings, not the number of listeners.
 *
 * Everything here writes into caller-provided arrays and allocates nothing per tick.
 */

export const MAX_GAIN = 2;

/** A listener's per-speaker gains (speaker id -> 0..2). Missing speakers have gain 1. */
export type GainMap = ReadonlyMap<string, number>;

function checkLength(a: Float32Array, n: number, what: string): void {
  if (a.length !== n) throw new TypeError(`${what} has ${a.length} samples, expected ${n}`);
}

/** out = Σ frames[0..count). Returns `out`. */
export function sumFrames(frames: readonly Float32Array[], count: number, out: Float32Array): Float32Array {
  const n = out.length;
  if (count === 0) return out.fill(0);
  const first = frames[0]!;
  checkLength(first, n, 'frame 0');
  out.set(first);
  for (let s = 1; s < count; s++) {
    const f = frames[s]!;
    checkLength(f, n, `frame ${s}`);
    for (let i = 0; i < n; i++) out[i]! += f[i]!;
  }
  return out;
}

/** out = sum - own: what the speaker whose frame is `own` hears. `out` may be `sum` itself. */
export function mixMinus(sum: Float32Array, own: Float32Array, out: Float32Array): Float32Array {
  const n = sum.length;
  checkLength(own, n, 'own frame');
  checkLength(out, n, 'output');
  for (let i = 0; i < n; i++) out[i] = sum[i]! - own[i]!;
  return out;
}

/**
 * out = Σ gains[s] * frames[s] over s in [0, count), skipping `exclude` (a speaker's own index, or -1).
 * Gains of 0 skip the frame entirely.
 */
export function mixWeighted(
  frames: readonly Float32Array[],
  gains: ArrayLike<number>,
  count: number,
  exclude: number,
  out: Float32Array,
): Float32Array {
  const n = out.length;
  out.fill(0);
  for (let s = 0; s < count; s++) {
    const g = gains[s]!;
    if (s === exclude || g === 0) continue;
    const f = frames[s]!;
    checkLength(f, n, `frame ${s}`);
    if (g === 1) for (let i = 0; i < n; i++) out[i]! += f[i]!;
    else for (let i = 0; i < n; i++) out[i]! += g * f[i]!;
  }
  return out;
}

/** Validates and clamps a gain to 0..MAX_GAIN (NaN or non-number throws). */
export function clampGain(gain: number): number {
  if (typeof gain !== 'number' || Number.isNaN(gain))
    throw new TypeError(`gain must be a number (got ${gain})`);
  return gain < 0 ? 0 : gain > MAX_GAIN ? MAX_GAIN : gain;
}

function gainEntries(gains: GainMap | Readonly<Record<string, number>>): [string, number][] {
  if (gains instanceof Map) return [...(gains as GainMap)];
  return Object.entries(gains as Readonly<Record<string, number>>);
}

/** Gains are compared at this resolution (1/1000, below any audible difference). */
function quantizeGain(gain: number): number {
  return Math.round(clampGain(gain) * 1000);
}

/**
 * A stable key for a gain map: '' for the default (empty, or every gain 1); otherwise the non-default
 * entries sorted by speaker id, gains quantized to 1/1000. Equal keys mean equal mixes.
 * Call it when a listener changes its gains, not per tick (it allocates a string).
 */
export function gainMapKey(gains: GainMap | Readonly<Record<string, number>> | undefined): string {
  if (gains === undefined) return '';
  const parts: string[] = [];
  for (const [id, g] of gainEntries(gains)) {
    const q = quantizeGain(g);
    if (q !== 1000) parts.push(`${JSON.stringify(id)}:${q}`);
  }
  parts.sort();
  return parts.join(',');
}

/**
 * Soft limiter: identity up to `knee` (default 0.5 = -6 dBFS), then a tanh curve that meets the
 * identity with slope 1 at the knee and approaches full scale asymptotically. No hard clipping: the
 * output never exceeds full scale (it reaches exactly 1.0 only beyond about +13 dBFS input, by Float32
 * rounding), a signal under -6 dBFS passes bit-exact, and a louder one is compressed smoothly.
 * `out` may be `input`.
 */
export function softLimit(input: Float32Array, out: Float32Array = input, knee: number = 0.5): Float32Array {
  const n = input.length;
  checkLength(out, n, 'output');
  const room = 1 - knee;
  const inv = 1 / room;
  for (let i = 0; i < n; i++) {
    const x = input[i]!;
    if (x > knee) out[i] = knee + room * Math.tanh((x - knee) * inv);
    else if (x < -knee) out[i] = -knee - room * Math.tanh((-x - knee) * inv);
    else out[i] = x;
  }
  return out;
}

/** Float (-1..1) to Int16, rounding; values outside are clamped (run `softLimit` first to avoid that). */
export function floatToInt16(input: Float32Array, out: Int16Array): Int16Array {
  const n = input.length;
  if (out.length < n) throw new TypeError(`output has ${out.length} samples, expected ${n}`);
  for (let i = 0; i < n; i++) {
    const v = Math.round(input[i]! * 32767);
    out[i] = v > 32767 ? 32767 : v < -32768 ? -32768 : v;
  }
  return out;
}

/** Int16 to float, full scale 32768 -> 1.0. */
export function int16ToFloat(input: Int16Array, out: Float32Array): Float32Array {
  const n = input.length;
  if (out.length < n) throw new TypeError(`output has ${out.length} samples, expected ${n}`);
  for (let i = 0; i < n; i++) out[i] = input[i]! / 32768;
  return out;
}

/**
 * Float to Int16 for a mix: exact (full scale 1.0 -> 32768, the inverse of `int16ToFloat`) while the
 * frame does not clip, `limitToInt16` for a frame that would. A sum that fits passes untouched, so a
 * lone loud speaker beside members sending silence is not compressed above the knee; the soft curve
 * is spent only where a hard clip would otherwise be heard. Returns whether the frame was limited.
 */
export function mixToInt16(input: Float32Array, out: Int16Array, knee: number = 0.5): boolean {
  const n = input.length;
  if (out.length < n) throw new TypeError(`output has ${out.length} samples, expected ${n}`);
  let peak = 0;
  for (let i = 0; i < n; i++) {
    const x = input[i]!;
    if (x > peak) peak = x;
    else if (-x > peak) peak = -x;
  }
  if (peak * 32768 > 32767.5) {
    limitToInt16(input, out, knee);
    return true;
  }
  for (let i = 0; i < n; i++) out[i] = Math.round(input[i]! * 32768);
  return false;
}

/** `softLimit` then `floatToInt16` in one pass: the last step before the encoder. */
export function limitToInt16(input: Float32Array, out: Int16Array, knee: number = 0.5): Int16Array {
  const n = input.length;
  if (out.length < n) throw new TypeError(`output has ${out.length} samples, expected ${n}`);
  const room = 1 - knee;
  const inv = 1 / room;
  for (let i = 0; i < n; i++) {
    let x = input[i]!;
    if (x > knee) x = knee + room * Math.tanh((x - knee) * inv);
    else if (x < -knee) x = -knee - room * Math.tanh((-x - knee) * inv);
    out[i] = Math.round(x * 32767);
  }
  return out;
}

interface ListenerEntry {
  id: string;
  group: GainGroup | null; // null: default gains
  /** Own buffer, used when this listener speaks and has custom gains (its mix is unique). */
  own: Float32Array | null;
  /** Output chosen this tick. */
  out: Float32Array | null;
}

interface GainGroup {
  key: string;
  gains: Map<string, number>;
  members: number;
  buffer: Float32Array;
  /** Tick number its buffer was last mixed in. */
  mixedAt: number;
}

/**
 * Applies the sharing rules to a channel's listeners. Per tick: `mix(ids, frames, count)` then
 * `output(listenerId)` gives the buffer that listener hears (shared buffers are the same object, so
 * encode each distinct buffer once: `outputs()` lists them). Listener and gain changes allocate;
 * ticks do not (beyond what the caller's Map lookups cost).
 *
 * Buffers: one "everyone" sum, one per speaker slot (mix-minus), one per distinct custom gain map,
 * and one per listener with custom gains while it speaks.
 */
export class MixGroups {
  readonly frameSamples: number;
  readonly maxSpeakers: number;
  /** The full default-gain sum of the last tick (what a silent default listener hears). */
  readonly everyone: Float32Array;
  private readonly minus: Float32Array[];
  private readonly listeners = new Map<string, ListenerEntry>();
  /** The same entries as an array, so a tick iterates without allocating an iterator. */
  private readonly entries: ListenerEntry[] = [];
  private readonly groups = new Map<string, GainGroup>();
  private readonly gainScratch: Float32Array;
  private readonly active: Float32Array[] = [];
  private activeCount = 0;
  private tick = 0;
  private speakerIds: readonly string[] = [];
  private speakerCount = 0;

  constructor(frameSamples: number, maxSpeakers: number) {
    if (!Number.isInteger(frameSamples) || frameSamples < 1) throw new TypeError('frameSamples must be >= 1');
    if (!Number.isInteger(maxSpeakers) || maxSpeakers < 1) throw new TypeError('maxSpeakers must be >= 1');
    this.frameSamples = frameSamples;
    this.maxSpeakers = maxSpeakers;
    this.everyone = new Float32Array(frameSamples);
    this.minus = Array.from({ length: maxSpeakers }, () => new Float32Array(frameSamples));
    this.gainScratch = new Float32Array(maxSpeakers);
    for (let i = 0; i < maxSpeakers * 2 + 1; i++) this.active.push(this.everyone);
  }

  /** Adds or updates a listener; `gains` undefined or all-1 means default (shares the everyone mix). */
  setListener(id: string, gains?: GainMap | Readonly<Record<string, number>>): void {
    const key = gainMapKey(gains);
    let entry = this.listeners.get(id);
    if (entry === undefined) {
      entry = { id, group: null, own: null, out: null };
      this.listeners.set(id, entry);
      this.entries.push(entry);
    }
    if ((entry.group?.key ?? '') === key) return;
    this.leaveGroup(entry);
    if (key !== '' && gains !== undefined) {
      let group = this.groups.get(key);
      if (group === undefined) {
        const map = new Map<string, number>();
        for (const [sid, g] of gainEntries(gains)) {
          map.set(sid, clampGain(g));
        }
        group = { key, gains: map, members: 0, buffer: new Float32Array(this.frameSamples), mixedAt: -1 };
        this.groups.set(key, group);
      }
      group.members++;
      entry.group = group;
      entry.own = new Float32Array(this.frameSamples);
      while (this.active.length < this.maxSpeakers + this.groups.size + 1) this.active.push(this.everyone);
    }
  }

  removeListener(id: string): void {
    const entry = this.listeners.get(id);
    if (entry === undefined) return;
    this.leaveGroup(entry);
    this.listeners.delete(id);
    const i = this.entries.indexOf(entry);
    const last = this.entries.pop()!;
    if (last !== entry) this.entries[i] = last;
  }

  private leaveGroup(entry: ListenerEntry): void {
    const group = entry.group;
    if (group === null) return;
    if (--group.members === 0) this.groups.delete(group.key);
    entry.group = null;
    entry.own = null;
  }

  /** The key that decides which listeners share a mix ('' = default gains). */
  groupKey(listenerId: string): string | undefined {
    const entry = this.listeners.get(listenerId);
    return entry === undefined ? undefined : (entry.group?.key ?? '');
  }

  /** Number of distinct custom gain maps in use. */
  get groupCount(): number {
    return this.groups.size;
  }

  /**
   * Mixes one tick: `speakerIds[s]` spoke `frames[s]` for s < count. After this, `output(id)` is valid
   * until the next call. Buffers are filled lazily for groups nobody silent uses.
   */
  mix(speakerIds: readonly string[], frames: readonly Float32Array[], count: number = frames.length): void {
    if (count > this.maxSpeakers)
      throw new RangeError(`${count} speakers, mixer sized for ${this.maxSpeakers}`);
    this.tick++;
    this.speakerIds = speakerIds;
    this.speakerCount = count;
    sumFrames(frames, count, this.everyone);
    this.activeCount = 0;
    let everyoneUsed = false;
    const entries = this.entries;
    for (let i = 0; i < entries.length; i++) entries[i]!.out = null;
    for (let s = 0; s < count; s++) {
      const entry = this.listeners.get(speakerIds[s]!);
      if (entry === undefined) continue;
      if (entry.group === null) {
        entry.out = mixMinus(this.everyone, frames[s]!, this.minus[s]!);
      } else {
        this.loadGains(entry.group);
        entry.out = mixWeighted(frames, this.gainScratch, count, s, entry.own!);
      }
      this.active[this.activeCount++] = entry.out;
    }
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      if (entry.out !== null) continue;
      const group = entry.group;
      if (group === null) {
        entry.out = this.everyone;
        if (!everyoneUsed) {
          everyoneUsed = true;
          this.active[this.activeCount++] = this.everyone;
        }
      } else {
        if (group.mixedAt !== this.tick) {
          group.mixedAt = this.tick;
          this.loadGains(group);
          mixWeighted(frames, this.gainScratch, count, -1, group.buffer);
          this.active[this.activeCount++] = group.buffer;
        }
        entry.out = group.buffer;
      }
    }
  }

  private loadGains(group: GainGroup): void {
    const ids = this.speakerIds;
    for (let s = 0; s < this.speakerCount; s++) this.gainScratch[s] = group.gains.get(ids[s]!) ?? 1;
  }

  /** The buffer `listenerId` hears this tick (shared buffers are identical objects). */
  output(listenerId: string): Float32Array | undefined {
    return this.listeners.get(listenerId)?.out ?? undefined;
  }

  /** Number of distinct buffers mixed this tick: the number of encodes needed. */
  get outputCount(): number {
    return this.activeCount;
  }

  /** The i-th distinct buffer mixed this tick (0 <= i < outputCount). */
  outputAt(i: number): Float32Array {
    if (i < 0 || i >= this.activeCount) throw new RangeError(`output ${i} of ${this.activeCount}`);
    return this.active[i]!;
  }
}
