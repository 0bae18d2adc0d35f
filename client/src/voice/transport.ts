import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { MAX_PACKET_BYTES } from '@voice/protocol';

export type TransportKind = 'udp' | 'ws';

/** Called for every datagram or `voice` message; the bytes are only valid during the call. */
export type PacketHandler = (packet: Uint8Array, via: TransportKind) => void;

export interface TransportStats {
  packetsSent: number;
  bytesSent: number;
  packetsReceived: number;
  /** Sends that failed or were dropped (socket error, WebSocket backlog, closed). */
  sendDrops: number;
}

/** One way to move voice packets: UDP, or the signaling WebSocket. */
export interface VoiceTransport {
  readonly kind: TransportKind;
  /** Sends `packet[0..length)`; returns false when it was dropped. Never throws. */
  send(packet: Uint8Array, length: number): boolean;
  stats(): TransportStats;
  close(): void;
}

/** A UDP address as "host" and "port". */
export interface UdpAddress {
  host: string;
  port: number;
}

function isLoopback(address: string): boolean {
  return address === '::1' || address.startsWith('127.');
}

function isUnspecified(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '';
}

/**
 * Where to send UDP voice: the binding's udpHost unless the server reported an unspecified address
 * (it listens on all interfaces), in which case the host of the server URL.
 */
export function voiceTarget(udpHost: string, udpPort: number, serverHost: string): UdpAddress {
  const host = isUnspecified(udpHost) ? serverHost.replace(/^\[|\]$/g, '') : udpHost;
  return { host, port: udpPort };
}

const SEND_SLOTS = 32;

export interface UdpTransportOptions {
  readonly target: UdpAddress;
  /** Local address to bind (default: loopback when the target is loopback, else all interfaces). */
  readonly bindHost?: string;
  readonly onPacket: PacketHandler;
  /** Socket errors (after which the transport stays open; sends may keep failing). */
  readonly onError?: (err: Error) => void;
}

/**
 * A UDP socket bound to an ephemeral port that sends to one target and hands every datagram it
 * receives to `onPacket` (authentication is the caller's job, so packets relayed from any address are
 * accepted). Sends are copied into a ring of preallocated buffers, so the caller may reuse its buffer
 * at once and nothing is allocated per packet here.
 */
export class UdpTransport implements VoiceTransport {
  readonly kind = 'udp' as const;
  readonly targetAddress: string;
  readonly targetPort: number;
  private readonly slots: Buffer[] = [];
  private slot = 0;
  private closed = false;
  private readonly counters: TransportStats = {
    packetsSent: 0,
    bytesSent: 0,
    packetsReceived: 0,
    sendDrops: 0,
  };
  private readonly onSent = (err: Error | null): void => {
    if (err) this.counters.sendDrops++;
  };

  private constructor(
    private readonly socket: Socket,
    address: string,
    port: number,
  ) {
    this.targetAddress = address;
    this.targetPort = port;
    for (let i = 0; i < SEND_SLOTS; i++) this.slots.push(Buffer.alloc(MAX_PACKET_BYTES));
  }

  /** Resolves the target once (no DNS lookup per packet), binds the socket, starts receiving. */
  static async open(options: UdpTransportOptions): Promise<UdpTransport> {
    const { target, onPacket, onError } = options;
    let address = target.host;
    let family = isIP(address);
    if (family === 0) {
      const r = await lookup(target.host);
      address = r.address;
      family = r.family;
    }
    const v6 = family === 6;
    const bindHost =
      options.bindHost ?? (isLoopback(address) ? (v6 ? '::1' : '127.0.0.1') : v6 ? '::' : '0.0.0.0');
    const socket = createSocket({ type: v6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, bindHost, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const t = new UdpTransport(socket, address, target.port);
    socket.on('message', (msg: Buffer) => {
      t.counters.packetsReceived++;
      onPacket(msg, 'udp');
    });
    socket.on('error', (err) => onError?.(err));
    return t;
  }

  /** The local port the socket is bound to. */
  get localPort(): number {
    return this.socket.address().port;
  }

  send(packet: Uint8Array, length: number): boolean {
    if (this.closed || length > MAX_PACKET_BYTES) {
      this.counters.sendDrops++;
      return false;
    }
    const buf = this.slots[this.slot]!;
    this.slot = (this.slot + 1) % SEND_SLOTS;
    buf.set(length === packet.length ? packet : packet.subarray(0, length), 0);
    try {
      this.socket.send(buf, 0, length, this.targetPort, this.targetAddress, this.onSent);
    } catch {
      this.counters.sendDrops++;
      return false;
    }
    this.counters.packetsSent++;
    this.counters.bytesSent += length;
    return true;
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

/** What the WebSocket transport needs from the signaling connection (SignalingClient fits). */
export interface VoiceSignaling {
  readonly closed: boolean;
  readonly bufferedAmount?: number;
  sendVoice(packet: Uint8Array): void;
  on(event: 'voice', listener: (m: { p: Uint8Array }) => void): unknown;
  off(event: 'voice', listener: (m: { p: Uint8Array }) => void): unknown;
}

/** Voice frames are dropped rather than queued once this much is waiting in the WebSocket. */
export const MAX_WS_BACKLOG_BYTES = 64 * 1024;

/** Voice over the signaling WebSocket (`{t: 'voice', p}`), the fallback when UDP is blocked. */
export class WsTransport implements VoiceTransport {
  readonly kind = 'ws' as const;
  private closed = false;
  private readonly counters: TransportStats = {
    packetsSent: 0,
    bytesSent: 0,
    packetsReceived: 0,
    sendDrops: 0,
  };
  private readonly listener = (m: { p: Uint8Array }): void => {
    if (this.closed || !(m.p instanceof Uint8Array)) return;
    this.counters.packetsReceived++;
    this.onPacket(m.p, 'ws');
  };

  constructor(
    private readonly signaling: VoiceSignaling,
    private readonly onPacket: PacketHandler,
  ) {
    signaling.on('voice', this.listener);
  }

  send(packet: Uint8Array, length: number): boolean {
    if (this.closed || this.signaling.closed || (this.signaling.bufferedAmount ?? 0) > MAX_WS_BACKLOG_BYTES) {
      this.counters.sendDrops++;
      return false;
    }
    try {
      // encodeMessage copies the bytes into the frame, so the caller may reuse its buffer.
      this.signaling.sendVoice(length === packet.length ? packet : packet.subarray(0, length));
    } catch {
      this.counters.sendDrops++;
      return false;
    }
    this.counters.packetsSent++;
    this.counters.bytesSent += length;
    return true;
  }

  stats(): TransportStats {
    return { ...this.counters };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.signaling.off('voice', this.listener);
  }
}
