import { ADVANCE_WITHHELD_REASONS, type AdvanceWithheld } from './advance.js';

/** Reasons an incoming voice packet is dropped; each is a label of voice_packets_dropped_total. */
export const DROP_REASONS = [
  'oversized',
  'TOO_SHORT',
  'TOO_LONG',
  'BAD_MAGIC',
  'BAD_VERSION',
  'BAD_TYPE',
  'unknown_session',
  'AUTH_FAILED',
  'REPLAY',
  'rate_limited',
  'foreign_voice_id',
  'foreign_global',
  'unexpected_type',
  'not_in_channel',
  'inbox_overflow',
  'inbox_quota',
  'late',
  'duplicate',
  'invalid',
  'muted',
  'decode_error',
  /** A RED packet whose block is malformed (its redundant frame's length reaches past the end). */
  'bad_red',
  /** A bug in the packet handler (logged at most once a second). */
  'internal_error',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** Reasons a speaker's packet is not forwarded as STREAM packets; labels of voice_stream_drops_total. */
export const STREAM_DROP_REASONS = [
  /** Over the speaker's forward budget: faster than its frame rate beyond a burst (stream-budget.ts). */
  'budget',
  /** An Opus payload longer than MAX_STREAM_OPUS_BYTES (no channel bitrate produces one). */
  'too_long',
] as const;
export type StreamDropReason = (typeof STREAM_DROP_REASONS)[number];

/** Reasons an outgoing voice packet is lost; each is a label of voice_send_errors_total. */
export const SEND_ERROR_REASONS = [
  /** EAGAIN: the UDP socket's send buffer is full. */
  'would_block',
  /**
   * ENOBUFS: an output queue is full. Linux drops such a datagram silently for a UDP socket without
   * IP_RECVERR (ours): it shows in /proc/net/snmp Udp SndbufErrors, seldom here.
   */
  'no_buffers',
  /** EPERM / EACCES: refused by a firewall rule (or a broadcast address). */
  'not_permitted',
  /** Longer than a voice packet may be, or EMSGSIZE. */
  'too_long',
  /** EINVAL, EADDRNOTAVAIL, ENETUNREACH, EHOSTUNREACH, ...: that destination cannot be reached. */
  'bad_address',
  /** node:dgram path: every send slot still in flight. */
  'slots_full',
  /** The socket closed under the send (EBADF, ENOTSOCK), or the egress closed with packets queued. */
  'socket_closed',
  /** WebSocket fallback: the connection is gone or its send buffer is over its bound. */
  'ws_backpressure',
  'other',
] as const;
export type SendErrorReason = (typeof SEND_ERROR_REASONS)[number];

/** The send error reason of an errno code (node:dgram's `err.code`). */
export function sendErrorReason(code: string | undefined): SendErrorReason {
  switch (code) {
    case 'EAGAIN':
    case 'EWOULDBLOCK':
      return 'would_block';
    case 'ENOBUFS':
      return 'no_buffers';
    case 'EPERM':
    case 'EACCES':
      return 'not_permitted';
    case 'EMSGSIZE':
      return 'too_long';
    case 'EINVAL':
    case 'EDESTADDRREQ':
    case 'EADDRNOTAVAIL':
    case 'ENETUNREACH':
    case 'EHOSTUNREACH':
    case 'EAFNOSUPPORT':
      return 'bad_address';
    case 'ERR_SOCKET_DGRAM_NOT_RUNNING':
    case 'EBADF':
    case 'ENOTSOCK':
      return 'socket_closed';
    default:
      return 'other';
  }
}

/**
 * Plain numeric counters for the packet path: incrementing a number costs nothing, and the metrics
 * registry reads them when scraped (prom-client label lookups per packet would not be free).
 */
export class VoiceCounters {
  packetsIn = 0;
  packetsOut = 0;
  bytesIn = 0;
  bytesOut = 0;
  rebinds = 0;
  /** Channel clocks moved to an earlier phase to shorten the server-added delay. */
  realigns = 0;
  /** Timing advances sent to members (`voice.advance`): move your send phase to the tick. */
  advances = 0;
  /** Members that sent in a phase round but got no timing advance, by reason (advance.ts). */
  readonly advancesWithheld: Record<AdvanceWithheld, number> = Object.fromEntries(
    ADVANCE_WITHHELD_REASONS.map((r) => [r, 0]),
  ) as Record<AdvanceWithheld, number>;
  /** STREAM packets sent (a speaker's packet forwarded to a listener that mixes itself). */
  streamsOut = 0;
  /** Frames whose packet was lost upstream, played by a member buffer from the RED copy the next packet carried. */
  redRecovered = 0;
  /** RED copies of frames lost upstream, sent as packets of their own to listeners without RED. */
  redCopiesSent = 0;
  /** AUDIO and STREAM packets to listeners on a lossy downlink that carried the frame sent before (downstream RED). */
  redDownSent = 0;
  readonly streamDrops: Record<StreamDropReason, number> = { budget: 0, too_long: 0 };
  /** Batches sent with sendmmsg (packetsOut / udpBatches: packets per batch). */
  udpBatches = 0;
  readonly sendErrorsBy: Record<SendErrorReason, number> = Object.fromEntries(
    SEND_ERROR_REASONS.map((r) => [r, 0]),
  ) as Record<SendErrorReason, number>;
  readonly drops: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<
    DropReason,
    number
  >;

  /** Outgoing packets lost, all reasons. */
  get sendErrors(): number {
    let n = 0;
    for (const r of SEND_ERROR_REASONS) n += this.sendErrorsBy[r];
    return n;
  }

  /** Counts `n` outgoing packets lost for `reason`. */
  sendFailed(reason: SendErrorReason, n = 1): void {
    this.sendErrorsBy[reason] += n;
  }
}
