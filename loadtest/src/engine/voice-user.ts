import { VoiceClient, type VoiceClientOptions, type VoiceClientStats } from '@voice/client';
import type { OpusFactory } from '@voice/media';
import { ClickMeter } from '../voice/click-meter.js';
import { monoMs, perfToMono } from '../voice/clock.js';
import type { FrameBank } from '../voice/frame-bank.js';
import { PreEncodedOpus } from '../voice/pre-encoded-opus.js';
import { Talker } from '../voice/talker.js';
import { timed, type MetricSink } from './metrics.js';
import { sleep } from './sleep.js';
import type { VoiceStep } from './options.js';

export interface VoiceUserOptions {
  readonly server: string;
  readonly nickname: string;
  readonly channel: string;
  readonly seat: number;
  readonly step: VoiceStep;
  readonly opus: OpusFactory;
  readonly bank: FrameBank;
  readonly signal: AbortSignal;
  readonly udpTarget?: { host: string; port: number };
  /** Jitter-buffer overrides for this user's playout (e2e-parts.ts's A/B runs). */
  readonly jitter?: VoiceClientOptions['jitter'];
}

/**
 * A voice user: a real VoiceClient (log-in, hello, join, voice over UDP or the WebSocket) that talks
 * on its turns with the shared pre-encoded frames, decodes its mix and measures it:
 * - `voice.join_to_first_audio`: join request sent to first audible sample played, ms (last seat);
 * - `voice.e2e_delay`: click captured to click played, ms (see Talker and ClickMeter);
 * - `voice.frames_expected/received`: over the counting window, one mix per frame while the
 *   channel has talkers (every member always hears at least one of the other talkers);
 * - `voice.packets_lost/received`: sequence gaps in what the server sent us.
 */
export async function runVoiceUser(o: VoiceUserOptions, m: MetricSink): Promise<void> {
  const s = o.step;
  const toMono = perfToMono();
  const talker = new Talker({
    bank: o.bank,
    seat: o.seat,
    seats: s.seats,
    speakers: s.speakers,
    turnMs: s.turnMs,
    clickPeriodMs: s.clickPeriodMs,
    toMono,
  });
  let counting = false;
  let client: VoiceClient | null = null;
  const meter = new ClickMeter({
    clickPeriodMs: s.clickPeriodMs,
    toMono,
    threshold: 0.3,
    audible: 0.005,
    onDelay: (ms) => {
      if (!counting) return;
      m.histogram('voice.e2e_delay', ms);
      m.counter('voice.clicks_heard');
      // The listener's part of this click's delay: how long its frame waited in the jitter buffer
      // beyond the earliest arrival the buffer has seen, and the wait the buffer aims for. The rest
      // is the capture frame, the Opus look-ahead (6.5 ms per encode) and the transit with the
      // server's hold (measured from the earliest arrival: a stream that moved later, e.g. to a
      // mix sent at the tick, shows its move in the wait until the window forgets the earlier one).
      // (The mix's buffer: with streams each talker has its own, and these parts do not apply.
      // What the server granted decides, not what the scenario asked: a server with
      // voice.maxStreams 1 mixes for everyone.)
      const jb = client === null || client.streams > 1 ? undefined : client.voice?.playout.jitter.stats();
      if (jb) {
        m.histogram('voice.e2e_part.listener_wait', jb.delayMs);
        m.histogram('voice.e2e_part.listener_target', jb.targetDelayMs);
        m.histogram('voice.e2e_part.before_listener', ms - jb.delayMs);
      }
    },
  });
  client = await timed(m, 'connect', () =>
    VoiceClient.connect({
      server: o.server,
      nickname: o.nickname,
      clientName: 'loadtest',
      transport: s.transport,
      // A UDP run must measure UDP: a silent switch to the WebSocket would hide a broken path.
      wsFallback: false,
      ...(o.udpTarget && s.transport === 'udp' ? { udpTarget: o.udpTarget } : {}),
      opus: new PreEncodedOpus(o.opus, o.bank, talker.cue),
      record: false,
      ...(o.jitter ? { jitter: o.jitter } : {}),
      ...(s.streams > 1 ? { streams: s.streams } : {}),
      onPlayout: meter.hook,
      requestTimeoutMs: 15_000,
    }),
  );
  try {
    const joinAt = monoMs();
    await timed(m, 'channel.join', () =>
      client.join(o.channel, { create: true, voice: { frameMs: s.frameMs } }),
    );
    await client.waitReady(10_000);
    m.counter(`voice.ready.${client.stats().transport}`);
    client.startVoice(talker);
    await sleep(s.warmupSeconds * 1000, o.signal);
    const a = client.stats();
    const t0 = performance.now();
    const m0 = monoMs();
    const clicks0 = talker.clicksSent;
    counting = true;
    await sleep(s.seconds * 1000, o.signal);
    counting = false;
    const b = client.stats();
    const elapsed = performance.now() - t0;
    const m1 = monoMs();
    if (Number.isNaN(meter.firstAudioAt)) m.counter('voice.no_audio');
    else {
      // The last seat joins a full channel, whose talkers are already talking: its time is the
      // join's own cost. Earlier seats may wait for talkers who have not arrived yet.
      m.histogram('voice.join_to_first_audio_any_seat', meter.firstAudioAt - joinAt);
      if (o.seat === s.seats - 1) m.histogram('voice.join_to_first_audio', meter.firstAudioAt - joinAt);
    }
    report(m, a, b, elapsed, s);
    // Every member always hears another talker, and one talker of each turn clicks: a member
    // hears every click of the window but its own. Clicks fall on multiples of the period of the
    // shared clock: count those in the window (floor(elapsed / period) was biased low by the
    // window's fraction of a period, about 1 % when the sleep overran 10 s by 100 ms).
    const p = s.clickPeriodMs;
    m.counter(
      'voice.clicks_expected',
      Math.floor(m1 / p) - Math.floor(m0 / p) - (talker.clicksSent - clicks0),
    );
    m.counter('voice.clicks_sent', talker.clicksSent - clicks0);
    await sleep(s.lingerSeconds * 1000, o.signal);
  } finally {
    await client.close();
  }
}

function report(
  m: MetricSink,
  a: VoiceClientStats,
  b: VoiceClientStats,
  elapsedMs: number,
  s: VoiceStep,
): void {
  const periods = Math.floor(elapsedMs / s.frameMs);
  const sent = b.audioSent - a.audioSent;
  // The mix: one frame per period. Streams (granted for every talker): one frame per period from
  // each talker but this user, whose own talking periods are the frames it sent.
  const streamed = b.streams >= s.speakers;
  const expected = streamed ? periods * s.speakers - sent : periods;
  const received = b.audioReceived - a.audioReceived + (streamed ? b.streamReceived - a.streamReceived : 0);
  m.counter('voice.frames_expected', expected);
  m.counter('voice.frames_received', received);
  m.counter('voice.packets_received', b.packetsReceived - a.packetsReceived);
  m.counter('voice.packets_lost', b.lost - a.lost);
  m.counter('voice.frames_late', b.late - a.late);
  m.counter('voice.frames_concealed', b.concealed - a.concealed);
  m.counter('voice.audio_sent', sent);
  if (expected > 0) m.histogram('voice.delivered_pct', (100 * received) / expected);
  // What decides the listener's wait at the end of the window: the jitter buffer's target, the
  // arrival-delay percentile it follows, and how often it restarted or ran dry.
  const p = b.session?.playout;
  const q = a.session?.playout;
  if (p && q) {
    m.histogram('voice.playout.target_delay_ms', p.targetDelayMs);
    m.histogram('voice.playout.delay_p95_ms', p.delayP95Ms);
    m.counter('voice.playout.resets', p.resets - q.resets);
    m.counter('voice.playout.drains', p.drains - q.drains);
    m.counter('voice.playout.stall_waits', p.stallWaits - q.stallWaits);
    m.counter('voice.playout.overflow_drops', p.overflowDrops - q.overflowDrops);
  }
}
