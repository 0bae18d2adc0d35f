import type { StretchCounts } from '@voice/media';

/** What a channel reports of its members' time-stretching (ChannelStats), members who left included. */
export interface StretchFigures {
  /** Pitch periods removed (accelerate: giving back delay a late burst added). */
  readonly accelerated: number;
  /** Pitch periods inserted (preemptive expand: growing the FEC look-ahead). */
  readonly stretchExpanded: number;
  /** Their total length, ms. */
  readonly acceleratedMs: number;
  readonly stretchExpandedMs: number;
}

/** A member as the totals see it: its playout's running counts (null when it does not stretch). */
export interface StretchSource {
  readonly stream: { readonly stretch: StretchCounts | null };
}

/**
 * A channel's members' time-stretch counts, summed when read: each member's playout keeps its own
 * running counts, so nothing is added up per tick for figures a metrics scrape reads a few times a
 * minute. The counts of members who left are kept (`retire`, called as one leaves the list), so the
 * totals never go back.
 */
export class StretchTotals implements StretchFigures {
  #goneAccelerated = 0;
  #goneExpanded = 0;
  #goneRemoved = 0;
  #goneAdded = 0;

  /** `members`: the channel's own list, read (never changed) at each read of a figure. */
  constructor(private readonly members: readonly StretchSource[]) {}

  /** A member leaves: its counts stay in the totals. */
  retire(c: StretchCounts): void {
    this.#goneAccelerated += c.accelerated;
    this.#goneExpanded += c.expanded;
    this.#goneRemoved += c.samplesRemoved;
    this.#goneAdded += c.samplesAdded;
  }

  get accelerated(): number {
    return this.#sum('accelerated', this.#goneAccelerated);
  }

  get stretchExpanded(): number {
    return this.#sum('expanded', this.#goneExpanded);
  }

  /** Samples at 48 kHz, in ms. */
  get acceleratedMs(): number {
    return this.#sum('samplesRemoved', this.#goneRemoved) / 48;
  }

  get stretchExpandedMs(): number {
    return this.#sum('samplesAdded', this.#goneAdded) / 48;
  }

  #sum(count: keyof StretchCounts, gone: number): number {
    let n = gone;
    for (let i = 0; i < this.members.length; i++) n += this.members[i]!.stream.stretch?.[count] ?? 0;
    return n;
  }
}

/**
 * Makes `target`'s stretch figures read through to `totals`: enumerable getters, so a scrape, a
 * spread copy or a log line sums them when it reads them, and nothing is kept up to date per tick.
 */
export function readStretchFigures<T extends object>(target: T, totals: StretchFigures): T & StretchFigures {
  return Object.defineProperties(target, {
    accelerated: { get: () => totals.accelerated, enumerable: true },
    stretchExpanded: { get: () => totals.stretchExpanded, enumerable: true },
    acceleratedMs: { get: () => totals.acceleratedMs, enumerable: true },
    stretchExpandedMs: { get: () => totals.stretchExpandedMs, enumerable: true },
  }) as T & StretchFigures;
}
