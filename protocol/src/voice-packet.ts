/**
 * The binary voice packet, version 1. The same bytes travel in a UDP datagram or, on the
 * WebSocket fallback, as the `p` field of a `{ t: 'voice' }` message.
 *
 * ```
 * off   size  field
 * 0     1     magic 0x56 ('V')
 * 1     1     version = 1
 * 2     1     type (VoicePacketType, 1-6)
 * 3     1     flags (VoiceFlags; unknown bits are sent as 0 and ignored on receive)
 * 4     4     voiceId   uint32 BE: the session's id (server->client: the recipient's id)
 * 8     4     sequence  uint32 BE: per direction per session, +1 per packet of any type
 * 12    4     timestamp uint32 BE: AUDIO = sample position at 48 kHz; others = sender's ms clock mod 2^32
 * 16    n     payload, encrypted (AES-256-GCM, see voice-crypto.ts), 0 <= n <= MAX_PAYLOAD_BYTES
 * 16+n  16    GCM authentication tag
 * ```
 *
 * This module knows the layout only; voice-crypto.ts seals and opens packets.
 */

export const VOICE_MAGIC = 0x56;
export const VOICE_VERSION = 1;

export const VoicePacketType = {
  /** One Opus frame. */
  AUDIO: 1,
  /** Client registers (or re-registers) its UDP source address. Body: 8-byte send time. */
  HELLO: 2,
  /** Client keep-alive and RTT probe, every 5 s. Body: 8-byte send time. */
  HEARTBEAT: 3,
  /** Server's answer to HELLO. Body: AckBody (16 bytes). */
  HELLO_ACK: 4,
  /** Server's answer to HEARTBEAT. Body: AckBody (16 bytes). */
  HEARTBEAT_ACK: 5,
  /**
   * Server to client only, and only to a client that asked for streams (hello `streams` >= 2): one
   * speaker's Opus frame forwarded as it arrived. Payload: the speaker's source (STREAM_SOURCE_BYTES)
   * then its Opus payload; timestamp and flags are the speaker's own.
   */
  STREAM: 6,
} as const;
export type VoicePacketType = (typeof VoicePacketType)[keyof typeof VoicePacketType];
export type VoicePacketTypeName = keyof typeof VoicePacketType;

/** Name of each type code, for logs and tests. */
export const VOICE_PACKET_TYPE_NAMES: Readonly<Record<VoicePacketType, VoicePacketTypeName>> = {
  1: 'AUDIO',
  2: 'HELLO',
  3: 'HEARTBEAT',
  4: 'HELLO_ACK',
  5: 'HEARTBEAT_ACK',
  6: 'STREAM',
};

export const VoiceFlags = {
  /** First packet of a talkspurt: the receiver may reset its jitter buffer timing. */
  MARKER: 0x01,
  /** The Opus payload carries in-band FEC for the previous frame. */
  FEC: 0x02,
  /** Discontinuous transmission: silence or a comfort-noise frame. */
  DTX: 0x04,
  /**
   * Redundancy (AUDIO and STREAM, voice-red.ts): the Opus payload is a RED block, the previous
   * frame's Opus bytes then this frame's. Only between peers that negotiated it (hello/Welcome `red`).
   */
  RED: 0x08,
} as const;
export type VoiceFlag = (typeof VoiceFlags)[keyof typeof VoiceFlags];
/** Bits defined in version 1. Others must be 0 when sending and are ignored when receiving. */
export const VOICE_FLAGS_MASK = 0x0f;

export const HEADER_BYTES = 16;
export const TAG_BYTES = 16;
export const MAX_PAYLOAD_BYTES = 1000;
/** A packet always has a header and a tag; the payload may be empty. */
export const MIN_PACKET_BYTES = HEADER_BYTES + TAG_BYTES;
export const MAX_PACKET_BYTES = HEADER_BYTES + MAX_PAYLOAD_BYTES + TAG_BYTES;

/** Why a byte string is not a readable voice packet, in the order readHeader checks them. */
export const VOICE_PACKET_ERRORS = ['TOO_SHORT', 'TOO_LONG', 'BAD_MAGIC', 'BAD_VERSION', 'BAD_TYPE'] as const;
export type VoicePacketError = (typeof VOICE_PACKET_ERRORS)[number];

/** Header fields. Mutable on purpose: readHeaderInto fills a caller-owned instance per packet. */
export interface VoiceHeader {
  type: VoicePacketType;
  /** Only the bits in VOICE_FLAGS_MASK. */
  flags: number;
  voiceId: number;
  sequence: number;
  timestamp: number;
}

export type VoiceHeaderResult = { ok: true; header: VoiceHeader } | { ok: false; error: VoicePacketError };

/** A packet as a plain object. `body` is the payload as it travels (ciphertext), `tag` the GCM tag. */
export interface VoicePacket extends VoiceHeader {
  body: Uint8Array;
  tag: Uint8Array;
}

export type VoicePacketResult = { ok: true; packet: VoicePacket } | { ok: false; error: VoicePacketError };

const UINT32_LIMIT = 0x1_0000_0000;

/** A zeroed header to reuse with readHeaderInto. */
export function createVoiceHeader(): VoiceHeader {
  return { type: VoicePacketType.AUDIO, flags: 0, voiceId: 0, sequence: 0, timestamp: 0 };
}

export function isVoicePacketType(n: unknown): n is VoicePacketType {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 6;
}

/** Total wire size for a payload of `payloadLength` bytes. */
export function voicePacketLength(payloadLength: number): number {
  return HEADER_BYTES + payloadLength + TAG_BYTES;
}

/**
 * Tells a voice packet from a msgpack signaling frame (whose maps start with 0x80-0x8f, 0xde or
 * 0xdf). Only looks at the magic byte; readHeader does the full check.
 */
export function isVoicePacket(bytes: Uint8Array): boolean {
  return bytes.byteLength > 0 && bytes[0] === VOICE_MAGIC;
}

function checkUint32(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v >= UINT32_LIMIT) {
    throw new TypeError(`${name} must be an integer in [0, 2^32), got ${v}`);
  }
}

function putUint32(buf: Uint8Array, at: number, v: number): void {
  buf[at] = v >>> 24;
  buf[at + 1] = (v >>> 16) & 0xff;
  buf[at + 2] = (v >>> 8) & 0xff;
  buf[at + 3] = v & 0xff;
}

function getUint32(buf: Uint8Array, at: number): number {
  // Indices are in range: callers check the length first.
  return ((buf[at]! << 24) | (buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!) >>> 0;
}

/**
 * Writes the 16 header bytes at `offset`. Allocates nothing. Throws TypeError on a bad argument
 * (unknown type, undefined flag bits, a field outside uint32, not enough room): those are bugs in
 * the caller, not wire errors.
 */
export function writeHeader(buf: Uint8Array, offset: number, h: Readonly<VoiceHeader>): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + HEADER_BYTES > buf.byteLength) {
    throw new TypeError(`no room for a ${HEADER_BYTES}-byte header at offset ${offset}`);
  }
  if (!isVoicePacketType(h.type)) throw new TypeError(`unknown voice packet type ${String(h.type)}`);
  if (!Number.isInteger(h.flags) || (h.flags & ~VOICE_FLAGS_MASK) !== 0 || h.flags < 0) {
    throw new TypeError(`flags ${h.flags} has bits outside ${VOICE_FLAGS_MASK}`);
  }
  checkUint32('voiceId', h.voiceId);
  checkUint32('sequence', h.sequence);
  checkUint32('timestamp', h.timestamp);
  buf[offset] = VOICE_MAGIC;
  buf[offset + 1] = VOICE_VERSION;
  buf[offset + 2] = h.type;
  buf[offset + 3] = h.flags;
  putUint32(buf, offset + 4, h.voiceId);
  putUint32(buf, offset + 8, h.sequence);
  putUint32(buf, offset + 12, h.timestamp);
}

/**
 * Checks a whole packet's framing and reads its header into `out`. Allocates nothing and never
 * throws on any input. Returns null on success; on failure `out` is left in an unspecified state.
 */
export function readHeaderInto(buf: Uint8Array, out: VoiceHeader): VoicePacketError | null {
  const len = buf.byteLength;
  if (len < MIN_PACKET_BYTES) return 'TOO_SHORT';
  if (len > MAX_PACKET_BYTES) return 'TOO_LONG';
  if (buf[0] !== VOICE_MAGIC) return 'BAD_MAGIC';
  if (buf[1] !== VOICE_VERSION) return 'BAD_VERSION';
  const type = buf[2]!;
  if (!isVoicePacketType(type)) return 'BAD_TYPE';
  out.type = type;
  out.flags = buf[3]! & VOICE_FLAGS_MASK;
  out.voiceId = getUint32(buf, 4);
  out.sequence = getUint32(buf, 8);
  out.timestamp = getUint32(buf, 12);
  return null;
}

/** Like readHeaderInto, returning a fresh header. Never throws. */
export function readHeader(buf: Uint8Array): VoiceHeaderResult {
  const header = createVoiceHeader();
  const error = readHeaderInto(buf, header);
  return error === null ? { ok: true, header } : { ok: false, error };
}

/**
 * Builds a packet from a plain object (tests, tools). Sealing is voice-crypto.ts's job: this
 * writes `body` and `tag` as given. Throws TypeError on bad fields.
 */
export function encodeVoicePacket(p: Readonly<VoicePacket>): Uint8Array {
  if (p.body.byteLength > MAX_PAYLOAD_BYTES) {
    throw new TypeError(`body of ${p.body.byteLength} bytes exceeds ${MAX_PAYLOAD_BYTES}`);
  }
  if (p.tag.byteLength !== TAG_BYTES) throw new TypeError(`tag must be ${TAG_BYTES} bytes`);
  const out = new Uint8Array(voicePacketLength(p.body.byteLength));
  writeHeader(out, 0, p);
  out.set(p.body, HEADER_BYTES);
  out.set(p.tag, HEADER_BYTES + p.body.byteLength);
  return out;
}

/** Splits a packet into a plain object (copies; no decryption). Never throws. */
export function decodeVoicePacket(bytes: Uint8Array): VoicePacketResult {
  const r = readHeader(bytes);
  if (!r.ok) return r;
  const tagAt = bytes.byteLength - TAG_BYTES;
  return {
    ok: true,
    packet: { ...r.header, body: bytes.slice(HEADER_BYTES, tagAt), tag: bytes.slice(tagAt) },
  };
}

/**
 * A STREAM payload starts with the speaker's source: the 12 characters of its UserId after `u_`, in
 * ASCII. Self-describing on purpose: a client maps it to a member with no extra table, on any node.
 */
export const STREAM_SOURCE_BYTES = 12;
/** The largest Opus payload a STREAM packet carries (the payload limit less the source). */
export const MAX_STREAM_OPUS_BYTES = MAX_PAYLOAD_BYTES - STREAM_SOURCE_BYTES;
const USER_ID_PREFIX = 'u_';

/** Whether a byte is one of base64url's 64 characters (A-Z a-z 0-9 - _). */
function isBase64UrlByte(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 95;
}

/**
 * Writes a user id's source bytes at `offset` of a STREAM payload. Allocates nothing. Throws
 * TypeError when `userId` is not a UserId (`u_` + 12 base64url characters) or there is no room.
 */
export function writeStreamSource(buf: Uint8Array, offset: number, userId: string): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + STREAM_SOURCE_BYTES > buf.byteLength) {
    throw new TypeError(`no room for a ${STREAM_SOURCE_BYTES}-byte source at offset ${offset}`);
  }
  if (userId.length !== USER_ID_PREFIX.length + STREAM_SOURCE_BYTES || !userId.startsWith(USER_ID_PREFIX)) {
    throw new TypeError(`not a user id: ${userId}`);
  }
  for (let i = 0; i < STREAM_SOURCE_BYTES; i++) {
    const c = userId.charCodeAt(USER_ID_PREFIX.length + i);
    if (!isBase64UrlByte(c)) throw new TypeError(`not a user id: ${userId}`);
    buf[offset + i] = c;
  }
}

/**
 * Reads the source at `offset` of an opened STREAM payload as a UserId (`u_...`), or null when the
 * bytes are not 12 base64url characters or the payload is too short. Never throws.
 */
export function readStreamSource(payload: Uint8Array, offset = 0): string | null {
  if (!Number.isInteger(offset) || offset < 0 || offset + STREAM_SOURCE_BYTES > payload.byteLength)
    return null;
  for (let i = 0; i < STREAM_SOURCE_BYTES; i++) if (!isBase64UrlByte(payload[offset + i]!)) return null;
  return USER_ID_PREFIX + String.fromCharCode(...payload.subarray(offset, offset + STREAM_SOURCE_BYTES));
}

/**
 * Whether two sources are the same: compares the 12 source bytes at `offset` of `payload` with a
 * UserId, allocating nothing (a client keys its per-source playouts without building strings).
 */
export function streamSourceEquals(payload: Uint8Array, offset: number, userId: string): boolean {
  if (offset < 0 || offset + STREAM_SOURCE_BYTES > payload.byteLength) return false;
  if (userId.length !== USER_ID_PREFIX.length + STREAM_SOURCE_BYTES) return false;
  for (let i = 0; i < STREAM_SOURCE_BYTES; i++) {
    if (payload[offset + i] !== userId.charCodeAt(USER_ID_PREFIX.length + i)) return false;
  }
  return true;
}
