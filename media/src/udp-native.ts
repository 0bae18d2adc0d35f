import { createRequire } from 'node:module';

/** The addon's exports (see media/native/voice_udp.c). */
export interface VoiceUdpAddon {
  /**
   * Sends `count` datagrams from `fd` with sendmmsg(2): packet i is
   * `batch[meta[4i], meta[4i] + meta[4i+1])` to IPv4 `meta[4i+2]` (host order) port `meta[4i+3]`.
   * Overwrites `result` (UDP_RESULT_SLOTS) with the outcome; returns the datagrams sent.
   */
  send(fd: number, batch: Uint8Array, meta: Int32Array, count: number, result: Int32Array): number;
  available(): boolean;
}

/** Int32 fields per packet in a batch's metadata: offset, length, IPv4 address, port. */
export const UDP_META_FIELDS = 4;

/** Slots of the result array the addon fills (the order of voice_udp.c's enum). */
export const UdpResult = {
  SENT: 0,
  /** EAGAIN: the socket's send buffer is full (the rest of the batch is dropped). */
  WOULD_BLOCK: 1,
  /** ENOBUFS: an output queue is full (the rest of the batch is dropped). */
  NO_BUFFERS: 2,
  /** EPERM / EACCES: a firewall rule, or a broadcast address. */
  NOT_PERMITTED: 3,
  /** EMSGSIZE. */
  TOO_LONG: 4,
  /** EINVAL, EADDRNOTAVAIL, ENETUNREACH, ...: that destination cannot be sent to. */
  BAD_ADDRESS: 5,
  OTHER: 6,
  /** EBADF / ENOTSOCK: the descriptor is no longer the socket, closed under the send (the rest of the batch is dropped). */
  CLOSED: 7,
  /** The last errno seen in the call, 0 if none. */
  LAST_ERRNO: 8,
} as const;
export const UDP_RESULT_SLOTS = 9;

/** Where the build script puts the addon (relative to media/src and media/dist alike). */
export const UDP_ADDON_PATH = new URL('../native/build/voice_udp.node', import.meta.url);

/**
 * Batched UDP send with sendmmsg(2) in our own addon (media/native/voice_udp.c, built by
 * scripts/build-native.mjs): one syscall for many datagrams, nothing allocated. Returns null when
 * the addon is not built, not on Linux, or fails its self-check (never throws), so callers send
 * with node:dgram instead.
 */
export function loadNativeUdp(path: URL = UDP_ADDON_PATH): VoiceUdpAddon | null {
  if (process.platform !== 'linux') return null;
  try {
    const mod = createRequire(import.meta.url)(path.pathname) as Partial<VoiceUdpAddon>;
    if (typeof mod.send !== 'function' || typeof mod.available !== 'function' || !mod.available())
      return null;
    const addon = mod as VoiceUdpAddon;
    // Self-check: an empty batch sends nothing and reports nothing.
    const result = new Int32Array(UDP_RESULT_SLOTS).fill(-1);
    if (addon.send(0, new Uint8Array(0), new Int32Array(0), 0, result) !== 0 || result.some((v) => v !== 0))
      return null;
    return addon;
  } catch {
    return null;
  }
}

/**
 * The descriptor of a bound node:dgram socket, or null where it cannot be had. Node (20 to 24)
 * has no public API for it; the socket's libuv handle sits in its internal state under a symbol
 * (`_handle`, the same handle, is deprecated and warns: DEP0112). Read once, after bind: the
 * descriptor lives as long as the socket. Null (not Linux, or the internals moved) means: send
 * with dgram.
 */
export function dgramDescriptor(socket: object): number | null {
  if (process.platform !== 'linux') return null;
  for (const sym of Object.getOwnPropertySymbols(socket)) {
    if (sym.description !== 'state symbol') continue;
    const state = (socket as Record<symbol, unknown>)[sym] as { handle?: { fd?: unknown } } | undefined;
    const fd = state?.handle?.fd;
    return typeof fd === 'number' && Number.isInteger(fd) && fd > 2 ? fd : null;
  }
  return null;
}
