import { MAX_PACKET_BYTES } from '@voice/protocol';
import { sendErrorReason, type VoiceCounters } from './counters.js';
import type { UdpEgress } from './egress.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { VoiceSocket } from './udp.js';

/** UDP sends that may be in flight at once (the kernel queue is 4 MiB: about 30,000 mixes). */
export const SEND_SLOTS = 2048;

/**
 * The portable egress: one node:dgram send per packet (about 670 young bytes and one syscall each),
 * used where the sendmmsg addon is missing or turned off (`udpSend: 'dgram'`).
 *
 * Sends go out of a ring of preallocated buffers: dgram reads a buffer only after an async step
 * (and later still when the kernel queue is full), so the caller's buffer cannot be handed over,
 * and a slot is reused only once its send has completed. When every slot is in flight the packet
 * is dropped and counted (backpressure): a queue that grows without bound helps no one.
 */
export class DgramEgress implements UdpEgress {
  readonly name = 'dgram' as const;
  readonly #slots: Buffer[] = [];
  readonly #busy = new Uint8Array(SEND_SLOTS);
  /** One completion callback per slot, made once, so a send allocates no closure. */
  readonly #done: ((err: Error | null) => void)[] = [];
  #next = 0;
  #closed = false;

  constructor(
    private readonly socket: VoiceSocket,
    private readonly counters: VoiceCounters,
  ) {
    for (let i = 0; i < SEND_SLOTS; i++) {
      this.#slots.push(Buffer.alloc(MAX_PACKET_BYTES));
      this.#done.push((err) => {
        this.#busy[i] = 0;
        if (err) this.counters.sendFailed(sendErrorReason((err as NodeJS.ErrnoException).code));
      });
    }
  }

  send(packet: Uint8Array, length: number, ep: VoiceEndpoint): boolean {
    const c = this.counters;
    if (this.#closed) {
      c.sendFailed('socket_closed');
      return false;
    }
    if (length > MAX_PACKET_BYTES) {
      c.sendFailed('too_long');
      return false;
    }
    const i = this.#next;
    if (this.#busy[i] !== 0) {
      c.sendFailed('slots_full');
      return false;
    }
    this.#next = (i + 1) % SEND_SLOTS;
    const buf = this.#slots[i]!;
    for (let b = 0; b < length; b++) buf[b] = packet[b]!;
    this.#busy[i] = 1;
    try {
      this.socket.send(buf, length, ep.udpPort, ep.udpAddress, this.#done[i]!);
    } catch (err) {
      // A socket that stopped under us (closing): count it, never break the channel's tick.
      this.#busy[i] = 0;
      c.sendFailed(sendErrorReason((err as NodeJS.ErrnoException).code));
      return false;
    }
    return true;
  }

  flush(): void {}

  close(): void {
    this.#closed = true;
  }
}
