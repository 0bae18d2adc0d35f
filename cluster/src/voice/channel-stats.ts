import { Histogram } from '@voice/media';
import { readStretchFigures, type StretchFigures, type StretchTotals } from './stretch-totals.js';

/** A channel's running figures: read by /metrics, the member stats and the benchmarks. */
export interface ChannelStats extends StretchFigures {
  members: number;
  speakers: number;
  ticks: number;
  packetsIn: number;
  packetsOut: number;
  late: number;
  concealed: number;
  /** Of the concealed frames, those rebuilt from the next packet's in-band FEC. */
  fecRecovered: number;
  /** Frames lost upstream and played from the RED copy the next packet carried (not concealed). */
  redRecovered: number;
  inboxOverflows: number;
  /** Packets refused because their member already had its quota waiting in the inbox. */
  inboxOverQuota: number;
  encodes: number;
  /** Members' packets decoded (a speaker nobody hears in a mix is not: its listeners stream it). */
  decodes: number;
  /** STREAM packets sent: speakers' packets forwarded on arrival to listeners that mix themselves. */
  streamed: number;
  /** Opus encoders alive (one per distinct mix stream; freed when their stream ends). */
  encoders: number;
  /** Listener-frames sent as the lone speaker's own packet, without re-encoding. */
  forwarded: number;
  /** Listener-frames not sent because the lone speaker's frame was lost (the client conceals). */
  soloGaps: number;
  /** Mix encoders primed with the frame a listener was sent last tick before their first frame (a switch). */
  encoderPrimes: number;
  /** Packets of a lone speaker not forwarded on arrival because they were ahead of real time. */
  forwardDeferred: number;
  /**
   * Mix frames not sent to a listener that already had that media frame: it was forwarded the lone
   * speaker's packet for it on arrival, before the tick found a second speaker.
   */
  mixRepeatsSkipped: number;
  /** Packets not sent because the listener already had their media frame (any path; see sendTo). */
  repeatsSkipped: number;
  /** Listeners taken back to a forwarding run when the mix a new speaker's packet promised did not come. */
  cutsRestored: number;
  /** Ticks run before their phase, once every frame they mix was in (mixOnReady). */
  earlyTicks: number;
  /** Times the channel's clock went to sleep (nobody spoke for SLEEP_AFTER_MS) and woke. */
  sleeps: number;
  wakes: number;
  bufferFramesMax: number;
  decodeUs: Histogram;
  encodeUs: Histogram;
  holdMs: Histogram;
  /** Whole tick, inbox to last send. */
  tickUs: Histogram;
  /** Encoder complexity in use: below the channel's setting while it is over its CPU budget. */
  complexity: number;
  /** Times the complexity was lowered for CPU overuse. */
  cpuAdaptations: number;
}

/** Zeroed figures; the stretch figures are summed from `stretch` when read (nothing per tick). */
export function createChannelStats(stretch: StretchTotals, complexity: number): ChannelStats {
  return readStretchFigures(
    {
      members: 0,
      speakers: 0,
      ticks: 0,
      packetsIn: 0,
      packetsOut: 0,
      late: 0,
      concealed: 0,
      fecRecovered: 0,
      redRecovered: 0,
      inboxOverflows: 0,
      inboxOverQuota: 0,
      encodes: 0,
      decodes: 0,
      streamed: 0,
      encoders: 0,
      forwarded: 0,
      soloGaps: 0,
      encoderPrimes: 0,
      forwardDeferred: 0,
      mixRepeatsSkipped: 0,
      repeatsSkipped: 0,
      cutsRestored: 0,
      earlyTicks: 0,
      sleeps: 0,
      wakes: 0,
      bufferFramesMax: 0,
      decodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
      encodeUs: new Histogram({ bucketWidth: 10, buckets: 500, window: 4096 }),
      holdMs: new Histogram({ bucketWidth: 0.5, buckets: 800, window: 4096 }),
      tickUs: new Histogram({ bucketWidth: 20, buckets: 1000, window: 4096 }),
      complexity,
      cpuAdaptations: 0,
    },
    stretch,
  );
}
