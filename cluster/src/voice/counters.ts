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
  /** A bug in the packet handler (logged at most once a second). */
  'internal_error',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

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
  sendErrors = 0;
  readonly drops: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<
    DropReason,
    number
  >;
}
