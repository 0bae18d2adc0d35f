import { describe, expect, it } from 'vitest';
import { StretchTotals, type StretchFigures } from '../src/voice/stretch-totals.js';

const counts = (accelerated: number, expanded: number, samplesRemoved: number, samplesAdded: number) => ({
  accelerated,
  expanded,
  samplesRemoved,
  samplesAdded,
});

describe('StretchTotals (a channel sums its members’ time-stretch counts per tick)', () => {
  it('sums the present members, keeps those who left, and never goes back', () => {
    const t = new StretchTotals();
    const out: StretchFigures = {
      accelerated: 0,
      stretchExpanded: 0,
      acceleratedMs: 0,
      stretchExpandedMs: 0,
    };
    const a = counts(3, 1, 960, 480);
    const b = counts(2, 0, 240, 0);
    t.begin();
    t.add(a);
    t.add(b);
    t.publish(out);
    expect(out).toEqual({ accelerated: 5, stretchExpanded: 1, acceleratedMs: 25, stretchExpandedMs: 10 });
    // b leaves; a stretches once more.
    t.retire(b);
    a.accelerated++;
    a.samplesRemoved += 480;
    t.begin();
    t.add(a);
    t.publish(out);
    expect(out).toEqual({ accelerated: 6, stretchExpanded: 1, acceleratedMs: 35, stretchExpandedMs: 10 });
  });
});
