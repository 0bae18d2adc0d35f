import { Counter, Gauge, type Registry } from 'prom-client';
import type { Histogram } from '@voice/media';
import type { ChannelId } from '@voice/protocol';
import type { ChannelCore } from './channel.js';
import type { VoiceCounters } from './counters.js';
import type { KernelUdpCounters } from './kernel-udp.js';

/** One channel's figures, for /metrics and benchmarks. */
export interface ChannelFigures {
  id: ChannelId;
  core: ChannelCore;
  ticksSkipped: number;
  lateness: Histogram;
  /** The channel's clock alone (wake-up lateness, before any channel work). */
  clock: { p50: number; p99: number };
}

/** What the metrics read from the voice plane, at scrape time. */
export interface VoiceFigures {
  readonly counters: VoiceCounters;
  channelStats(): ChannelFigures[];
}

/** Per-channel gauges: name, help, how to read it from a channel's figures. */
const CHANNEL_GAUGES: readonly (readonly [string, string, (s: ChannelFigures) => number])[] = [
  ['voice_channel_members', 'Members in the channel actor', (s) => s.core.stats.members],
  [
    'voice_channel_speakers',
    'Members heard as speakers in the last tick (mixed or streamed)',
    (s) => s.core.stats.speakers,
  ],
  ['voice_channel_packets_in', 'Packets accepted into jitter buffers', (s) => s.core.stats.packetsIn],
  ['voice_channel_packets_out', 'Mixed packets sent', (s) => s.core.stats.packetsOut],
  ['voice_channel_late', 'Packets that arrived after their turn', (s) => s.core.stats.late],
  ['voice_channel_concealed', 'Frames concealed (loss)', (s) => s.core.stats.concealed],
  [
    'voice_channel_fec_recovered',
    'Concealed frames rebuilt from in-band FEC',
    (s) => s.core.stats.fecRecovered,
  ],
  [
    'voice_channel_accelerated',
    "Pitch periods removed from members' playouts (time-stretch: delay a late burst added, given back)",
    (s) => s.core.stats.accelerated,
  ],
  [
    'voice_channel_accelerated_ms',
    'Total length of the pitch periods removed, ms',
    (s) => s.core.stats.acceleratedMs,
  ],
  [
    'voice_channel_stretch_expanded',
    "Pitch periods inserted into members' playouts (time-stretch: growing the FEC look-ahead)",
    (s) => s.core.stats.stretchExpanded,
  ],
  [
    'voice_channel_stretch_expanded_ms',
    'Total length of the pitch periods inserted, ms',
    (s) => s.core.stats.stretchExpandedMs,
  ],
  [
    'voice_channel_inbox_overflows',
    'Packets dropped because the actor inbox was full',
    (s) => s.core.stats.inboxOverflows,
  ],
  [
    'voice_channel_inbox_over_quota',
    'Packets refused because their member already had its quota waiting in the inbox',
    (s) => s.core.stats.inboxOverQuota,
  ],
  [
    'voice_channel_buffer_frames',
    'Deepest member jitter buffer, frames',
    (s) => s.core.stats.bufferFramesMax,
  ],
  ['voice_channel_encodes', 'Opus encodes (one per distinct mix per tick)', (s) => s.core.stats.encodes],
  [
    'voice_channel_decodes',
    "Opus decodes of members' packets (only speakers someone hears in a mix are decoded)",
    (s) => s.core.stats.decodes,
  ],
  [
    'voice_channel_streamed',
    'STREAM packets sent (speakers forwarded to listeners that mix themselves)',
    (s) => s.core.stats.streamed,
  ],
  [
    'voice_channel_early_ticks',
    'Ticks run before their phase, once the frames they mix were in (clock.mixOnReady)',
    (s) => s.core.stats.earlyTicks,
  ],
  [
    'voice_channel_mix_repeats_skipped',
    'Mix frames not sent to a listener already forwarded that frame (forward-to-mix transitions)',
    (s) => s.core.stats.mixRepeatsSkipped,
  ],
  [
    'voice_channel_clock_sleeps',
    "Times a channel's clock stopped because nobody had spoken for 2 s (it wakes on the next packet)",
    (s) => s.core.stats.sleeps,
  ],
  [
    'voice_channel_cuts_restored',
    'Listeners taken back to a forwarding run when the mix a new speaker promised did not come',
    (s) => s.core.stats.cutsRestored,
  ],
  [
    'voice_channel_repeats_skipped',
    'Packets not sent to a listener that already had their media frame (its stream never repeats one)',
    (s) => s.core.stats.repeatsSkipped,
  ],
  [
    'voice_channel_ticks_skipped',
    'Frame periods in which a channel did not tick (stall or clock skip), made up by the next tick',
    (s) => s.ticksSkipped,
  ],
  ['voice_channel_tick_lateness_p50_ms', 'Tick due to actor start, p50', (s) => s.lateness.percentile(50)],
  ['voice_channel_tick_lateness_p99_ms', 'Tick due to actor start, p99', (s) => s.lateness.percentile(99)],
  [
    'voice_channel_tick_p99_us',
    'Tick duration (inbox to last send), p99',
    (s) => s.core.stats.tickUs.percentile(99),
  ],
  [
    'voice_channel_complexity',
    'Encoder complexity in use (below the setting while over the CPU budget)',
    (s) => s.core.stats.complexity,
  ],
  [
    'voice_channel_cpu_adaptations',
    'Times the channel lowered its encoder complexity for CPU overuse',
    (s) => s.core.stats.cpuAdaptations,
  ],
  ['voice_channel_decode_p50_us', 'Opus decode time p50', (s) => s.core.stats.decodeUs.percentile(50)],
  ['voice_channel_encode_p50_us', 'Opus encode time p50', (s) => s.core.stats.encodeUs.percentile(50)],
  ['voice_channel_encode_p99_us', 'Opus encode time p99', (s) => s.core.stats.encodeUs.percentile(99)],
  [
    'voice_channel_hold_p50_ms',
    'Server-added delay p50: packet arrival to mix sent',
    (s) => s.core.stats.holdMs.percentile(50),
  ],
  ['voice_channel_hold_p99_ms', 'Server-added delay p99', (s) => s.core.stats.holdMs.percentile(99)],
];

/** Exposes the packet-path counters and per-channel figures on the node's registry, read at scrape time. */
export function registerVoiceMetrics(registry: Registry, plane: VoiceFigures): void {
  const c = plane.counters;
  const counter = (name: string, help: string, read: () => number) =>
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  /** A counter labelled by reason, read from a record of plain counts (reasons at 0 are left out). */
  const byReason = (name: string, help: string, counts: Readonly<Record<string, number>>) =>
    new Counter({
      name,
      help,
      labelNames: ['reason'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [reason, n] of Object.entries(counts)) if (n > 0) this.inc({ reason }, n);
      },
    });
  counter(
    'voice_udp_packets_in_total',
    'Voice packets received (UDP and WebSocket fallback)',
    () => c.packetsIn,
  );
  counter('voice_packets_out_total', 'Voice packets sent', () => c.packetsOut);
  counter('voice_bytes_in_total', 'Voice bytes received', () => c.bytesIn);
  counter('voice_bytes_out_total', 'Voice bytes sent', () => c.bytesOut);
  counter(
    'voice_address_rebinds_total',
    'Authenticated source address changes (NAT rebinding)',
    () => c.rebinds,
  );
  counter(
    'voice_timing_advances_total',
    'Timing advances sent to members (voice.advance: move the send phase to just before the tick)',
    () => c.advances,
  );
  byReason(
    'voice_timing_advances_withheld_total',
    'Members that sent in a 2 s phase round but got no timing advance, by reason (spread: arrivals over half a frame apart; missed: a later send withheld after a missed tick; on_tick: no move needed)',
    c.advancesWithheld,
  );
  counter(
    'voice_udp_send_batches_total',
    'Batches of voice UDP packets sent with sendmmsg (one system call per 128 packets)',
    () => c.udpBatches,
  );
  byReason(
    'voice_send_errors_total',
    'Outgoing voice packets lost (send failed or dropped by backpressure), by reason',
    c.sendErrorsBy,
  );
  counter(
    'voice_stream_packets_total',
    "STREAM packets sent: a speaker's packet forwarded as it arrived to a listener that mixes itself",
    () => c.streamsOut,
  );
  counter(
    'voice_red_recovered_total',
    "Members' frames lost upstream and played from the RED copy the next packet carried (the mix's path)",
    () => c.redRecovered,
  );
  counter(
    'voice_red_copies_sent_total',
    'RED copies of frames lost upstream, forwarded as packets of their own to listeners without RED',
    () => c.redCopiesSent,
  );
  counter(
    'voice_red_down_packets_total',
    'AUDIO and STREAM packets that repeated the frame sent before (of the same speaker, for STREAM) to a listener whose heartbeats report over 1 % loss',
    () => c.redDownSent,
  );
  byReason(
    'voice_stream_drops_total',
    "Speakers' packets not forwarded as STREAM packets, by reason (budget: faster than the frame rate)",
    c.streamDrops,
  );
  byReason('voice_packets_dropped_total', 'Incoming voice packets dropped, by reason', c.drops);
  const perChannel = (name: string, help: string, read: (s: ChannelFigures) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['channel'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const s of plane.channelStats()) this.set({ channel: s.id }, read(s));
      },
    });
  for (const [name, help, read] of CHANNEL_GAUGES) perChannel(name, help, read);
}

/**
 * The kernel's UDP drops on this host (voice/kernel-udp.ts), read at scrape time: what the server
 * cannot count itself (a datagram dropped at a full device queue is reported to it as sent).
 */
export function registerKernelUdpMetrics(registry: Registry, kernel: KernelUdpCounters): void {
  const fields = [
    [
      'sndbufErrors',
      'voice_kernel_udp_sndbuf_errors_total',
      'SndbufErrors: datagrams dropped at a full send buffer or device queue',
    ],
    [
      'rcvbufErrors',
      'voice_kernel_udp_rcvbuf_errors_total',
      'RcvbufErrors: datagrams dropped at a full receive buffer',
    ],
    [
      'inErrors',
      'voice_kernel_udp_in_errors_total',
      'InErrors: datagrams received in error (RcvbufErrors included)',
    ],
  ] as const;
  for (const [field, name, what] of fields)
    new Counter({
      name,
      help: `Kernel UDP counter of this host (every socket of its network namespace, /proc/net/snmp), since the server started. ${what}`,
      registers: [registry],
      collect() {
        const now = kernel.sinceStart();
        this.reset();
        if (now) this.inc(now[field]);
      },
    });
}
