import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  MAX_STREAM_OPUS_BYTES,
  STREAM_SOURCE_BYTES,
  VoiceFlags,
  VoicePacketType,
  type VoiceHeader,
} from '@voice/protocol';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { VoiceMember } from './member.js';

/** The speaker's flags a STREAM packet carries (README 8.8): MARKER, FEC, DTX. */
const SPEAKER_FLAGS = VoiceFlags.MARKER | VoiceFlags.FEC | VoiceFlags.DTX;

/** Whether listener `l` takes speaker `sp`'s packets as STREAM packets now (stream-routing.ts decided). */
function takes(l: VoiceMember, sp: VoiceMember): boolean {
  return (
    l.userId !== sp.userId && // itself, or its other binding during a handover (README 8.4)
    l.streamMode &&
    !l.deaf &&
    l.endpoint.transport !== 'none' &&
    // A speaker who started since the tick judged, at a volume of its own: the next tick mixes it.
    (l.gains?.get(sp.userId) ?? 1) === 1
  );
}

/**
 * Forwards a speaker's AUDIO packet, as it arrives, to every listener in stream mode as a STREAM
 * packet (protocol README 8.8): source then the Opus payload unchanged, the speaker's own timestamp
 * and flags, sealed per listener under its key and sequence, out through the same egress as the
 * mixes. Within the speaker's forward budget (stream-budget.ts); the excess is dropped and counted.
 * Nothing is allocated per packet.
 */
export class StreamForwarder {
  readonly #plain = new Uint8Array(MAX_PAYLOAD_BYTES);
  readonly #sendBuf = new Uint8Array(MAX_PACKET_BYTES);
  readonly #header: VoiceHeader = {
    type: VoicePacketType.STREAM,
    flags: 0,
    voiceId: 0,
    sequence: 0,
    timestamp: 0,
  };
  /** STREAM packets sent (one per listener and packet). */
  sent = 0;

  constructor(
    private readonly counters: VoiceCounters,
    private readonly send: (ep: VoiceEndpoint, packet: Uint8Array, length: number) => void,
  ) {}

  /**
   * Sends `payload[0..length)` of speaker `sp` (header `timestamp`, `flags`) to its stream listeners
   * among `members`; returns how many got it.
   */
  forward(
    sp: VoiceMember,
    members: readonly VoiceMember[],
    payload: Uint8Array,
    length: number,
    timestamp: number,
    flags: number,
    now: number,
  ): number {
    let wanted = false;
    for (let i = 0; i < members.length && !wanted; i++) wanted = takes(members[i]!, sp);
    if (!wanted) return 0;
    if (length > MAX_STREAM_OPUS_BYTES) {
      this.counters.streamDrops.too_long++;
      return 0;
    }
    if (!sp.forwardBudget.take(now)) {
      this.counters.streamDrops.budget++;
      return 0;
    }
    const plain = this.#plain;
    plain.set(sp.source, 0);
    for (let b = 0; b < length; b++) plain[STREAM_SOURCE_BYTES + b] = payload[b]!;
    const h = this.#header;
    h.flags = flags & SPEAKER_FLAGS;
    h.timestamp = timestamp >>> 0;
    let n = 0;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (!takes(l, sp)) continue;
      const ep = l.endpoint;
      h.voiceId = ep.voiceId;
      h.sequence = ep.cipher.nextSequence;
      const bytes = ep.cipher.seal(h, plain, this.#sendBuf, STREAM_SOURCE_BYTES + length);
      this.send(ep, this.#sendBuf, bytes);
      l.packetsOut++;
      n++;
    }
    this.sent += n;
    this.counters.streamsOut += n;
    return n;
  }
}
