import { MAX_PACKET_BYTES, encodeMessage, type Transport } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { SessionManager } from '../app/sessions.js';
import type { VoiceCounters } from './counters.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { VoiceSocket } from './udp.js';

/** UDP sends that may be in flight at once (the kernel queue is 4 MiB: about 30,000 mixes). */
export const SEND_SLOTS = 2048;

/**
 * Egress: sends a sealed packet to a member over the transport its latest authenticated packet
 * came by (UDP, or the WebSocket fallback), and tells the session layer when that transport changes.
 *
 * UDP sends go out of a ring of preallocated buffers: dgram reads a buffer only after an async
 * step (and later still when the kernel queue is full), so the caller's buffer cannot be handed
 * over, and a slot is reused only once its send has completed. When every slot is in flight the
 * packet is dropped and counted (backpressure): a queue that grows without bound helps no one.
 */
export class VoiceTransports {
  #closed = false;
  readonly #slots: Buffer[] = [];
  readonly #busy = new Uint8Array(SEND_SLOTS);
  /** One completion callback per slot, made once, so a send allocates no closure. */
  readonly #done: ((err: Error | null) => void)[] = [];
  #next = 0;

  constructor(
    private readonly socket: VoiceSocket,
    private readonly sessions: SessionManager,
    private readonly counters: VoiceCounters,
    private readonly log: Logger,
  ) {
    for (let i = 0; i < SEND_SLOTS; i++) {
      this.#slots.push(Buffer.alloc(MAX_PACKET_BYTES));
      this.#done.push((err) => {
        this.#busy[i] = 0;
        if (err) this.counters.sendErrors++;
      });
    }
  }

  /** An authenticated packet arrived over `t`: mixes follow it there. */
  setTransport(ep: VoiceEndpoint, t: Exclude<Transport, 'none'>): void {
    ep.transport = t;
    this.log.debug({ step: 'voice.first', user: ep.session.userId, transport: t }, 'drain trace');
    this.sessions
      .setTransport(ep.session, t)
      .catch((err: unknown) => this.log.error({ err }, 'transport event failed'));
  }

  send(ep: VoiceEndpoint, packet: Uint8Array, length: number): void {
    if (this.#closed) return;
    const c = this.counters;
    if (ep.transport === 'udp') {
      const i = this.#next;
      if (this.#busy[i] !== 0 || length > MAX_PACKET_BYTES) {
        c.sendErrors++;
        return;
      }
      this.#next = (i + 1) % SEND_SLOTS;
      const buf = this.#slots[i]!;
      for (let b = 0; b < length; b++) buf[b] = packet[b]!;
      this.#busy[i] = 1;
      try {
        this.socket.send(buf, length, ep.udpPort, ep.udpAddress, this.#done[i]!);
      } catch {
        // A socket that stopped under us (closing): count it, never break the channel's tick.
        this.#busy[i] = 0;
        c.sendErrors++;
        return;
      }
    } else if (ep.transport === 'ws') {
      const conn = ep.session.conn;
      if (!conn || !conn.sendBytes(encodeMessage({ t: 'voice', p: packet.subarray(0, length) }), true)) {
        c.sendErrors++;
        return;
      }
    } else return;
    c.packetsOut++;
    c.bytesOut += length;
  }

  close(): void {
    this.#closed = true;
  }
}
