import {
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  MAX_STREAM_OPUS_BYTES,
  STREAM_SOURCE_BYTES,
  VoiceFlags,
  VoicePacketType,
  createRedBlock,
  readRedBlock,
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
  /** Source then the RED block as received, and source then the copy alone (README 9.1). */
  readonly #redPlain = new Uint8Array(MAX_PAYLOAD_BYTES);
  readonly #copyPlain = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** Source then a downstream RED block, for a listener on a lossy downlink (README 9.1). */
  readonly #downPlain = new Uint8Array(MAX_PAYLOAD_BYTES);
  readonly #red = createRedBlock();
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
   * among `members`; returns how many got it. A RED packet (its block checked by the ingress) goes as
   * received to a listener that reads RED (when source and block fit the payload limit); any other
   * gets the primary, preceded by the copy of the frame before as a packet of its own when that frame
   * never reached the server (`redGap`, from `sp.wasReceived`).
   */
  forward(
    sp: VoiceMember,
    members: readonly VoiceMember[],
    payload: Uint8Array,
    length: number,
    timestamp: number,
    flags: number,
    now: number,
    redGap = false,
  ): number {
    let wanted = false;
    for (let i = 0; i < members.length && !wanted; i++) wanted = takes(members[i]!, sp);
    if (!wanted) return 0;
    const red =
      (flags & VoiceFlags.RED) !== 0 && readRedBlock(payload, 0, length, this.#red) ? this.#red : null;
    const primaryAt = red ? red.primaryOffset : 0;
    const primaryLength = red ? red.primaryLength : length;
    if (primaryLength > MAX_STREAM_OPUS_BYTES) {
      this.counters.streamDrops.too_long++;
      return 0;
    }
    if (!sp.forwardBudget.take(now)) {
      this.counters.streamDrops.budget++;
      return 0;
    }
    const plain = this.#plain;
    plain.set(sp.source, 0);
    for (let b = 0; b < primaryLength; b++) plain[STREAM_SOURCE_BYTES + b] = payload[primaryAt + b]!;
    const asRed = red !== null && length <= MAX_STREAM_OPUS_BYTES;
    if (asRed) {
      this.#redPlain.set(sp.source, 0);
      for (let b = 0; b < length; b++) this.#redPlain[STREAM_SOURCE_BYTES + b] = payload[b]!;
    }
    // The copy replaces a packet that never came: it takes no token of the budget.
    const frameSamples = sp.stream.frameSamples;
    const gap = red !== null && redGap;
    if (gap) {
      this.#copyPlain.set(sp.source, 0);
      for (let b = 0; b < red.redLength; b++)
        this.#copyPlain[STREAM_SOURCE_BYTES + b] = payload[red.redOffset + b]!;
    }
    const h = this.#header;
    const marker = (flags & VoiceFlags.MARKER) !== 0;
    const prevAt = timestamp - frameSamples;
    let downSource = false;
    let n = 0;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (!takes(l, sp)) continue;
      const ep = l.endpoint;
      h.voiceId = ep.voiceId;
      if (asRed && l.red) {
        l.redStreams?.clear(sp.userId); // the speaker's block went: its primary is not kept
        h.flags = (flags & SPEAKER_FLAGS) | VoiceFlags.RED;
        h.timestamp = timestamp >>> 0;
        h.sequence = ep.cipher.nextSequence;
        this.send(
          ep,
          this.#sendBuf,
          ep.cipher.seal(h, this.#redPlain, this.#sendBuf, STREAM_SOURCE_BYTES + length),
        );
      } else {
        if (gap) {
          h.flags = 0;
          h.timestamp = (timestamp - frameSamples) >>> 0;
          h.sequence = ep.cipher.nextSequence;
          this.send(
            ep,
            this.#sendBuf,
            ep.cipher.seal(h, this.#copyPlain, this.#sendBuf, STREAM_SOURCE_BYTES + red.redLength),
          );
          l.packetsOut++;
          this.counters.streamsOut++;
          this.counters.redCopiesSent++;
        }
        // Downstream RED (README 9.1): RED is on for this listener (ChannelCore's tick), so this
        // speaker's frame it was sent just before is repeated, as on AUDIO (red-down.ts).
        let down = 0;
        if (l.redStreams !== null) {
          if (!downSource) this.#downPlain.set(sp.source, 0);
          downSource = true;
          down = l.redStreams
            .frameFor(sp.userId)
            .next(
              this.#downPlain,
              STREAM_SOURCE_BYTES,
              plain,
              STREAM_SOURCE_BYTES,
              primaryLength,
              timestamp,
              prevAt,
              marker,
            );
        }
        h.flags = (flags & SPEAKER_FLAGS) | (down > 0 ? VoiceFlags.RED : 0);
        h.timestamp = timestamp >>> 0;
        h.sequence = ep.cipher.nextSequence;
        const body = down > 0 ? this.#downPlain : plain;
        const bodyLength = down > 0 ? down : primaryLength;
        this.send(
          ep,
          this.#sendBuf,
          ep.cipher.seal(h, body, this.#sendBuf, STREAM_SOURCE_BYTES + bodyLength),
        );
        if (down > 0) this.counters.redDownSent++;
      }
      l.packetsOut++;
      n++;
    }
    this.sent += n;
    this.counters.streamsOut += n;
    return n;
  }
}
