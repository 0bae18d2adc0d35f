/**
 * Voice packet encryption (AES-256-GCM) and replay protection.
 *
 * - Key: 32 random bytes per session, delivered in VoiceBinding.key over the (TLS) signaling
 *   connection. One key serves both directions; the nonce's direction byte keeps them apart.
 * - Nonce (12 bytes): [direction][type][0][0][voiceId u32 BE][sequence u32 BE].
 * - AAD: the 16 header bytes exactly as sent. Ciphertext replaces the payload; the 16-byte tag
 *   follows it.
 * - A (key, direction, sequence) triple must never be sealed twice: VoiceCipher.seal refuses a
 *   sequence that does not increase. Sequence numbers do not wrap: a session that has sent 2^32
 *   packets (497 days at 100 packets/s) must get a new key (a new VoiceBinding), and every new
 *   binding starts again at sequence 0 with a fresh key.
 */
import { randomBytes } from 'node:crypto';
import { nodeCryptoAead, type AeadBackend, type AeadKey } from './voice-aead.js';
import {
  HEADER_BYTES,
  MAX_PAYLOAD_BYTES,
  VOICE_PACKET_ERRORS,
  createVoiceHeader,
  readHeaderInto,
  voicePacketLength,
  writeHeader,
  type VoiceHeader,
  type VoicePacketError,
} from './voice-packet.js';

export const VOICE_KEY_BYTES = 32;
export const VOICE_NONCE_BYTES = 12;
const UINT32_LIMIT = 0x1_0000_0000;

/** First nonce byte: who sealed the packet. */
export const VoiceDirection = {
  CLIENT_TO_SERVER: 0,
  SERVER_TO_CLIENT: 1,
} as const;
export type VoiceDirection = (typeof VoiceDirection)[keyof typeof VoiceDirection];

export const VOICE_OPEN_ERRORS = [...VOICE_PACKET_ERRORS, 'AUTH_FAILED', 'REPLAY'] as const;
/** Why VoiceCipher.open rejected a packet: bad framing, failed authentication, or a replay. */
export type VoiceOpenError = VoicePacketError | 'AUTH_FAILED' | 'REPLAY';

export type VoiceOpenResult =
  { ok: true; header: VoiceHeader; payloadLength: number } | { ok: false; error: VoiceOpenError };

/** 32 fresh random bytes for a VoiceBinding. */
export function createVoiceKey(): Uint8Array {
  return new Uint8Array(randomBytes(VOICE_KEY_BYTES));
}

/** Writes the 12-byte nonce for one packet into `out` (at least 12 bytes). Allocates nothing. */
export function writeVoiceNonce(
  out: Uint8Array,
  direction: VoiceDirection,
  type: number,
  voiceId: number,
  sequence: number,
): void {
  out[0] = direction;
  out[1] = type;
  out[2] = 0;
  out[3] = 0;
  out[4] = voiceId >>> 24;
  out[5] = (voiceId >>> 16) & 0xff;
  out[6] = (voiceId >>> 8) & 0xff;
  out[7] = voiceId & 0xff;
  out[8] = sequence >>> 24;
  out[9] = (sequence >>> 16) & 0xff;
  out[10] = (sequence >>> 8) & 0xff;
  out[11] = sequence & 0xff;
}

export const REPLAY_WINDOW_SIZE = 1024;
const WINDOW_MASK = REPLAY_WINDOW_SIZE - 1;

/**
 * Sliding anti-replay window over the last 1024 sequence numbers (RFC 6479 / WireGuard style,
 * a bitmap in a Uint32Array). With `top` the highest sequence accepted so far, a sequence is
 * accepted when it is above `top` (the window slides up to it), or within `top - 1023 .. top`
 * and not seen before. Older ones and duplicates are rejected.
 *
 * Sequence numbers are uint32 and never wrap within one key (see the module comment), so a
 * sequence below the window is simply old.
 *
 * Use `check` before authenticating and `commit` only after authentication succeeded, so a
 * forged packet can never move the window.
 */
export class ReplayWindow {
  readonly size = REPLAY_WINDOW_SIZE;
  private readonly bits = new Uint32Array(REPLAY_WINDOW_SIZE / 32);
  private top = -1;
  private low = -1;
  private count = 0;

  /** Highest sequence accepted, or -1 before the first. */
  get highest(): number {
    return this.top;
  }

  /** Packets accepted (duplicates and replays excluded). */
  get received(): number {
    return this.count;
  }

  /**
   * Sequence numbers missing between the lowest and the highest accepted, counting packets that
   * arrived too late for the window as lost.
   */
  get lost(): number {
    return this.count === 0 ? 0 : this.top - this.low + 1 - this.count;
  }

  /** Would `sequence` be accepted? Does not change the window. Throws TypeError if not a uint32. */
  check(sequence: number): boolean {
    if (!Number.isInteger(sequence) || sequence < 0 || sequence >= UINT32_LIMIT) {
      throw new TypeError(`sequence must be a uint32, got ${sequence}`);
    }
    if (sequence > this.top) return true;
    if (this.top - sequence >= REPLAY_WINDOW_SIZE) return false;
    const bit = sequence & WINDOW_MASK;
    return (this.bits[bit >>> 5]! & (1 << (bit & 31))) === 0;
  }

  /** Records `sequence` as seen if it is acceptable; returns whether it was. */
  commit(sequence: number): boolean {
    if (!this.check(sequence)) return false;
    if (sequence > this.top) {
      if (this.top < 0 || sequence - this.top >= REPLAY_WINDOW_SIZE) this.bits.fill(0);
      else this.clearRange(this.top + 1, sequence);
      this.top = sequence;
    }
    const bit = sequence & WINDOW_MASK;
    this.bits[bit >>> 5]! |= 1 << (bit & 31);
    this.count++;
    if (this.low < 0 || sequence < this.low) this.low = sequence;
    return true;
  }

  reset(): void {
    this.bits.fill(0);
    this.top = -1;
    this.low = -1;
    this.count = 0;
  }

  /** Clears the slots of sequences from..to (inclusive, fewer than the window size). */
  private clearRange(from: number, to: number): void {
    let s = from;
    while (s <= to) {
      const bit = s & WINDOW_MASK;
      if ((bit & 31) === 0 && to - s >= 31) {
        this.bits[bit >>> 5] = 0;
        s += 32;
      } else {
        this.bits[bit >>> 5]! &= ~(1 << (bit & 31));
        s++;
      }
    }
  }
}

/**
 * Seals outgoing and opens incoming voice packets of one session. Construct it with the session
 * key and the direction this side sends in: a client uses CLIENT_TO_SERVER, the server
 * SERVER_TO_CLIENT. Incoming packets are opened with the other direction, so a packet reflected
 * back to its sender fails authentication.
 *
 * The AES-256-GCM work goes to an AeadBackend: node:crypto by default (which allocates a cipher
 * object and output buffers per packet), or a persistent native context that allocates nothing.
 * Every backend produces the same bytes. `close()` frees a native context at once.
 */
export class VoiceCipher {
  readonly receiveDirection: VoiceDirection;
  /** Anti-replay state of incoming packets; its counters feed HEARTBEAT_ACK. */
  readonly replay = new ReplayWindow();
  private readonly aead: AeadKey;
  private readonly nonce = new Uint8Array(VOICE_NONCE_BYTES);
  private readonly scratch = createVoiceHeader();
  private lastSealed = -1;

  constructor(
    key: Uint8Array,
    readonly sendDirection: VoiceDirection,
    backend: AeadBackend = nodeCryptoAead,
  ) {
    if (!(key instanceof Uint8Array) || key.byteLength !== VOICE_KEY_BYTES) {
      throw new TypeError(`voice key must be ${VOICE_KEY_BYTES} bytes`);
    }
    if (
      sendDirection !== VoiceDirection.CLIENT_TO_SERVER &&
      sendDirection !== VoiceDirection.SERVER_TO_CLIENT
    ) {
      throw new TypeError(`unknown direction ${String(sendDirection)}`);
    }
    this.aead = backend.create(key);
    this.receiveDirection =
      sendDirection === VoiceDirection.CLIENT_TO_SERVER
        ? VoiceDirection.SERVER_TO_CLIENT
        : VoiceDirection.CLIENT_TO_SERVER;
  }

  /** The smallest sequence seal accepts next (0 for a new cipher). */
  get nextSequence(): number {
    return this.lastSealed + 1;
  }

  /**
   * Writes header, encrypted payload (the first `payloadLength` bytes of `payload`, all of it by default:
   * pass a length rather than a subarray on a hot path) and tag to the start of `out`; returns the
   * packet length.
   * Throws TypeError for a bad header field, a payload over MAX_PAYLOAD_BYTES, an `out` too small,
   * or a sequence not above the last one sealed (which would reuse a nonce).
   */
  seal(
    h: Readonly<VoiceHeader>,
    payload: Uint8Array,
    out: Uint8Array,
    payloadLength = payload.byteLength,
  ): number {
    const n = payloadLength;
    if (!Number.isInteger(n) || n < 0 || n > payload.byteLength)
      throw new TypeError(`payload length ${n} is not within the ${payload.byteLength}-byte payload buffer`);
    if (n > MAX_PAYLOAD_BYTES) throw new TypeError(`payload of ${n} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
    const length = voicePacketLength(n);
    if (out.byteLength < length) throw new TypeError(`out has ${out.byteLength} bytes, needs ${length}`);
    if (h.sequence <= this.lastSealed) {
      throw new TypeError(`sequence ${h.sequence} does not increase (last sealed ${this.lastSealed})`);
    }
    writeHeader(out, 0, h);
    for (let i = 0; i < n; i++) out[HEADER_BYTES + i] = payload[i]!;
    writeVoiceNonce(this.nonce, this.sendDirection, h.type, h.voiceId, h.sequence);
    this.aead.seal(this.nonce, out, n);
    this.lastSealed = h.sequence;
    return length;
  }

  /**
   * The cheap half of opening: framing and the replay window, no cryptography. Fills `header`
   * and returns null when the packet is worth authenticating, else the error. Never throws on
   * packet bytes. A receiver that must ration decryptions checks first, then calls `openChecked`.
   */
  check(packet: Uint8Array, header: VoiceHeader): VoiceOpenError | null {
    const error = readHeaderInto(packet, header);
    if (error !== null) return error;
    return this.replay.check(header.sequence) ? null : 'REPLAY';
  }

  /**
   * Opens one incoming packet: checks framing, checks the replay window, authenticates and
   * decrypts into `out`, then records the sequence. Fills `header` and returns the payload length,
   * or returns an error code. Never throws on any packet bytes; throws TypeError only when `out`
   * is shorter than MAX_PAYLOAD_BYTES. On failure, `out` and `header` hold unspecified data.
   */
  openInto(packet: Uint8Array, out: Uint8Array, header: VoiceHeader): number | VoiceOpenError {
    if (out.byteLength < MAX_PAYLOAD_BYTES) {
      throw new TypeError(`out must hold ${MAX_PAYLOAD_BYTES} bytes, has ${out.byteLength}`);
    }
    const error = this.check(packet, header);
    return error ?? this.openChecked(packet, out, header);
  }

  /**
   * The second half of `openInto`, for a packet that `check` passed into `header`: authenticates,
   * decrypts into `out` and records the sequence.
   */
  openChecked(packet: Uint8Array, out: Uint8Array, header: Readonly<VoiceHeader>): number | 'AUTH_FAILED' {
    if (out.byteLength < MAX_PAYLOAD_BYTES) {
      throw new TypeError(`out must hold ${MAX_PAYLOAD_BYTES} bytes, has ${out.byteLength}`);
    }
    writeVoiceNonce(this.nonce, this.receiveDirection, header.type, header.voiceId, header.sequence);
    const n = this.aead.open(this.nonce, packet, packet.byteLength, out);
    if (n < 0) return 'AUTH_FAILED';
    // Only an authenticated packet moves the window.
    this.replay.commit(header.sequence);
    return n;
  }

  /** Frees the backend's native state (idempotent); the cipher must not be used afterwards. */
  close(): void {
    this.aead.close();
  }

  /** openInto with a fresh header and a result object, for code off the hot path. */
  open(packet: Uint8Array, out: Uint8Array): VoiceOpenResult {
    const r = this.openInto(packet, out, this.scratch);
    if (typeof r !== 'number') return { ok: false, error: r };
    return { ok: true, header: { ...this.scratch }, payloadLength: r };
  }
}

// ---------------------------------------------------------------------------------------------
// Bodies of the control packets (plaintext, before sealing / after opening).

/** HELLO and HEARTBEAT body: the client's send time, float64 BE, milliseconds on its own clock. */
export const TIME_BODY_BYTES = 8;
/** HELLO_ACK and HEARTBEAT_ACK body: the echoed 8 bytes, then packetsReceived and packetsLost (uint32 BE). */
export const ACK_BODY_BYTES = 16;

export interface AckBody {
  /** The client's send time echoed from the HELLO/HEARTBEAT: RTT = now - sentAt. */
  sentAt: number;
  /** Packets the server has accepted from this session (all types) under the current key. */
  packetsReceived: number;
  /** Sequence numbers the server found missing (or too late) under the current key. */
  packetsLost: number;
}

function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function checkRoom(buf: Uint8Array, offset: number, bytes: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + bytes > buf.byteLength) {
    throw new TypeError(`no room for ${bytes} bytes at offset ${offset}`);
  }
}

function checkCount(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= UINT32_LIMIT) throw new TypeError(`${name} must be a uint32`);
}

/** Writes a HELLO/HEARTBEAT body; returns its length (8). */
export function writeTimeBody(out: Uint8Array, offset: number, sentAtMs: number): number {
  checkRoom(out, offset, TIME_BODY_BYTES);
  view(out).setFloat64(offset, sentAtMs);
  return TIME_BODY_BYTES;
}

/**
 * Reads a HELLO/HEARTBEAT body from the first `length` bytes of `body`. Returns null when too
 * short; bytes beyond the 8 are ignored (room for later versions). Never throws.
 */
export function readTimeBody(body: Uint8Array, length: number = body.byteLength): number | null {
  if (length < TIME_BODY_BYTES || body.byteLength < TIME_BODY_BYTES) return null;
  return view(body).getFloat64(0);
}

/** Writes a HELLO_ACK/HEARTBEAT_ACK body; returns its length (16). */
export function writeAckBody(out: Uint8Array, offset: number, ack: Readonly<AckBody>): number {
  checkRoom(out, offset, ACK_BODY_BYTES);
  checkCount('packetsReceived', ack.packetsReceived);
  checkCount('packetsLost', ack.packetsLost);
  const v = view(out);
  v.setFloat64(offset, ack.sentAt);
  v.setUint32(offset + 8, ack.packetsReceived);
  v.setUint32(offset + 12, ack.packetsLost);
  return ACK_BODY_BYTES;
}

/** Reads an ACK body (see readTimeBody for the rules). Never throws. */
export function readAckBody(body: Uint8Array, length: number = body.byteLength): AckBody | null {
  if (length < ACK_BODY_BYTES || body.byteLength < ACK_BODY_BYTES) return null;
  const v = view(body);
  return { sentAt: v.getFloat64(0), packetsReceived: v.getUint32(8), packetsLost: v.getUint32(12) };
}

export function encodeTimeBody(sentAtMs: number): Uint8Array {
  const out = new Uint8Array(TIME_BODY_BYTES);
  writeTimeBody(out, 0, sentAtMs);
  return out;
}

export function encodeAckBody(ack: Readonly<AckBody>): Uint8Array {
  const out = new Uint8Array(ACK_BODY_BYTES);
  writeAckBody(out, 0, ack);
  return out;
}

/** The ACK the server owes for a HELLO/HEARTBEAT body, filled from this session's replay window. */
export function ackFor(sentAt: number, window: ReplayWindow): AckBody {
  return {
    sentAt,
    packetsReceived: Math.min(window.received, UINT32_LIMIT - 1),
    packetsLost: Math.min(window.lost, UINT32_LIMIT - 1),
  };
}
