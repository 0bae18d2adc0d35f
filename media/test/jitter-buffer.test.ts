import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JitterBuffer, JitterInsert, JitterPop, type JitterPopResult } from '../src/index.js';

const payload = (seq: number, len = 20): Uint8Array => {
  const p = new Uint8Array(len);
  for (let i = 0; i < len; i++) p[i] = (seq * 31 + i) & 0xff;
  return p;
};

/** Pops once; returns 'E', 'M' or the sequence number played (checking the payload). */
function step(jb: JitterBuffer, now: number): string | number {
  const r = jb.pop(now);
  if (r === JitterPop.EMPTY) return 'E';
  if (r === JitterPop.MISSING) return 'M';
  const expected = payload(jb.packetSeq, jb.packetLength);
  expect(jb.packet.subarray(0, jb.packetLength)).toEqual(expected);
  return jb.packetSeq;
}

describe('JitterBuffer basics', () => {
  it('plays in order', () => {
    const jb = new JitterBuffer();
    const out: (string | number)[] = [];
    for (let s = 100; s < 110; s++) {
      expect(jb.insert(s, payload(s), s * 20)).toBe(JitterInsert.ACCEPTED);
      out.push(step(jb, s * 20 + 1));
    }
    expect(out).toEqual([100, 101, 102, 103, 104, 105, 106, 107, 108, 109]);
    expect(step(jb, 1000_000)).toBe('E');
    expect(jb.stats()).toMatchObject({ received: 10, lost: 0, concealed: 0, drains: 1 });
  });

  it('reorders packets, including before the first playout', () => {
    const jb = new JitterBuffer({ adaptive: false, minTargetFrames: 3, maxTargetFrames: 3 });
    for (const s of [7, 5, 6]) jb.insert(s, payload(s), 0);
    expect([step(jb, 0), step(jb, 20), step(jb, 40)]).toEqual([5, 6, 7]);
    for (const s of [9, 8]) jb.insert(s, payload(s), 50);
    expect([step(jb, 60), step(jb, 80)]).toEqual([8, 9]);
  });

  it('drops and counts duplicates and late packets', () => {
    const jb = new JitterBuffer();
    expect(jb.insert(1, payload(1), 0)).toBe(JitterInsert.ACCEPTED);
    expect(jb.insert(2, payload(2), 0)).toBe(JitterInsert.ACCEPTED);
    expect(jb.insert(2, payload(2), 1)).toBe(JitterInsert.DUPLICATE);
    expect(step(jb, 5)).toBe(1);
    expect(jb.insert(1, payload(1), 6)).toBe(JitterInsert.LATE);
    expect(jb.insert(0, payload(0), 6)).toBe(JitterInsert.LATE);
    expect(jb.stats()).toMatchObject({ received: 2, duplicates: 1, late: 2 });
  });

  it('reports a hole as MISSING and exposes the next packet for FEC', () => {
    const jb = new JitterBuffer();
    for (const s of [1, 2, 4, 5]) jb.insert(s, payload(s), 0);
    expect(step(jb, 0)).toBe(1);
    expect(step(jb, 20)).toBe(2);
    expect(jb.pop(40)).toBe(JitterPop.MISSING);
    expect(jb.peekNext()).toBe(true);
    expect(jb.nextSeq).toBe(4);
    expect(jb.next.subarray(0, jb.nextLength)).toEqual(payload(4));
    expect(step(jb, 60)).toBe(4);
    expect(step(jb, 80)).toBe(5);
    expect(jb.peekNext()).toBe(false);
    expect(jb.stats()).toMatchObject({ lost: 1, concealed: 1 });
  });

  it('handles uint32 wrap-around', () => {
    const jb = new JitterBuffer();
    const seqs = [0xfffffffd, 0xfffffffe, 0xffffffff, 0, 1, 2];
    const out: (string | number)[] = [];
    seqs.forEach((s, i) => {
      jb.insert(s, payload(s), i * 20);
      out.push(step(jb, i * 20 + 1));
    });
    expect(out).toEqual(seqs);
    expect(jb.insert(0xffffffff, payload(1), 200)).toBe(JitterInsert.LATE);
  });

  it('re-buffers after a talkspurt ends and skips the pause', () => {
    const jb = new JitterBuffer({ adaptive: false, minTargetFrames: 2, maxTargetFrames: 2 });
    jb.insert(10, payload(10), 0);
    expect(step(jb, 0)).toBe('E'); // waiting for 2 frames
    jb.insert(11, payload(11), 20);
    expect([step(jb, 20), step(jb, 40), step(jb, 60)]).toEqual([10, 11, 'E']);
    expect(jb.playing).toBe(false);
    // Next talkspurt starts at 60 (the sender's clock ran on): no loss is counted for 12..59, and
    // it starts one frame (the target) after its expected arrival, as the first one did.
    jb.insert(60, payload(60), 1000);
    expect(step(jb, 1000)).toBe('E');
    jb.insert(61, payload(61), 1020);
    expect([step(jb, 1020), step(jb, 1040)]).toEqual([60, 61]);
    expect(jb.stats()).toMatchObject({ lost: 0, concealed: 0, drains: 1 });
  });

  it('starts a lone packet after the target delay (target - 1 frames, as if the others had come)', () => {
    const jb = new JitterBuffer({ adaptive: false, minTargetFrames: 3, maxTargetFrames: 3 });
    jb.insert(1, payload(1), 0);
    expect([step(jb, 0), step(jb, 20), step(jb, 39), step(jb, 40)]).toEqual(['E', 'E', 'E', 1]);
  });

  it('starts at the first pop at least marginMs after arrival: scheduling noise then never underruns', () => {
    // Arrivals 0.2 ms before the pops, one in 37 of them 1.5 ms late (a timer or scheduling hiccup
    // upstream): too rare for the p95, and the phase any clean link can have.
    const run = (marginMs: number) => {
      const jb = new JitterBuffer({ marginMs });
      const noise = Array.from({ length: 37 }, (_, i) => (i === 36 ? 1.5 : 0));
      let played = 0;
      let underruns = 0;
      let next = 0;
      for (let t = 0; t < 200; t++) {
        const pop = t * 20 + 0.2;
        // Everything that arrived by this pop goes in first.
        while (next * 20 + noise[next % noise.length]! <= pop) {
          jb.insert(next, payload(next), next * 20 + noise[next % noise.length]!);
          next++;
        }
        const r = step(jb, pop);
        if (typeof r === 'number') played++;
        else if (played > 0) underruns++;
      }
      return { underruns, stats: jb.stats() };
    };
    // Without a margin the buffer starts right at the first arrival's phase and underruns (once:
    // the peak then keeps the frame it grew by).
    expect(run(0).underruns).toBeGreaterThanOrEqual(1);
    const withMargin = run(2);
    expect(withMargin.underruns).toBe(0);
    expect(withMargin.stats).toMatchObject({ lost: 0, concealed: 0, overflowDrops: 0, drains: 0 });
    // The margin costs about one frame here (the next pop after arrival + 2 ms), not more.
    expect(withMargin.stats.delayMs).toBeLessThan(20 + 2 + 1);
  });

  it('starts a new talkspurt at the schedule the last one played at, when its first frame is there', () => {
    // Pops at every 20 ms tick. Arrivals spread over 2 ms (p95 of relative delay 2, margin 2: a
    // target of 4 ms after the earliest). The first talkspurt arrives 6-8 ms before the ticks; after
    // 3 s its sender moves 5 ms later (as a timing advance asks), 1-3 ms before the ticks: still on
    // time, once its delay window forgot the earlier arrivals under the target, which asks 4 ms.
    // After a pause of 20 frames the next talkspurt arrives at that same phase.
    const run = (pauseFrames: number) => {
      const jb = new JitterBuffer({ marginMs: 2 });
      const lead = (k: number) => (k < 150 ? 6 : 1) + (k % 2) * 2;
      const heldAt: number[] = [];
      let next = 0;
      const last = 300 + pauseFrames;
      for (let t = 0; t <= last + 3; t++) {
        const tick = t * 20;
        for (; next <= last; next++) {
          if (next >= 250 && next < 250 + pauseFrames) continue; // the pause: nothing sent
          const at = next * 20 - lead(next);
          if (at > tick) break;
          jb.insert(next, payload(next), at);
        }
        const r = step(jb, tick);
        if (typeof r === 'number') heldAt[r] = tick - (r * 20 - lead(r));
      }
      return { heldAt, stats: jb.stats() };
    };
    const { heldAt, stats } = run(20);
    expect(heldAt[100]).toBe(6); // the first talkspurt plays each frame at the tick it leads
    expect(heldAt[200]).toBe(1); // and keeps playing at it after the move: on time
    // The next talkspurt starts at that tick too (the target alone would wait for the next one: a
    // frame more, 21-23 ms, for the whole talkspurt), and plays to its end without an underrun.
    for (let k = 270; k <= 320; k++) expect(heldAt[k], `frame ${k}`).toBe(k % 2 ? 3 : 1);
    expect(stats).toMatchObject({ lost: 0, concealed: 0, late: 0, drains: 2 });
    // A pause over 10 s: the schedule is not trusted after that long (clocks drift); the target rules.
    const long = run(600).heldAt;
    expect(long[860]).toBeGreaterThan(20);
  });

  it('judges a start at the play time: a late pop does not start on a packet that came after it', () => {
    // Packets 5 ms after the ticks' due times; the first pop runs 10 ms late (this process stalled).
    const run = (firstLateMs: number) => {
      const jb = new JitterBuffer({ marginMs: 2 });
      const out: (string | number)[] = [];
      let next = 0;
      for (let t = 0; t < 12; t++) {
        const late = t === 0 ? firstLateMs : 0;
        const now = t * 20 + late;
        for (; next * 20 + 5 <= now; next++) jb.insert(next, payload(next), next * 20 + 5);
        const r = jb.pop(now, late);
        out.push(r === JitterPop.PACKET ? jb.packetSeq : r === JitterPop.MISSING ? 'M' : 'E');
      }
      return { out, stats: jb.stats() };
    };
    // Packet 0 came 5 ms after the first pop's play time: the start waits for the next tick, where
    // every later packet is on time too.
    const { out, stats } = run(10);
    expect(out).toEqual(['E', 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(stats).toMatchObject({ drains: 0, concealed: 0, lost: 0, late: 0 });
    expect(run(0).out).toEqual(out);
  });

  it('drops invalid packets and restarts on a sequence jump', () => {
    const jb = new JitterBuffer({ maxPacketBytes: 100 });
    expect(jb.insert(1, new Uint8Array(0), 0)).toBe(JitterInsert.INVALID);
    expect(jb.insert(1, new Uint8Array(101), 0)).toBe(JitterInsert.INVALID);
    expect(jb.insert(1, new Uint8Array(101), 0, 100)).toBe(JitterInsert.ACCEPTED);
    expect(jb.insert(1_000_000, payload(1_000_000), 0)).toBe(JitterInsert.ACCEPTED);
    expect(jb.stats()).toMatchObject({ invalid: 2, resets: 1 });
    expect(step(jb, 0)).toBe(1_000_000);
  });

  it('drops the oldest when the ring would overflow', () => {
    const jb = new JitterBuffer({ capacity: 8, maxTargetFrames: 4 });
    for (let s = 0; s < 20; s++) jb.insert(s, payload(s), 0);
    expect(jb.buffered).toBe(8);
    expect(jb.stats().overflowDrops).toBe(12);
    expect(step(jb, 0)).toBe(12);
  });
});

/** A deliberately simple reference: a Map and the same rules, fixed target of one frame. */
class ModelBuffer {
  private state: 'idle' | 'buffering' | 'playing' = 'idle';
  private started = false;
  private head = 0;
  private newest = 0;
  readonly packets = new Map<number, number>();
  received = 0;
  late = 0;
  duplicates = 0;
  constructor(private readonly cap: number) {}

  insert(seq: number): number {
    if (this.state === 'idle') {
      this.state = 'buffering';
      this.head = seq;
      this.newest = seq;
    }
    if (seq < this.head) {
      if (!this.started && this.newest - seq < this.cap) this.head = seq;
      else {
        this.late++;
        return JitterInsert.LATE;
      }
    }
    if (seq - this.head >= this.cap) {
      const to = seq - this.cap + 1;
      for (const k of [...this.packets.keys()]) if (k < to) this.packets.delete(k);
      this.head = to;
    }
    if (this.packets.has(seq)) {
      this.duplicates++;
      return JitterInsert.DUPLICATE;
    }
    this.packets.set(seq, seq);
    this.newest = Math.max(this.newest, seq);
    this.received++;
    return JitterInsert.ACCEPTED;
  }

  pop(): string | number {
    if (this.state === 'idle') return 'E';
    if (this.state === 'buffering') {
      if (this.packets.size === 0) return 'E';
      this.head = Math.min(...this.packets.keys());
      this.state = 'playing';
      this.started = true;
    }
    if (this.packets.has(this.head)) {
      this.packets.delete(this.head);
      return this.head++;
    }
    if (this.packets.size > 0) {
      this.head++;
      return 'M';
    }
    this.state = 'buffering';
    return 'E';
  }
}

describe('JitterBuffer against a model (property)', () => {
  const op = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 0, max: 150 }).map((s) => ({ kind: 'insert' as const, s })) },
    { weight: 2, arbitrary: fc.constant({ kind: 'pop' as const, s: 0 }) },
  );

  it('matches the model on any sequence of inserts (in order, reordered, duplicate, late, lost) and pops', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
        const cap = 16;
        const jb = new JitterBuffer({
          capacity: cap,
          adaptive: false,
          catchUpMs: 0,
          resetGapFrames: 1 << 20,
        });
        const model = new ModelBuffer(cap);
        let now = 0;
        for (const o of ops) {
          now += 5;
          if (o.kind === 'insert') {
            expect(jb.insert(o.s, payload(o.s), now)).toBe(model.insert(o.s));
          } else {
            expect(step(jb, now)).toEqual(model.pop());
          }
          expect(jb.buffered).toBe(model.packets.size);
          expect(jb.buffered).toBeLessThanOrEqual(cap);
        }
        const st = jb.stats();
        expect([st.received, st.late, st.duplicates]).toEqual([model.received, model.late, model.duplicates]);
      }),
      { numRuns: 300 },
    );
  });

  it('with adaptation and catch-up on: plays each packet at most once, in order, and accounts for all', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 120 }), fc.boolean()), {
          minLength: 50,
          maxLength: 400,
        }),
        (spec) => {
          // Packet i is sent at 20*i, delayed by a jitter, maybe lost, maybe duplicated.
          const arrivals: [number, number][] = [];
          spec.forEach(([dup, jitter, lose], i) => {
            if (lose && i % 7 === 0) return;
            for (let d = 0; d <= (dup === 5 ? 1 : 0); d++) arrivals.push([20 * i + jitter + d, i]);
          });
          arrivals.sort((a, b) => a[0] - b[0]);
          const jb = new JitterBuffer({ capacity: 32 });
          let last = -1;
          let played = 0;
          let ai = 0;
          for (let t = 3; t < spec.length * 20 + 400; t += 20) {
            while (ai < arrivals.length && arrivals[ai]![0] <= t) {
              const [at, seq] = arrivals[ai++]!;
              jb.insert(seq, payload(seq), at);
            }
            const r: JitterPopResult = jb.pop(t);
            if (r === JitterPop.PACKET) {
              expect(jb.packetSeq).toBeGreaterThan(last);
              expect(jb.packet.subarray(0, jb.packetLength)).toEqual(payload(jb.packetSeq));
              last = jb.packetSeq;
              played++;
            }
            expect(jb.target).toBeGreaterThanOrEqual(1);
            expect(jb.target).toBeLessThanOrEqual(10);
          }
          const st = jb.stats();
          expect(st.received + st.late + st.duplicates).toBe(arrivals.length);
          expect(st.received).toBe(played + st.overflowDrops + st.staleDrops + jb.buffered);
        },
      ),
      { numRuns: 100 },
    );
  });
});

describe('JitterBuffer adaptation', () => {
  /** Runs a 20 ms stream; jitter(i) is packet i's extra delay. Returns per-second snapshots. */
  function simulate(frames: number, jitter: (i: number) => number, jb = new JitterBuffer()) {
    const arrivals: [number, number][] = [];
    for (let i = 0; i < frames; i++) arrivals.push([i * 20 + 30 + jitter(i), i]);
    arrivals.sort((a, b) => a[0] - b[0]);
    const pkt = payload(0, 60);
    const seconds: { target: number; depth: number; missing: number; empty: number; delayMs: number }[] = [];
    const trace: { t: number; delayMs: number }[] = [];
    let missing = 0;
    let empty = 0;
    let ai = 0;
    for (let t = 7, k = 0; t < frames * 20; t += 20, k++) {
      while (ai < arrivals.length && arrivals[ai]![0] <= t) {
        jb.insert(arrivals[ai]![1], pkt, arrivals[ai]![0]);
        ai++;
      }
      const depth = jb.depth;
      const r = jb.pop(t);
      trace.push({ t, delayMs: jb.stats().delayMs });
      if (k > 10 && r === JitterPop.MISSING) missing++;
      if (k > 10 && r === JitterPop.EMPTY) empty++;
      if (k % 50 === 49) {
        seconds.push({ target: jb.target, depth, missing, empty, delayMs: jb.stats().delayMs });
        missing = 0;
        empty = 0;
      }
    }
    return { seconds, stats: jb.stats(), trace };
  }

  let seed = 12345;
  const random = (): number => {
    seed = (seed * 1_103_515_245 + 12_345) & 0x7fffffff;
    return seed / 0x80000000;
  };

  it('keeps one frame of target without jitter', () => {
    const { seconds, stats } = simulate(500, () => 0);
    expect(seconds).toHaveLength(10);
    for (const s of seconds) expect(s).toMatchObject({ target: 1, missing: 0, empty: 0 });
    expect(stats.delayPercentileMs).toBeLessThan(2);
  });

  it('grows the target under jitter, plays without loss, and shrinks back when it calms down', () => {
    // 0-5 s calm, 5-15 s uniform 0..60 ms jitter, 15-25 s calm.
    const jitter = (i: number): number => (i >= 250 && i < 750 ? random() * 60 : 0);
    const { seconds, stats } = simulate(1250, jitter);
    const during = seconds.slice(8, 15);
    const after = seconds.slice(20);
    expect(seconds[3]!.target).toBe(1);
    for (const s of during) {
      expect(s.target).toBeGreaterThanOrEqual(3);
      expect(s.target).toBeLessThanOrEqual(4);
      expect(s.missing + s.empty).toBe(0);
    }
    for (const s of after) {
      expect(s.target).toBe(1);
      expect(s.depth).toBeLessThanOrEqual(2);
    }
    expect(stats.overflowDrops).toBeGreaterThan(0); // caught up by dropping
    expect(stats.late).toBeLessThan(5);
  });

  it('gives the delay back within 2 s after a jitter burst', () => {
    // Calm, then one second of 0..100 ms jitter (ends at 6 s), then calm.
    const jitter = (i: number): number => (i >= 250 && i < 300 ? random() * 100 : 0);
    const { seconds, trace } = simulate(750, jitter);
    const calm = seconds[3]!.delayMs;
    expect(Math.max(...seconds.slice(5, 7).map((s) => s.delayMs))).toBeGreaterThan(calm + 40);
    // The last packet of the burst arrives by 6.13 s; from 8.13 s on the delay is the calm one again.
    for (const p of trace.filter((p) => p.t >= 8130)) expect(p.delayMs).toBeLessThan(calm + 20);
  });

  it('drops a stalled sender’s backlog when it resumes instead of playing it late', () => {
    // The sender stalls 400 ms at 4 s, then its 20 frames arrive at once.
    const jitter = (i: number): number => (i >= 200 && i < 220 ? (220 - i) * 20 : 0);
    const { seconds, stats, trace } = simulate(500, jitter);
    const calm = seconds[2]!.delayMs;
    // The backlog arrives at 4.43 s; from 6.43 s on the delay is the calm one again.
    expect(Math.max(...trace.map((p) => p.delayMs))).toBeGreaterThan(calm + 100);
    for (const p of trace.filter((p) => p.t >= 6430)) expect(p.delayMs).toBeLessThan(calm + 20);
    expect(stats.staleDrops).toBeGreaterThanOrEqual(10);
  });

  it('with peakMinMs, scheduling noise is not a recurring peak: a later burst is not held', () => {
    // Every 300 ms one packet 8 ms late (noise above a 2 ms margin), then at 6 s one 40 ms burst.
    const jitter = (i: number): number => (i === 300 ? 40 : i === 301 ? 20 : i % 15 === 7 ? 8 : 0);
    const opts = { marginMs: 2, catchUpMs: 300 };
    const held = simulate(600, jitter, new JitterBuffer(opts));
    const noisy = simulate(600, jitter, new JitterBuffer({ ...opts, peakMinMs: 20 }));
    // Without it each 8 ms packet is a peak: peak mode, and the burst's 40 ms stays the target.
    expect(held.seconds[9]!.target).toBeGreaterThanOrEqual(3);
    // With it, only the burst passes the target by a frame: a single peak, forgotten.
    expect(noisy.seconds[9]!.target).toBe(1);
    expect(noisy.stats.targetDelayMs).toBeLessThan(12);
  });

  it('caps the target at maxTargetFrames under huge jitter', () => {
    const { seconds } = simulate(1000, () => random() * 400);
    expect(seconds[seconds.length - 1]!.target).toBe(10);
  });

  it('holds at most its capacity whatever arrives, and a flood keeps the newest packets, playable', () => {
    const jb = new JitterBuffer();
    // memoryBytes sums arrays fixed at construction, so comparing it before and after proves nothing;
    // what a flood must not do is grow the count past the ring or leave it unable to play.
    expect(jb.memoryBytes).toBeLessThan(100_000);
    const pkt = new Uint8Array(1000);
    let most = 0;
    for (let i = 0; i < 200_000; i++) {
      jb.insert((random() * 2 ** 32) >>> 0, pkt, i);
      if (i % 3 === 0) jb.pop(i);
      most = Math.max(most, jb.buffered);
    }
    expect(most).toBeLessThanOrEqual(jb.capacity);
    expect(most).toBeGreaterThan(0);
    // A flood without pops: the ring keeps exactly the newest `capacity` packets, and plays them in
    // order with their own payloads (catch-up off: it would rightly drop the excess over target).
    const flood = 100_000;
    const fresh = new JitterBuffer({ adaptive: false, catchUpMs: 0 });
    for (let i = 0; i < flood; i++) fresh.insert(i, payload(i), i / 10);
    expect(fresh.buffered).toBe(fresh.capacity);
    const played: (string | number)[] = [];
    for (let k = 0; k < fresh.capacity; k++) played.push(step(fresh, flood / 10 + 1000 + k * 20));
    expect(played).toEqual(Array.from({ length: fresh.capacity }, (_, k) => flood - fresh.capacity + k));
    expect(fresh.buffered).toBe(0);
  });
});
