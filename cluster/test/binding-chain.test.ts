import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BindingChain } from '../src/app/binding-chain.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** A change that does `f` and nothing else (no I/O). */
const just =
  <T>(f: () => T) =>
  (): Promise<T> =>
    Promise.resolve().then(f);

describe('BindingChain', () => {
  it('runs changes one at a time, in the order asked, whatever each takes; a failure is only its own', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.record({ ms: fc.integer({ min: 0, max: 3 }), fails: fc.boolean() }), {
          minLength: 1,
          maxLength: 12,
        }),
        async (works) => {
          const chain = new BindingChain(works.length);
          const started: number[] = [];
          let running = 0;
          let overlapped = false;
          const outcomes = works.map((w, i) =>
            chain
              .tryRun(async () => {
                overlapped ||= running > 0;
                running++;
                started.push(i);
                await sleep(w.ms);
                running--;
                if (w.fails) throw new Error(`work ${i}`);
                return i;
              })!
              .then(
                (v) => ({ ok: v }),
                (e: Error) => ({ err: e.message }),
              ),
          );
          const got = await Promise.all(outcomes);
          expect(overlapped).toBe(false);
          expect(started).toEqual(works.map((_, i) => i));
          expect(got).toEqual(works.map((w, i) => (w.fails ? { err: `work ${i}` } : { ok: i })));
          // Idle once the last turn's hand-off is over: nothing held.
          await new Promise((r) => setImmediate(r));
          expect(chain.size).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('refuses past its bound without running anything; run() is not bounded', async () => {
    const chain = new BindingChain(2);
    let release: (() => void) | null = null;
    const ran: string[] = [];
    const first = chain.tryRun(() => new Promise<void>((r) => (release = r)).then(() => void ran.push('a')));
    const second = chain.tryRun(just(() => void ran.push('b')));
    expect(chain.size).toBe(2);
    expect(chain.tryRun(just(() => void ran.push('refused')))).toBeNull();
    const end = chain.run(just(() => void ran.push('end')));
    while (!release) await Promise.resolve();
    (release as () => void)();
    await Promise.all([first, second, end]);
    expect(ran).toEqual(['a', 'b', 'end']);
    expect(() => new BindingChain(0)).toThrow(TypeError);
  });

  it("hands a change's result to its caller before the next change starts", async () => {
    // A caller sends its reply (a welcome, a join result) from the microtasks after the result:
    // a later change (a move pushing `voice.moved`) must not get in before it, even one that
    // would otherwise finish in microtasks alone.
    const chain = new BindingChain(4);
    const order: string[] = [];
    const reply = chain.tryRun(just(() => 'welcome'))!.then(async (w) => {
      // The hops from SessionManager.attach through the handlers to the connection, and more.
      for (let i = 0; i < 20; i++) await Promise.resolve();
      order.push(`reply ${w}`);
    });
    const next = chain.tryRun(just(() => void order.push('next change')))!;
    await Promise.all([reply, next]);
    expect(order).toEqual(['reply welcome', 'next change']);
  });
});
