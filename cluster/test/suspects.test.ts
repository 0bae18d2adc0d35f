import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SuspectNodes } from '../src/routing/suspects.js';

describe('SuspectNodes', () => {
  it('holds a node for the hold time after its last failure, then forgets it', () => {
    let now = 1000;
    const s = new SuspectNodes({ holdMs: 4000, now: () => now });
    expect(s.has('a')).toBe(false);
    s.mark('a');
    now += 3999;
    expect(s.has('a')).toBe(true);
    s.mark('a'); // failed again: held anew from now
    now += 3999;
    expect(s.has('a')).toBe(true);
    now += 1;
    expect(s.has('a')).toBe(false);
    expect(s.size).toBe(0);
    s.mark('b');
    s.clear('b');
    expect(s.has('b')).toBe(false);
  });

  it('rejects bad options', () => {
    expect(() => new SuspectNodes({ holdMs: 0 })).toThrow(TypeError);
    expect(() => new SuspectNodes({ holdMs: 10, max: 0 })).toThrow(TypeError);
  });

  it('agrees with a reference model, and never holds more than max nodes (forgetting the oldest mark)', () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant('mark' as const), id: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ k: fc.constant('clear' as const), id: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ k: fc.constant('has' as const), id: fc.integer({ min: 0, max: 9 }) }),
      fc.record({ k: fc.constant('wait' as const), ms: fc.integer({ min: 0, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 }), fc.array(op, { maxLength: 200 }), (max, ops) => {
        let now = 0;
        const s = new SuspectNodes({ holdMs: 500, max, now: () => now });
        // Model: marks in order (id, until); the oldest marks beyond `max` are forgotten.
        const model: { id: string; until: number }[] = [];
        for (const o of ops) {
          if (o.k === 'wait') {
            now += o.ms;
            continue;
          }
          const id = String(o.id);
          const at = model.findIndex((m) => m.id === id);
          if (o.k === 'has') {
            const want = at >= 0 && model[at]!.until > now;
            // An expired mark found by `has` is dropped, as the implementation does.
            if (at >= 0 && !want) model.splice(at, 1);
            expect(s.has(id)).toBe(want);
            continue;
          }
          if (at >= 0) model.splice(at, 1);
          if (o.k === 'mark') {
            if (model.length >= max) model.shift();
            model.push({ id, until: now + 500 });
            s.mark(id);
          } else s.clear(id);
          expect(s.size).toBe(model.length);
          expect(s.size).toBeLessThanOrEqual(max);
        }
      }),
    );
  });
});
