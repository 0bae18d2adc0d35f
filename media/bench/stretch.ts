import { FramePlayout, TimeStretch, createOpus } from '../src/index.js';
import { isMain, measure, printFigures } from './util.js';

/**
 * Cost of time-stretching (the server's member playouts and the client's playout use it):
 * - one accelerate at 20 ms frames on voiced audio (the period search over 2.5-15 ms and the
 *   splice), and one on noise, where the search finds nothing to splice (its whole cost, no splice);
 * - FramePlayout.next per frame on a clean link with and without timeStretch (decode included):
 *   what the sync buffer's copies add when nothing is stretched.
 */
export async function benchStretch(): Promise<Record<string, number>> {
  const n = 960;
  const region = 2 * n;
  const voiced = new Int16Array(region);
  for (let i = 0; i < region; i++) {
    const t = (2 * Math.PI * 150 * i) / 48_000;
    voiced[i] = Math.round(8000 * Math.sin(t) + 4000 * Math.sin(2 * t + 0.3) + 2000 * Math.sin(3 * t + 1.1));
  }
  let seed = 1;
  const noise = Int16Array.from({ length: region }, () => {
    seed = (seed * 1_103_515_245 + 12_345) >>> 0;
    return (seed >>> 16) - 32_768;
  });
  const buf = new Int16Array(region);
  const ts = new TimeStretch({ maxPeriod: 720 });
  const accelerate = (src: Int16Array) => (iterations: number) => {
    for (let i = 0; i < iterations; i++) {
      buf.set(src);
      ts.accelerate(buf, 0, region);
    }
  };
  const copyOnly = measure((iterations) => {
    for (let i = 0; i < iterations; i++) buf.set(voiced);
  });
  const voicedNs = measure(accelerate(voiced)) - copyOnly;
  if (ts.accelerated === 0) throw new Error('benchStretch: the voiced region was never spliced');
  const before = ts.accelerated;
  const noiseNs = measure(accelerate(noise)) - copyOnly;
  if (ts.accelerated !== before) throw new Error('benchStretch: noise was spliced');

  // A clean link: one packet per pull, 3 ms early, pulled at exact 20 ms ticks.
  const opus = await createOpus();
  const enc = opus.createEncoder({ frameSamples: n, bitrate: 64_000, complexity: 9, fec: false });
  const pkt = new Uint8Array(1500);
  const packets = Array.from({ length: 50 }, (_, f) => {
    const pcm = new Int16Array(n);
    for (let i = 0; i < n; i++) pcm[i] = voiced[(f * n + i) % region]!;
    return pkt.slice(0, enc.encode(pcm, pkt));
  });
  enc.destroy();
  const nextUs = (timeStretch: boolean): number => {
    const p = new FramePlayout({
      frameSamples: n,
      decoder: opus.createDecoder({ frameSamples: n }),
      timeStretch,
    });
    const out = new Int16Array(n);
    let f = 0;
    const ns = measure((iterations) => {
      for (let i = 0; i < iterations; i++, f++) {
        p.insert(f, packets[f % 50]!, packets[f % 50]!.length, f * 20 + 7);
        p.next(f * 20 + 10, out);
      }
    });
    if (p.stats().accelerated + p.stats().stretchExpanded !== 0)
      throw new Error('benchStretch: clean link stretched');
    p.close();
    return ns / 1000;
  };
  const plain = nextUs(false);
  const stretched = nextUs(true);
  return {
    stretch_accelerate_voiced_20ms_us: voicedNs / 1000,
    stretch_accelerate_noise_20ms_us: noiseNs / 1000,
    playout_next_plain_us: plain,
    playout_next_stretch_us: stretched,
  };
}

if (isMain(import.meta.url)) {
  printFigures('stretch', await benchStretch());
}
