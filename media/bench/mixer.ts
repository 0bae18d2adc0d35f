import { limitToInt16, mixMinus, MixGroups, sine, sumFrames } from '../src/index.js';
import { isMain, measure, printFigures } from './util.js';

/**
 * Mix-minus tick cost for 960-sample (20 ms) frames: the full MixGroups tick (sum, mix-minus per
 * speaker, shared everyone mix) for 10 members with 2 and with 10 speakers, the raw primitives for 10
 * speakers (sum + 10 mix-minus outputs), and the limiter + Int16 conversion per output.
 */
export async function benchMixer(): Promise<Record<string, number>> {
  await Promise.resolve();
  const N = 960;
  const members = Array.from({ length: 10 }, (_, i) => `member-${i}`);
  const frames = members.map((_, i) => sine(N, 200 + 90 * i, -18));
  const figures: Record<string, number> = {};

  for (const speakers of [2, 10]) {
    const mg = new MixGroups(N, 10);
    for (const m of members) mg.setListener(m);
    const ids = members.slice(0, speakers);
    const fr = frames.slice(0, speakers);
    const ns = measure((n) => {
      for (let i = 0; i < n; i++) mg.mix(ids, fr, speakers);
    });
    figures[`mix_tick_10_members_${speakers}_speakers_us`] = ns / 1000;
    figures[`mix_tick_10_members_${speakers}_speakers_outputs`] = mg.outputCount;
  }

  const sum = new Float32Array(N);
  const outs = frames.map(() => new Float32Array(N));
  const rawNs = measure((n) => {
    for (let i = 0; i < n; i++) {
      sumFrames(frames, 10, sum);
      for (let s = 0; s < 10; s++) mixMinus(sum, frames[s]!, outs[s]!);
    }
  });
  figures.mix_minus_10_speakers_10_outputs_us = rawNs / 1000;
  figures.mix_ns_per_input_sample = rawNs / (N * 20); // 10 adds + 10 subtractions per sample index

  const pcm = new Int16Array(N);
  const loud = sumFrames(frames, 10, new Float32Array(N));
  figures.limit_to_int16_per_output_us =
    measure((n) => {
      for (let i = 0; i < n; i++) limitToInt16(loud, pcm);
    }) / 1000;
  return figures;
}

if (isMain(import.meta.url)) {
  printFigures('mixer (960-sample frames)', await benchMixer());
}
