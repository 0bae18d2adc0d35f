import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import type { StretchCounts } from '@voice/media';
import { StretchTotals, readStretchFigures, type StretchSource } from '../src/voice/stretch-totals.js';

type Counts = { -readonly [K in keyof StretchCounts]: number };
const counts = (): Counts => ({ accelerated: 0, expanded: 0, samplesRemoved: 0, samplesAdded: 0 });

/** A member as a channel holds it: its playout's running counts (null: a playout that never stretches). */
const member = (stretch: Counts | null): { stream: { stretch: Counts | null } } => ({
  stream: { stretch },
});

/** The channel's side: the members list it owns, and the retire-then-remove it does on a leave. */
function channel() {
  const members: ReturnType<typeof member>[] = [];
  const totals = new StretchTotals(members satisfies readonly StretchSource[]);
  return {
    members,
    totals,
    leave(i: number): void {
      const m = members[i]!;
      if (m.stream.stretch) totals.retire(m.stream.stretch);
      members.splice(i, 1);
    },
  };
}

describe('StretchTotals (a channel’s time-stretch figures, summed when read)', () => {
  it('sums the present members when read, keeps those who left, and never goes back', () => {
    const ch = channel();
    const a = member({ accelerated: 3, expanded: 1, samplesRemoved: 960, samplesAdded: 480 });
    const b = member({ accelerated: 2, expanded: 0, samplesRemoved: 240, samplesAdded: 0 });
    ch.members.push(a, b, member(null));
    const stats = readStretchFigures({ members: 3 }, ch.totals);
    expect({ ...stats }).toEqual({
      members: 3,
      accelerated: 5,
      stretchExpanded: 1,
      acceleratedMs: 25,
      stretchExpandedMs: 10,
    });
    // b leaves; a stretches once more: read again, nothing was published in between.
    ch.leave(1);
    a.stream.stretch!.accelerated++;
    a.stream.stretch!.samplesRemoved += 480;
    expect(stats.accelerated).toBe(6);
    expect(stats.acceleratedMs).toBe(35);
    expect(stats.stretchExpanded).toBe(1);
    expect(stats.stretchExpandedMs).toBe(10);
  });

  it('matches a model of every count ever made, through joins, stretches and leaves (never down)', () => {
    const op = fc.oneof(
      fc.record({ kind: fc.constant('join' as const), stretches: fc.boolean() }),
      fc.record({
        kind: fc.constant('stretch' as const),
        who: fc.nat(),
        field: fc.constantFrom<keyof Counts>('accelerated', 'expanded', 'samplesRemoved', 'samplesAdded'),
        by: fc.integer({ min: 1, max: 2000 }),
      }),
      fc.record({ kind: fc.constant('leave' as const), who: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const ch = channel();
        const model = counts();
        let last = { accelerated: 0, stretchExpanded: 0, acceleratedMs: 0, stretchExpandedMs: 0 };
        for (const o of ops) {
          if (o.kind === 'join') ch.members.push(member(o.stretches ? counts() : null));
          else if (ch.members.length > 0) {
            const i = o.who % ch.members.length;
            if (o.kind === 'leave') ch.leave(i);
            else {
              const c = ch.members[i]!.stream.stretch;
              if (!c) continue;
              c[o.field] += o.by;
              model[o.field] += o.by;
            }
          }
          const now = {
            accelerated: ch.totals.accelerated,
            stretchExpanded: ch.totals.stretchExpanded,
            acceleratedMs: ch.totals.acceleratedMs,
            stretchExpandedMs: ch.totals.stretchExpandedMs,
          };
          expect(now).toEqual({
            accelerated: model.accelerated,
            stretchExpanded: model.expanded,
            acceleratedMs: model.samplesRemoved / 48,
            stretchExpandedMs: model.samplesAdded / 48,
          });
          for (const k of Object.keys(now) as (keyof typeof now)[])
            expect(now[k], k).toBeGreaterThanOrEqual(last[k]);
          last = now;
        }
      }),
    );
  });
});
