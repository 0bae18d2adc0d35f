import { MAX_PACKET_BYTES } from '@voice/protocol';
import { UdpBatch, UdpResult, type VoiceUdpAddon } from '@voice/media';
import type { SendErrorReason, VoiceCounters } from './counters.js';
import type { UdpEgress } from './egress.js';
import type { VoiceEndpoint } from './endpoint.js';

/** Packets a batch holds before it is sent early: a slot's ticks at 500 members are about 60. */
export const BATCH_PACKETS = 512;

/** Each error slot of the addon's result, and the reason its datagrams are counted under. */
const RESULT_REASONS: readonly { slot: number; reason: SendErrorReason }[] = [
  { slot: UdpResult.WOULD_BLOCK, reason: 'would_block' },
  { slot: UdpResult.NO_BUFFERS, reason: 'no_buffers' },
  { slot: UdpResult.NOT_PERMITTED, reason: 'not_permitted' },
  { slot: UdpResult.TOO_LONG, reason: 'too_long' },
  { slot: UdpResult.BAD_ADDRESS, reason: 'bad_address' },
  { slot: UdpResult.CLOSED, reason: 'socket_closed' },
  { slot: UdpResult.OTHER, reason: 'other' },
];

/**
 * The Linux egress: packets are copied into one preallocated batch and leave with sendmmsg(2) on
 * the voice socket's own descriptor (same socket, same port), one syscall for a whole turn's
 * packets and nothing allocated per packet (media/native/voice_udp.c). The clock flushes at the end
 * of each tick, after every channel due in it has sent; a safety flush (setImmediate, armed by the
 * first packet of a batch) sends what other turns queue (ingress acks, forwarded packets) after
 * the current batch of I/O callbacks, so nothing waits for a tick. sendmmsg is synchronous: the
 * batch is reusable at once, no completion callbacks. Failures are counted by reason, never thrown.
 */
export class BatchEgress implements UdpEgress {
  readonly name = 'sendmmsg' as const;
  readonly #batch: UdpBatch;
  #armed: NodeJS.Immediate | null = null;
  #closed = false;
  readonly #safetyFlush = (): void => {
    this.#armed = null;
    this.flush();
  };

  constructor(
    addon: VoiceUdpAddon,
    fd: number,
    private readonly counters: VoiceCounters,
    private readonly report: (err: unknown) => void,
    packets = BATCH_PACKETS,
  ) {
    this.#batch = new UdpBatch(addon, fd, (r) => this.#count(r), {
      packets,
      maxPacketBytes: MAX_PACKET_BYTES,
    });
  }

  send(packet: Uint8Array, length: number, ep: VoiceEndpoint): boolean {
    const c = this.counters;
    if (this.#closed) {
      c.sendFailed('socket_closed');
      return false;
    }
    if (ep.udpAddress32 < 0) {
      // The socket is udp4: every source address is IPv4; anything else is a bug, counted.
      c.sendFailed('bad_address');
      return false;
    }
    const queued = this.#batch.size;
    try {
      if (!this.#batch.add(packet, length, ep.udpAddress32, ep.udpPort)) {
        c.sendFailed('too_long');
        return false;
      }
    } catch (err) {
      // Only a bug can get here (the addon refuses its arguments): cost the batch, not the tick.
      this.#failed(err, queued + 1);
      return false;
    }
    this.#armed ??= setImmediate(this.#safetyFlush);
    return true;
  }

  flush(): void {
    const queued = this.#batch.size;
    if (queued === 0) return;
    try {
      this.#batch.flush();
    } catch (err) {
      this.#failed(err, queued);
    }
  }

  #failed(err: unknown, lost: number): void {
    this.counters.sendFailed('other', lost);
    this.#batch.clear();
    this.report(err);
  }

  #count(r: Int32Array): void {
    this.counters.udpBatches++;
    for (let i = 0; i < RESULT_REASONS.length; i++) {
      const { slot, reason } = RESULT_REASONS[i]!;
      const n = r[slot]!;
      if (n > 0) this.counters.sendFailed(reason, n);
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#armed) clearImmediate(this.#armed);
    this.#armed = null;
    // Queued packets never leave: the socket closes after this.
    if (this.#batch.size > 0) this.counters.sendFailed('socket_closed', this.#batch.size);
    this.#batch.clear();
  }
}
