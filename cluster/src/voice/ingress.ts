import {
  ACK_BODY_BYTES,
  MAX_PACKET_BYTES,
  MAX_PAYLOAD_BYTES,
  VoiceFlags,
  VoicePacketType,
  ackFor,
  createRedBlock,
  readAckBody,
  readRedBlock,
  readTimeBody,
  writeAckBody,
  type VoiceHeader,
} from '@voice/protocol';
import { parseIPv4 } from '@voice/media';
import type { Session } from '../app/sessions.js';
import type { VoiceAuth } from './auth.js';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import { InboxPush } from './inbox.js';
import type { VoiceTransports } from './transport.js';
import type { VoiceMember } from './member.js';

/** Downstream loss (fraction, between two HEARTBEATs) over which a listener granted RED gets it. */
export const RED_DOWN_LOSS = 0.01;
/** How long after the last such report the server keeps adding RED, ms (as the client's sender). */
export const RED_DOWN_HOLD_MS = 15_000;

/**
 * Ingress: one incoming voice packet, from UDP or the WebSocket fallback. Authenticates it, follows
 * the sender's address and transport, then copies audio into the channel's inbox or answers a
 * hello/heartbeat. Preallocated buffers only: nothing is allocated per packet.
 */
export class VoiceIngress {
  readonly #header: VoiceHeader = { type: 1, flags: 0, voiceId: 0, sequence: 0, timestamp: 0 };
  readonly #plain = new Uint8Array(MAX_PAYLOAD_BYTES);
  readonly #ackBody = new Uint8Array(ACK_BODY_BYTES);
  readonly #ackPacket = new Uint8Array(MAX_PACKET_BYTES);
  readonly #red = createRedBlock();

  constructor(
    private readonly auth: VoiceAuth,
    private readonly transports: VoiceTransports,
    private readonly counters: VoiceCounters,
    /** The first AUDIO packet under a binding whose predecessor is still live (a handover). */
    private readonly successorHeard: (ep: VoiceEndpoint) => void = () => undefined,
  ) {}

  /**
   * A HEARTBEAT's downstream counts (README 8.3: what the client received of ours and lost): over
   * RED_DOWN_LOSS between two heartbeats, a listener granted RED gets RED on what it is sent for
   * RED_DOWN_HOLD_MS (README 9.1). Once per heartbeat: the allocation of the read does not matter.
   */
  #downstream(m: VoiceMember, length: number, now: number): void {
    const body = readAckBody(this.#plain, length);
    if (!body || !m.red) return;
    const dRecv = body.packetsReceived - m.downReceived;
    const dLost = body.packetsLost - m.downLost;
    if (
      m.downReceived >= 0 &&
      dRecv >= 0 &&
      dLost >= 0 &&
      dRecv + dLost > 0 &&
      dLost / (dRecv + dLost) > RED_DOWN_LOSS
    )
      m.redDownUntil = now + RED_DOWN_HOLD_MS;
    m.downReceived = body.packetsReceived;
    m.downLost = body.packetsLost;
  }

  /** A UDP datagram. */
  readonly onDatagram = (msg: Uint8Array, address: string, port: number): void => {
    this.receive(msg, address, port);
  };

  /** One incoming voice packet, from UDP (address set) or the WebSocket fallback (address null). */
  receive(msg: Uint8Array, address: string | null, port: number, wsSession?: Session): void {
    const c = this.counters;
    c.packetsIn++;
    c.bytesIn += msg.byteLength;
    const h = this.#header;
    const opened = this.auth.open(msg, address, port, wsSession, this.#plain, h);
    if (opened === null) return;
    const { ep, length: r, fromRegistered } = opened;
    const now = performance.now();
    if (ep.predecessor !== null && h.type === VoicePacketType.AUDIO) this.successorHeard(ep);
    // Only an authenticated packet may move the session's address (NAT rebinding) or transport.
    if (address === null) {
      if (ep.transport !== 'ws') this.transports.setTransport(ep, 'ws');
    } else if (!fromRegistered || ep.transport !== 'udp') {
      if (ep.udpAddress !== '' && !fromRegistered) c.rebinds++;
      ep.udpAddress = address;
      ep.udpAddress32 = parseIPv4(address);
      ep.udpPort = port;
      this.transports.setTransport(ep, 'udp');
    }
    switch (h.type) {
      case VoicePacketType.AUDIO: {
        const m = ep.member;
        if (!m) {
          c.drops.not_in_channel++;
          return;
        }
        if (!m.heard) {
          c.drops.muted++;
          return;
        }
        // RED (README 9.1): read from any client. A block whose length reaches past the end is
        // refused here, so the channel only ever splits well-formed ones.
        if ((h.flags & VoiceFlags.RED) !== 0 && !readRedBlock(this.#plain, 0, r, this.#red)) {
          c.drops.bad_red++;
          return;
        }
        // A channel nobody spoke in lately has no clock running: it starts again here, before
        // the packet is stamped against the channel's media clock.
        if (ep.channel.asleep) ep.channel.wake(now);
        // Playout order follows the media timestamp (samples), not the packet sequence, which
        // heartbeats share: as in RTP, the sequence is for loss and replay, the timestamp for time.
        // Unwrap first: 2^32 is not a multiple of a frame, so dividing the raw field breaks at the wrap.
        // A restarted timeline (README 8.1) is moved after the last one first.
        const fs = ep.channel.frameSamples;
        const ts = ep.timeline.map(h.timestamp, (h.flags & VoiceFlags.MARKER) !== 0, now, fs);
        const frame = ep.timestamps.frameIndex(ts, fs);
        const pushed = ep.channel.inbox.push(m, frame, now, h.flags, this.#plain, r);
        if (pushed === InboxPush.OVER_QUOTA) {
          c.drops.inbox_quota++;
          return;
        }
        if (pushed === InboxPush.OVERFLOW) c.drops.inbox_overflow++;
        m.noteReceived(frame);
        // Streams, and a lone speaker's packet, go out to their listeners now, not at the next tick.
        ep.channel.forwardOnArrival(m, frame, this.#plain, r, now, h.timestamp, h.flags);
        return;
      }
      case VoicePacketType.HELLO:
      case VoicePacketType.HEARTBEAT: {
        const sentAt = readTimeBody(this.#plain, r);
        if (sentAt === null) {
          c.drops.TOO_SHORT++;
          return;
        }
        if (h.type === VoicePacketType.HEARTBEAT && r >= ACK_BODY_BYTES && ep.member)
          this.#downstream(ep.member, r, now);
        writeAckBody(this.#ackBody, 0, ackFor(sentAt, ep.cipher.replay));
        h.type = h.type === VoicePacketType.HELLO ? VoicePacketType.HELLO_ACK : VoicePacketType.HEARTBEAT_ACK;
        h.flags = 0;
        h.voiceId = ep.voiceId;
        h.sequence = ep.cipher.nextSequence;
        h.timestamp = Date.now() >>> 0;
        const n = ep.cipher.seal(h, this.#ackBody, this.#ackPacket);
        this.transports.send(ep, this.#ackPacket, n);
        return;
      }
      default:
        c.drops.unexpected_type++;
    }
  }
}
