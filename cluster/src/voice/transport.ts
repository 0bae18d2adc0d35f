import { encodeMessage, type Transport } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { SessionManager } from '../app/sessions.js';
import type { VoiceCounters } from './counters.js';
import type { UdpEgress } from './egress.js';
import type { VoiceEndpoint } from './endpoint.js';

/**
 * Egress: sends a sealed packet to a member over the transport its latest authenticated packet
 * came by (UDP through the node's `UdpEgress`, or the WebSocket fallback), and tells the session
 * layer when that transport changes.
 */
export class VoiceTransports {
  #closed = false;
  /** Chosen once the socket is bound (its descriptor is known then): see `useUdp`. */
  #udp: UdpEgress | null = null;

  constructor(
    private readonly sessions: SessionManager,
    private readonly counters: VoiceCounters,
    private readonly log: Logger,
  ) {}

  /** Sets how UDP packets leave (once, after the socket is bound). */
  useUdp(udp: UdpEgress): void {
    if (this.#udp) throw new TypeError('the UDP egress is already set');
    this.#udp = udp;
    if (this.#closed) udp.close();
  }

  /** `sendmmsg` or `dgram`: how UDP packets leave; null before the socket is bound. */
  get udpEgress(): UdpEgress['name'] | null {
    return this.#udp?.name ?? null;
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
      const udp = this.#udp;
      if (!udp) {
        c.sendFailed('socket_closed');
        return;
      }
      if (!udp.send(packet, length, ep)) return;
    } else if (ep.transport === 'ws') {
      const conn = ep.session.conn;
      if (!conn || !conn.sendBytes(encodeMessage({ t: 'voice', p: packet.subarray(0, length) }), true)) {
        c.sendFailed('ws_backpressure');
        return;
      }
    } else return;
    c.packetsOut++;
    c.bytesOut += length;
  }

  /** Sends the UDP packets queued so far (the clock calls it at the end of each tick). */
  flush(): void {
    if (!this.#closed) this.#udp?.flush();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#udp?.close();
  }
}
