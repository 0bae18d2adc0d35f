import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { InboxPush, PacketInbox } from '../src/voice/inbox.js';

const member = (id: number) => ({ id, inboxQueued: 0 });
type Member = ReturnType<typeof member>;
const payload = new Uint8Array([1, 2, 3]);

function drain(inbox: PacketInbox<Member>): [number, number][] {
  const out: [number, number][] = [];
  for (let i = inbox.peekIndex(); i >= 0; i = inbox.peekIndex()) {
    out.push([inbox.owner[i]!.id, inbox.seq[i]!]);
    inbox.shift();
  }
  return out;
}

describe('PacketInbox', () => {
  it("refuses a flooding member's packets at its quota; the others' stay queued", () => {
    const inbox = new PacketInbox<Member>(8, 3);
    const [flood, a, b] = [member(0), member(1), member(2)];
    inbox.push(a, 100, 0, 0, payload, 3);
    for (let s = 0; s < 50; s++) inbox.push(flood, s, 0, 0, payload, 3);
    inbox.push(b, 200, 0, 0, payload, 3);
    expect(inbox.overQuota).toBe(47);
    expect(inbox.overflows).toBe(0);
    expect(flood.inboxQueued).toBe(3);
    expect(drain(inbox)).toEqual([
      [1, 100],
      [0, 0],
      [0, 1],
      [0, 2],
      [2, 200],
    ]);
    expect([flood, a, b].map((m) => m.inboxQueued)).toEqual([0, 0, 0]);
  });

  it('when the whole ring is full, drops the oldest packet and says so', () => {
    const inbox = new PacketInbox<Member>(4, 2);
    const ms = [member(0), member(1), member(2)];
    const results = [0, 1, 1, 2, 2, 0].map((id, s) => inbox.push(ms[id]!, s, 0, 0, payload, 3));
    // The ring (4) fills at the 4th packet; the 5th and 6th push out the oldest (seq 0, then 1).
    expect(results).toEqual([
      InboxPush.QUEUED,
      InboxPush.QUEUED,
      InboxPush.QUEUED,
      InboxPush.QUEUED,
      InboxPush.OVERFLOW,
      InboxPush.OVERFLOW,
    ]);
    expect(inbox.overflows).toBe(2);
    expect(drain(inbox).map(([, s]) => s)).toEqual([2, 3, 4, 5]);
  });

  it('matches a reference model (quota per owner, oldest dropped when full, FIFO order)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 12 }),
        fc.array(fc.oneof(fc.integer({ min: 0, max: 4 }), fc.constant(-1)), { maxLength: 300 }),
        (capacity, q, ops) => {
          const quota = Math.min(q, capacity);
          const inbox = new PacketInbox<Member>(capacity, quota);
          const owners = [0, 1, 2, 3, 4].map(member);
          const model: [number, number][] = [];
          ops.forEach((op, seq) => {
            if (op < 0) {
              // A tick drains everything.
              expect(drain(inbox)).toEqual(model.splice(0));
              return;
            }
            const queued = model.filter(([o]) => o === op).length;
            let want: InboxPush = InboxPush.QUEUED;
            if (queued >= quota) want = InboxPush.OVER_QUOTA;
            else {
              if (model.length === capacity) {
                model.shift();
                want = InboxPush.OVERFLOW;
              }
              model.push([op, seq]);
            }
            expect(inbox.push(owners[op]!, seq, 0, 0, payload, 3)).toBe(want);
            expect(inbox.count).toBe(model.length);
          });
          for (const o of owners) expect(o.inboxQueued).toBe(model.filter(([id]) => id === o.id).length);
          inbox.clear();
          for (const o of owners) expect(o.inboxQueued).toBe(0);
        },
      ),
      { seed: 11, numRuns: 300 },
    );
  });

  it('rejects bad sizes', () => {
    expect(() => new PacketInbox(0)).toThrow(TypeError);
    expect(() => new PacketInbox(4, 5)).toThrow(TypeError);
  });
});
