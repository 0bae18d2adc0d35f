import { UDP_META_FIELDS, UDP_RESULT_SLOTS, type VoiceUdpAddon } from './udp-native.js';

export interface UdpBatchOptions {
  /** Datagrams a batch holds before it is sent early (default 256). */
  packets?: number;
  /** Largest datagram accepted (default 1500); the buffer holds `packets` of them. */
  maxPacketBytes?: number;
}

/**
 * Datagrams queued back to back in one preallocated buffer, sent with one sendmmsg call per flush
 * (see media/native/voice_udp.c): a turn's packets cost one syscall and no allocation. `add` copies
 * the packet (the caller's buffer is free at once); a full batch is sent before the next `add`.
 * After every send the addon's outcome (UdpResult slots) goes to `onResult`, which counts it.
 */
export class UdpBatch {
  readonly capacity: number;
  readonly maxPacketBytes: number;
  readonly #buf: Uint8Array;
  readonly #meta: Int32Array;
  readonly #result = new Int32Array(UDP_RESULT_SLOTS);
  #count = 0;
  #bytes = 0;

  constructor(
    private readonly addon: VoiceUdpAddon,
    private readonly fd: number,
    private readonly onResult: (result: Int32Array) => void,
    opts: UdpBatchOptions = {},
  ) {
    const packets = opts.packets ?? 256;
    const max = opts.maxPacketBytes ?? 1500;
    if (!Number.isInteger(fd) || fd < 0) throw new TypeError('fd must be a descriptor');
    if (!Number.isInteger(packets) || packets < 1) throw new TypeError('packets must be a positive integer');
    if (!Number.isInteger(max) || max < 1 || max > 65_507) throw new TypeError('maxPacketBytes out of range');
    this.capacity = packets;
    this.maxPacketBytes = max;
    this.#buf = new Uint8Array(packets * max);
    this.#meta = new Int32Array(packets * UDP_META_FIELDS);
  }

  /** Datagrams waiting for the next flush. */
  get size(): number {
    return this.#count;
  }

  /**
   * Queues `packet[0, length)` to `address` (IPv4 as a u32, see parseIPv4) and `port`. Returns
   * false, queuing nothing, when the length is out of range; a bad address or port is a TypeError.
   */
  add(packet: Uint8Array, length: number, address: number, port: number): boolean {
    if (!(length >= 0 && length <= this.maxPacketBytes && length <= packet.length)) return false;
    if (!(address >= 0 && address <= 0xffff_ffff && port >= 0 && port <= 65_535))
      throw new TypeError('address must be an IPv4 u32 and port 0-65535');
    if (this.#count === this.capacity || this.#bytes + length > this.#buf.length) this.flush();
    const at = this.#bytes;
    const buf = this.#buf;
    for (let b = 0; b < length; b++) buf[at + b] = packet[b]!;
    const m = this.#count * UDP_META_FIELDS;
    this.#meta[m] = at;
    this.#meta[m + 1] = length;
    this.#meta[m + 2] = address | 0;
    this.#meta[m + 3] = port;
    this.#count++;
    this.#bytes = at + length;
    return true;
  }

  /** Sends what is queued (one syscall per 128 datagrams); the buffer is reusable on return. */
  flush(): void {
    const n = this.#count;
    if (n === 0) return;
    this.#count = 0;
    this.#bytes = 0;
    this.addon.send(this.fd, this.#buf, this.#meta, n, this.#result);
    this.onResult(this.#result);
  }

  /** Forgets what is queued (the socket is closing). */
  clear(): void {
    this.#count = 0;
    this.#bytes = 0;
  }
}

/** A dotted-quad IPv4 address as a u32 (host order), or -1 when `s` is not one. Allocates nothing. */
export function parseIPv4(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || dots === 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57) {
      if (digits === 3 || (digits > 0 && part === 0)) return -1; // at most 3 digits, no leading zero
      part = part * 10 + (c - 48);
      if (part > 255) return -1;
      digits++;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}
