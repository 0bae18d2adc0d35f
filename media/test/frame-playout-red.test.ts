import { describe, expect, it } from 'vitest';
import { createRedBlock, encodeRed, readRedBlock } from '@voice/protocol';
import {
  FramePlayout,
  JitterBuffer,
  JitterInsert,
  PlayoutFrame,
  createOpus,
  type OpusFactory,
} from '../src/index.js';

/**
 * Redundant audio (RED, protocol README 9.1): a packet also carries the previous frame's Opus bytes,
 * so a lost packet is rebuilt exactly from the next one. Real libopus: the playout's output must be
 * sample-identical to decoding every packet, and the count must say how many frames came from a copy.
 */

const FRAME = 960;

/** A tone whose pitch changes every frame: concealment cannot guess a frame, only its bytes rebuild it. */
function chirpFrame(f: number, out: Int16Array): void {
  const hz = 300 + ((f * 137) % 900);
  for (let i = 0; i < FRAME; i++)
    out[i] = Math.round(4000 * Math.sin((2 * Math.PI * hz * (f * FRAME + i)) / 48_000));
}

function encodeAll(opus: OpusFactory, frames: number): Uint8Array[] {
  const enc = opus.createEncoder({ frameSamples: FRAME, fec: false, bitrate: 32_000 });
  const pcm = new Int16Array(FRAME);
  const buf = new Uint8Array(1500);
  const out: Uint8Array[] = [];
  for (let f = 0; f < frames; f++) {
    chirpFrame(f, pcm);
    out.push(buf.slice(0, enc.encode(pcm, buf)));
  }
  enc.destroy();
  return out;
}

/** What a loss-free link plays: every packet decoded in order by one decoder. */
function decodeAll(opus: OpusFactory, packets: Uint8Array[]): Int16Array {
  const dec = opus.createDecoder({ frameSamples: FRAME });
  const out = new Int16Array(packets.length * FRAME);
  for (const [f, p] of packets.entries()) dec.decode(p, out.subarray(f * FRAME, (f + 1) * FRAME), p.length);
  dec.destroy();
  return out;
}

/**
 * Plays `packets` through a FramePlayout: packet f arrives at f * 20 ms (`lost` ones never), carrying
 * the packet before it when `red`; a frame is pulled every 20 ms, `delayFrames` after the first arrival.
 */
function play(
  opus: OpusFactory,
  packets: Uint8Array[],
  lost: ReadonlySet<number>,
  red: boolean,
  delayFrames: number,
  minTargetFrames = 1,
  growLookAheadWhenQuiet = false,
) {
  const p = new FramePlayout({
    frameSamples: FRAME,
    decoder: opus.createDecoder({ frameSamples: FRAME }),
    jitter: { minTargetFrames, catchUpMs: 0 },
    growLookAheadWhenQuiet,
  });
  const n = packets.length;
  const out = new Int16Array(n * FRAME);
  const kinds: number[] = [];
  const frame = new Int16Array(FRAME);
  const block = createRedBlock();
  let played = 0;
  for (let t = 0; played < n; t++) {
    const now = t * 20;
    if (t < n && !lost.has(t)) {
      const ts = t * FRAME;
      if (red && t > 0) {
        // As the wire carries it (protocol README 9.1): [R][the frame before][this frame].
        const b = encodeRed(packets[t - 1]!, packets[t]!)!;
        expect(readRedBlock(b, 0, b.length, block)).toBe(true);
        p.insertRedTimestamp(ts, b, block, now + 0.5);
      } else p.insertTimestamp(ts, packets[t]!, packets[t]!.length, now + 0.5);
    }
    if (t < delayFrames) continue;
    const k = p.next(now + 1, frame);
    if (played === 0 && k === PlayoutFrame.SILENT) continue; // not started yet
    kinds.push(k);
    out.set(frame, played * FRAME);
    played++;
  }
  const s = p.stats();
  p.close();
  return { out, kinds, stats: s };
}

let opus: OpusFactory;

describe('FramePlayout with RED (real Opus)', () => {
  it('rebuilds isolated losses sample for sample from the next packet, counted; without RED it cannot', async () => {
    opus = await createOpus();
    const packets = encodeAll(opus, 120);
    const ref = decodeAll(opus, packets);
    // Every 6th packet from the 3rd on is lost, never two in a row (20 of 120, about 17 %).
    const lost = new Set<number>();
    for (let f = 3; f < 120; f += 6) lost.add(f);
    // A buffer of 2 frames: the next packet is here when the lost frame is due.
    const withRed = play(opus, packets, lost, true, 2, 2);
    let diff = 0;
    for (let i = 0; i < ref.length; i++) if (withRed.out[i] !== ref[i]) diff++;
    expect(diff).toBe(0);
    expect(withRed.stats.redRecovered).toBe(lost.size);
    expect(withRed.stats.concealed).toBe(0);
    expect(withRed.stats.lost).toBe(0);
    expect(withRed.kinds.every((k) => k === PlayoutFrame.DECODED)).toBe(true);

    const noRed = play(opus, packets, lost, false, 2, 2);
    let diffNo = 0;
    for (let i = 0; i < ref.length; i++) if (noRed.out[i] !== ref[i]) diffNo++;
    expect(diffNo).toBeGreaterThan(lost.size * FRAME * 0.5);
    expect(noRed.stats.redRecovered).toBe(0);
    expect(noRed.stats.concealed).toBe(lost.size);
  });

  it("with the smallest buffer, the look-ahead grows at the first copy, at the talkspurt's start, and every loss is rebuilt", async () => {
    opus ??= await createOpus();
    const packets = encodeAll(opus, 150);
    const lost = new Set([10, 40, 70, 100, 130]);
    const r = play(opus, packets, lost, true, 0, 1);
    // Copies come from the second packet on: one concealed frame right after it grows the buffer by
    // the frame of look-ahead (at the start of speech, not at the first loss, mid-word); the copy
    // of every lost frame is then here in time.
    const concealedAt = r.kinds.flatMap((k, i) => (k === PlayoutFrame.CONCEALED ? [i] : []));
    expect(concealedAt).toEqual([1]);
    expect(r.stats.expanded).toBe(1);
    expect(r.stats.redRecovered).toBe(5);
    expect(r.stats.lookAhead).toBe(1);
    expect(r.stats.lost).toBe(0);
    // After the growth, the frames one tick late, sample for sample (no other slip).
    const dec = opus.createDecoder({ frameSamples: FRAME });
    const ref = new Int16Array(r.out.length);
    for (let t = 0; t < r.out.length / FRAME; t++) {
      const at = ref.subarray(t * FRAME, (t + 1) * FRAME);
      const f = t < 1 ? t : t - 1;
      if (t === 1) dec.conceal(at);
      else dec.decode(packets[f]!, at, packets[f]!.length);
    }
    dec.destroy();
    let diff = 0;
    for (let i = 0; i < ref.length; i++) if (r.out[i] !== ref[i]) diff++;
    expect(diff).toBe(0);
  });

  it('growing when quiet, with the smallest buffer, the first copy comes a frame late and is left unplayed (no slip); loud all along, the look-ahead grows a second later and rebuilds every later loss', async () => {
    opus ??= await createOpus();
    const packets = encodeAll(opus, 150);
    const lost = new Set([10, 40, 70, 100, 130]);
    const r = play(opus, packets, lost, true, 0, 1, true);
    // 10 and 40 (before the growth) are concealed while the buffer is dry, their late copies left
    // unplayed; the chirp is never quiet, so one concealed frame grows the buffer 1 s (50 frames)
    // after the first copy came (frame 1); the copies of 70, 100 and 130 are then here in time.
    expect(r.stats.redRecovered).toBe(3);
    expect(r.stats.lookAhead).toBe(1);
    expect(r.stats.lost).toBe(2);
    expect(r.stats.expanded).toBe(1);
    expect(r.stats.concealed).toBe(3);
    const concealedAt = r.kinds.flatMap((k, i) => (k === PlayoutFrame.CONCEALED ? [i] : []));
    expect(concealedAt).toEqual([10, 40, 51]);
  });

  it('growing when quiet, conceals the first lost frame without a slip, grows the look-ahead in the next quiet frames, then rebuilds a loss exactly', async () => {
    opus ??= await createOpus();
    // A loud chirp with 100 ms of digital silence at frames 30..34: the only quiet frames.
    const enc = opus.createEncoder({ frameSamples: FRAME, fec: false, bitrate: 32_000 });
    const pcm = new Int16Array(FRAME);
    const buf = new Uint8Array(1500);
    const packets: Uint8Array[] = [];
    for (let f = 0; f < 80; f++) {
      if (f >= 30 && f < 35) pcm.fill(0);
      else chirpFrame(f, pcm);
      packets.push(buf.slice(0, enc.encode(pcm, buf)));
    }
    enc.destroy();
    const r = play(opus, packets, new Set([10, 50]), true, 0, 1, true);
    // The growth: one concealed frame after the tick of frame 10's loss, inside the quiet stretch
    // (its frames play at ticks 30..34 until then; inserted after the first quiet one decoded).
    const concealedAt = r.kinds.flatMap((k, i) => (k === PlayoutFrame.CONCEALED ? [i] : []));
    expect(concealedAt).toHaveLength(2);
    expect(concealedAt[0]).toBe(10);
    const g = concealedAt[1]!;
    expect(g).toBeGreaterThan(30);
    expect(g).toBeLessThanOrEqual(35);
    expect(r.stats.expanded).toBe(1);
    // Frame 50's copy came in time: rebuilt, not concealed.
    expect(r.stats.redRecovered).toBe(1);
    expect(r.stats.lost).toBe(1);
    // What the playout must have played, by one decoder: 0..9, frame 10 concealed, 11 on at their
    // own ticks (no slip: the late copy of 10 unplayed), one concealed frame at tick g, then the rest
    // one tick later, 50 from its copy's bytes. Sample for sample.
    const dec = opus.createDecoder({ frameSamples: FRAME });
    const ref = new Int16Array(r.out.length);
    let f = 0;
    for (let t = 0; t < r.out.length / FRAME; t++) {
      const at = ref.subarray(t * FRAME, (t + 1) * FRAME);
      if (t === 10 || t === g) dec.conceal(at);
      else dec.decode(packets[f]!, at, packets[f]!.length);
      if (t !== g) f++;
    }
    dec.destroy();
    let diff = 0;
    for (let i = 0; i < ref.length; i++) if (r.out[i] !== ref[i]) diff++;
    expect(diff).toBe(0);
  });
  it('a stream that carries RED starts its next talkspurt with the look-ahead in place: its losses are rebuilt in time, no frame concealed, no slip', async () => {
    opus ??= await createOpus();
    // Talkspurt 1: frames 0..49, no loss; a pause (50..69 never sent); talkspurt 2: 70..119, its
    // first packet without a copy (MARKER never carries RED), 72 and 100 lost.
    const packets = encodeAll(opus, 120);
    const sent = (f: number) => f < 50 || f >= 70;
    const lost = new Set([72, 100]);
    const p = new FramePlayout({
      frameSamples: FRAME,
      decoder: opus.createDecoder({ frameSamples: FRAME }),
      jitter: { minTargetFrames: 1, catchUpMs: 0 },
    });
    const block = createRedBlock();
    const frame = new Int16Array(FRAME);
    const ticks = 130;
    const out = new Int16Array(ticks * FRAME);
    const kinds: number[] = [];
    for (let t = 0; t < ticks; t++) {
      const now = t * 20;
      if (t < 120 && sent(t) && !lost.has(t)) {
        if (t > 0 && t !== 70) {
          const b = encodeRed(packets[t - 1]!, packets[t]!)!;
          expect(readRedBlock(b, 0, b.length, block)).toBe(true);
          p.insertRedTimestamp(t * FRAME, b, block, now + 0.5);
        } else p.insertTimestamp(t * FRAME, packets[t]!, packets[t]!.length, now + 0.5);
      }
      kinds.push(p.next(now + 1, frame));
      out.set(frame, t * FRAME);
    }
    // Talkspurt 2 starts a frame after its first packet came (the look-ahead: the cost, 20 ms, paid
    // only while the sender sends RED, that is while its link loses packets), then plays every frame
    // from a packet or a copy.
    const start = kinds.indexOf(PlayoutFrame.DECODED, 60);
    expect(start).toBe(71);
    expect(kinds.slice(start, start + 50).every((k) => k === PlayoutFrame.DECODED)).toBe(true);
    // Sample for sample what a fresh decoder makes of 70..119 (a talkspurt after a pause starts from
    // a fresh decoder): the copies of 72 and 100 are exactly their frames.
    const ref = decodeAll(opus, packets.slice(70, 120));
    let diff = 0;
    for (let i = 0; i < ref.length; i++) if (out[start * FRAME + i] !== ref[i]) diff++;
    expect(diff).toBe(0);
    const s = p.stats();
    expect(s.lookAhead).toBe(1);
    expect(s.lost).toBe(0);
    p.close();
  });
});

describe('JitterBuffer.insertRedundant', () => {
  const pkt = (v: number): Uint8Array => Uint8Array.of(v, v, v);

  it('fills a missing frame, and is a no-op (counted nowhere) for a frame buffered, played or out of range', () => {
    const jb = new JitterBuffer({ frameMs: 20, catchUpMs: 0 });
    expect(jb.insertRedundant(4, pkt(4), 3)).toBe(false); // nothing buffered yet: no stream to fill
    expect(jb.insert(5, pkt(5), 0)).toBe(JitterInsert.ACCEPTED);
    // Before the first playout a copy of the frame before starts the stream earlier, as insert does.
    expect(jb.insertRedundant(4, pkt(4), 3)).toBe(true);
    expect(jb.insertRedundant(4, pkt(9), 3)).toBe(false); // already there
    expect(jb.insertRedundant(6, pkt(6), 3)).toBe(false); // after the newest: not a copy of a past frame
    expect(jb.pop(100)).toBe(0);
    expect([jb.packetSeq, jb.packetRedundant, jb.packet[0]]).toEqual([4, true, 4]);
    expect(jb.pop(120)).toBe(0);
    expect([jb.packetSeq, jb.packetRedundant]).toEqual([5, false]);
    jb.insert(7, pkt(7), 140);
    expect(jb.insertRedundant(5, pkt(5), 3)).toBe(false); // played
    expect(jb.insertRedundant(6, pkt(6), 3)).toBe(true); // missing, its turn not come
    const st = jb.stats();
    expect({
      late: st.late,
      duplicates: st.duplicates,
      received: st.received,
      redundant: st.redundant,
    }).toEqual({
      late: 0,
      duplicates: 0,
      received: 2,
      redundant: 2,
    });
  });

  it("lets the frame's own packet, reordered behind its copy, take the slot over", () => {
    const jb = new JitterBuffer({ frameMs: 20, catchUpMs: 0 });
    jb.insert(1, pkt(1), 0);
    jb.insert(3, pkt(3), 40);
    expect(jb.insertRedundant(2, pkt(2), 3)).toBe(true);
    expect(jb.insert(2, pkt(2), 41)).toBe(JitterInsert.ACCEPTED);
    expect(jb.stats().duplicates).toBe(0);
    jb.pop(100);
    jb.pop(120);
    expect([jb.packetSeq, jb.packetRedundant]).toEqual([2, false]);
    jb.pop(140);
    expect(jb.packetSeq).toBe(3);
    expect(jb.buffered).toBe(0);
  });
});
