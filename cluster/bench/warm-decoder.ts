/**
 * What a speaker's server-side decoder costs the mix when it resumes after frames it skipped (every
 * listener took that speaker as STREAM packets, so nothing was decoded): the first frame decoded
 * after the switch against the same frame from a decoder that never stopped. Resumed stale (the
 * state it had when it stopped), cold (reset), or reset and warmed with the last 1-3 skipped packets
 * (FramePlayoutOptions.warmFrames). Signal: a voiced 150 Hz buzz with harmonics plus a gliding tone,
 * so both SILK's and CELT's inter-frame state matter; 32 kbit/s VOIP, complexity 9, 20 ms frames.
 *
 *   node --conditions=source --import tsx cluster/bench/warm-decoder.ts [--backend libopus|opusscript]
 */
import { createOpus, type OpusBackendName } from '@voice/media';

const FRAME = 960;
const FRAMES = 300;

function signal(): Int16Array {
  const out = new Int16Array(FRAMES * FRAME);
  let phase = 0;
  for (let i = 0; i < out.length; i++) {
    const t = (2 * Math.PI * 150 * i) / 48_000;
    // A glide between 500 and 1500 Hz every 0.8 s: the spectrum keeps moving, as speech does.
    const f = 1000 + 500 * Math.sin((2 * Math.PI * i) / 38_400);
    phase += (2 * Math.PI * f) / 48_000;
    out[i] = Math.round(5000 * Math.sin(t) + 2500 * Math.sin(2 * t + 0.3) + 3000 * Math.sin(phase));
  }
  return out;
}

function db(x: number): number {
  return 10 * Math.log10(Math.max(x, 1e-12));
}

/** Error of `got` against `ref` (energy ratio, dB) and the loudest 1 ms window of the difference, dBFS. */
function compare(ref: Int16Array, got: Int16Array): { errDb: number; peakDb: number } {
  let e = 0;
  let s = 0;
  let peak = 0;
  for (let w = 0; w < ref.length; w += 48) {
    let we = 0;
    for (let i = w; i < w + 48; i++) {
      const d = got[i]! - ref[i]!;
      we += d * d;
      s += ref[i]! * ref[i]!;
    }
    e += we;
    peak = Math.max(peak, we / 48);
  }
  return { errDb: db(e / s), peakDb: db(peak / (32768 * 32768)) };
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--backend');
  const backend = (i > 0 ? process.argv[i + 1] : 'auto') as OpusBackendName | 'auto';
  const opus = await createOpus({ backend });
  const pcm = signal();
  const enc = opus.createEncoder({ frameSamples: FRAME, bitrate: 32_000, complexity: 9, fec: false });
  const packets: Uint8Array[] = [];
  const buf = new Uint8Array(1000);
  for (let f = 0; f < FRAMES; f++) {
    const n = enc.encode(pcm.subarray(f * FRAME, (f + 1) * FRAME), buf);
    packets.push(buf.slice(0, n));
  }
  enc.destroy();
  // The reference: one decoder through every frame.
  const ref = new Int16Array(FRAMES * FRAME);
  const d0 = opus.createDecoder({ frameSamples: FRAME });
  for (let f = 0; f < FRAMES; f++) d0.decode(packets[f]!, ref.subarray(f * FRAME, (f + 1) * FRAME));
  d0.destroy();
  const out = new Int16Array(FRAME);
  const scratch = new Int16Array(FRAME);
  const ways = ['stale', 'cold', 'warm1', 'warm2', 'warm3'] as const;
  const rows: Record<string, { err: number[]; peak: number[]; next: number[] }> = {};
  for (const w of ways) rows[w] = { err: [], peak: [], next: [] };
  // Switches every 13 frames after the first second; the stale decoder stopped 10 frames earlier.
  for (let k = 60; k < FRAMES - 2; k += 13) {
    for (const w of ways) {
      const d = opus.createDecoder({ frameSamples: FRAME });
      if (w === 'stale') for (let f = 0; f < k - 10; f++) d.decode(packets[f]!, scratch);
      const warm = w.startsWith('warm') ? Number(w.slice(4)) : 0;
      for (let f = k - warm; f < k; f++) d.decode(packets[f]!, scratch);
      d.decode(packets[k]!, out);
      const r = compare(ref.subarray(k * FRAME, (k + 1) * FRAME), out);
      d.decode(packets[k + 1]!, out);
      const r2 = compare(ref.subarray((k + 1) * FRAME, (k + 2) * FRAME), out);
      rows[w]!.err.push(r.errDb);
      rows[w]!.peak.push(r.peakDb);
      rows[w]!.next.push(r2.errDb);
      d.destroy();
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
  const worst = (a: number[]) => Math.max(...a);
  console.log(`backend ${opus.backend}, ${rows.cold!.err.length} switches`);
  console.log(
    'resume | first frame error vs continuous (median / worst, dB) | loudest 1 ms error (worst, dBFS) | second frame (median, dB)',
  );
  for (const w of ways) {
    const r = rows[w]!;
    console.log(
      `${w.padEnd(6)} | ${median(r.err).toFixed(1)} / ${worst(r.err).toFixed(1)} | ${worst(r.peak).toFixed(1)} | ${median(r.next).toFixed(1)}`,
    );
  }
}

void main();
