import type { StretchCounts } from '@voice/media';

/** What a channel reports of its members' time-stretching (ChannelStats), members who left included. */
export interface StretchFigures {
  /** Pitch periods removed (accelerate: giving back delay a late burst added). */
  accelerated: number;
  /** Pitch periods inserted (preemptive expand: growing the FEC look-ahead). */
  stretchExpanded: number;
  /** Their total length, ms. */
  acceleratedMs: number;
  stretchExpandedMs: number;
}

/**
 * A channel's members' time-stretch counts, summed once per tick without allocating: each member's
 * playout keeps its own running counts, so the channel adds them up (`begin`, `add` per member,
 * `publish`) and keeps those of members who left (`retire`), so its totals never go back.
 */
export class StretchTotals {
  #goneAccelerated = 0;
  #goneExpanded = 0;
  #goneRemoved = 0;
  #goneAdded = 0;
  #accelerated = 0;
  #expanded = 0;
  #removed = 0;
  #added = 0;

  begin(): void {
    this.#accelerated = this.#goneAccelerated;
    this.#expanded = this.#goneExpanded;
    this.#removed = this.#goneRemoved;
    this.#added = this.#goneAdded;
  }

  add(c: StretchCounts): void {
    this.#accelerated += c.accelerated;
    this.#expanded += c.expanded;
    this.#removed += c.samplesRemoved;
    this.#added += c.samplesAdded;
  }

  /** A member leaves: its counts stay in the totals. */
  retire(c: StretchCounts): void {
    this.#goneAccelerated += c.accelerated;
    this.#goneExpanded += c.expanded;
    this.#goneRemoved += c.samplesRemoved;
    this.#goneAdded += c.samplesAdded;
  }

  /** Writes this tick's sums into `out` (samples at 48 kHz to ms). */
  publish(out: StretchFigures): void {
    out.accelerated = this.#accelerated;
    out.stretchExpanded = this.#expanded;
    out.acceleratedMs = this.#removed / 48;
    out.stretchExpandedMs = this.#added / 48;
  }
}
