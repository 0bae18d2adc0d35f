import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createOpus } from '@voice/media';
import { parseServerMetrics } from '../src/runner/prometheus.js';
import { knee, type SweepStep } from '../src/runner/sweep.js';
import { chart } from '../src/runner/svg.js';
import { ClickMeter } from '../src/voice/click-meter.js';
import { FrameBank } from '../src/voice/frame-bank.js';
import { Talker } from '../src/voice/talker.js';

const opus = await createOpus();
const bank20 = FrameBank.build(opus, { frameMs: 20 });

describe('Talker', () => {
  const talker = (seat: number, toMono = (x: number) => x) =>
    new Talker({ bank: bank20, seat, seats: 10, speakers: 2, turnMs: 4000, clickPeriodMs: 1000, toMono });

  it('seats talk in pairs, in turns of turnMs, exactly two at any time', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (t) => {
        const talking = Array.from({ length: 10 }, (_, s) => talker(s).talksAt(t));
        expect(talking.filter(Boolean)).toHaveLength(2);
        const first = talking.indexOf(true);
        expect(first % 2).toBe(0);
        expect(first / 2).toBe(Math.floor(t / 4000) % 5);
      }),
    );
  });

  it('places a click on each multiple of the period, to the millisecond, in the frame that holds it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1e6 }),
        fc.double({ min: 0, max: 19.999, noNaN: true }),
        (k, before) => {
          // The frame read at `now` holds [now - 20, now): the click instant k*1000 is `before` ms into it.
          const t = talker(0, () => k * 1000 + 20 - before);
          t.talksAt = () => true;
          expect(t.read(new Int16Array(960), 0)).toBe(true);
          expect(t.cue.variant).toBe(Math.min(19, Math.round(before)));
          expect(t.clicksSent).toBe(1);
        },
      ),
    );
  });

  it('one click per click instant in the whole channel: the first seat of the talking pair clicks', () => {
    // Two talkers clicking at the same instant reach the listeners' mix up to a frame apart (each
    // waits for the tick at its own phase) and the meter heard two clicks, the later one late.
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 1e6 }),
        fc.double({ min: 0, max: 19.999, noNaN: true }),
        (k, before) => {
          const now = k * 1000 + 20 - before;
          const clicks = Array.from({ length: 10 }, (_, seat) => {
            const t = talker(seat, () => now);
            return t.read(new Int16Array(960), 0) && t.cue.variant >= 0 ? seat : -1;
          }).filter((seat) => seat >= 0);
          expect(clicks).toHaveLength(1);
          expect(clicks[0]! % 2).toBe(0);
        },
      ),
    );
  });

  it('sends a click once when a catching-up sender reads frames whose windows overlap it', () => {
    // After a stall the sender reads frames less than a frame apart: [980, 1000.5) then [985, 1005)
    // both hold the instant 1000. The listener heard that click twice.
    let now = 1000.5;
    const t = talker(0, () => now);
    t.talksAt = () => true;
    const variants = [1000.5, 1005, 1012].map((at) => {
      now = at;
      t.read(new Int16Array(960), 0);
      return t.cue.variant;
    });
    expect(variants[0]).toBe(20 - 1);
    expect(variants.slice(1).every((v) => v === -1)).toBe(true);
    expect(t.clicksSent).toBe(1);
    now = 2001; // the next instant clicks again
    t.read(new Int16Array(960), 0);
    expect(t.cue.variant).toBe(19);
    expect(t.clicksSent).toBe(2);
  });

  it('sends background frames between clicks, and nothing off its turn', () => {
    const t = talker(0, () => 1500);
    t.talksAt = () => true;
    t.read(new Int16Array(960), 0);
    expect(t.cue.variant).toBe(-1);
    expect(bank20.loop).toContain(t.cue.frame);
    const quiet = talker(2, () => 100); // turn 0 belongs to seats 0 and 1
    expect(quiet.read(new Int16Array(960), 0)).toBe(false);
    expect(quiet.framesSent).toBe(0);
  });
});

describe('ClickMeter on decoded bank frames', () => {
  /** A decoder and a meter on an identity clock, with the delays it reports. */
  const listener = () => {
    const delays: number[] = [];
    const meter = new ClickMeter({
      clickPeriodMs: 1000,
      toMono: (x) => x,
      threshold: 0.3,
      audible: 0.005,
      onDelay: (ms) => delays.push(ms),
    });
    return { dec: opus.createDecoder({ frameSamples: 960 }), delays, meter, pcm: new Int16Array(2880) };
  };

  it('measures the delay of a click from the played instant, within a millisecond', () => {
    const { dec, delays, meter, pcm } = listener();
    // Background frames, then the click frame whose click starts 7 ms in, played from 5000 + 60 ms.
    let at = 5000 - 5 * 20 + 60;
    for (let f = 0; f < 5; f++, at += 20) meter.hook(pcm, dec.decode(bank20.loop[f]!, pcm), at);
    const clickFrameAt = at;
    meter.hook(pcm, dec.decode(bank20.clicks[7]!, pcm), at);
    for (let f = 6; f < 12; f++) meter.hook(pcm, dec.decode(bank20.loop[f]!, pcm), (at += 20));
    expect(delays).toHaveLength(1);
    // The click sits 7 ms into the frame played at clickFrameAt, plus Opus's 6.5 ms look-ahead.
    expect(Math.abs(delays[0]! - (clickFrameAt + 7 + 6.5 - 5000))).toBeLessThan(1);
    expect(meter.firstAudioAt).toBeGreaterThanOrEqual(5000 - 40);
    expect(meter.firstAudioAt).toBeLessThan(clickFrameAt);
    dec.destroy();
  });

  it('hears a click placed at the very end of a frame: it comes out in the tail frame', () => {
    const { dec, delays, meter, pcm } = listener();
    for (let f = 0; f < 5; f++) meter.hook(pcm, dec.decode(bank20.loop[f]!, pcm), 900 + f * 20);
    meter.hook(pcm, dec.decode(bank20.clicks[19]!, pcm), 1000);
    meter.hook(pcm, dec.decode(bank20.tails[19]!, pcm), 1020);
    expect(delays).toHaveLength(1);
    expect(Math.abs(delays[0]! - (19 + 6.5))).toBeLessThan(1);
    dec.destroy();
  });

  it('hears nothing in the quiet tone alone', () => {
    const dec = opus.createDecoder({ frameSamples: 960 });
    const meter = new ClickMeter({
      clickPeriodMs: 1000,
      toMono: (x) => x,
      threshold: 0.3,
      audible: 0.005,
      onDelay: () => {},
    });
    const pcm = new Int16Array(2880);
    for (let f = 0; f < 50; f++) meter.hook(pcm, dec.decode(bank20.loop[f]!, pcm), f * 20);
    expect(meter.clicksHeard).toBe(0);
    expect(meter.firstAudioAt).toBeGreaterThanOrEqual(0);
    dec.destroy();
  });
});

describe('runner pieces', () => {
  it('reads the server figures from /metrics text (sums members, worst lateness)', () => {
    const f = parseServerMetrics(
      [
        '# HELP voice_channel_members Members',
        'voice_channel_members{channel="c_a"} 10',
        'voice_channel_members{channel="c_b"} 7',
        'voice_channel_tick_lateness_p99_ms{channel="c_a"} 0.4',
        'voice_channel_tick_lateness_p99_ms{channel="c_b"} 1.7',
        'voice_packets_out_total 1234',
        'voice_packets_dropped_total{reason="replay"} 3',
        'voice_packets_dropped_total{reason="auth"} 2',
        'voice_channel_complexity{channel="c_a"} 9',
        'voice_channel_complexity{channel="c_b"} 5',
      ].join('\n'),
    );
    expect(f).toMatchObject({
      members: 17,
      channels: 2,
      tickLatenessP99Ms: 1.7,
      packetsOut: 1234,
      dropped: 5,
    });
  });

  it('finds the knee: the last step under 2 ms p99 and 0.1 % loss, stopping at the first bad one', () => {
    const step = (users: number, tickP99Ms: number, lossPct: number, sat = false): SweepStep => ({
      users,
      members: users,
      serverCpuPct: users / 2,
      cpuPerMemberPct: 0.5,
      tickP99Ms,
      lossPct,
      deliveredPct: 100,
      e2eP50Ms: 50,
      e2eP95Ms: 60,
      minComplexity: 9,
      generatorSaturated: sat,
      checksPassed: true,
    });
    expect(knee([step(50, 0.5, 0), step(100, 1.5, 0.05), step(150, 2.5, 0), step(200, 1, 0)])?.users).toBe(
      100,
    );
    expect(knee([step(50, 0.5, 0), step(100, 1, 0.2)])?.users).toBe(50);
    expect(knee([step(50, 0.5, 0, true)])).toBeNull();
  });

  it('draws charts as standalone SVG with no external reference', () => {
    const svg = chart({
      title: 'a <b>',
      xLabel: 'x',
      yLabel: 'y',
      series: [
        {
          name: 's',
          points: [
            [0, 1],
            [1, 2],
            [2, Number.NaN],
          ],
        },
      ],
      rules: [{ y: 2, label: '2 ms' }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).toContain('a &lt;b&gt;');
    expect(svg).toMatch(/<path d="M[\d.]+ [\d.]+ L[\d.]+ [\d.]+"/);
    expect(svg.replace('http://www.w3.org/2000/svg', '')).not.toMatch(/https?:|href=|<script/);
  });
});
