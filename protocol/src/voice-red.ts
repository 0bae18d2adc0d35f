import { MAX_PAYLOAD_BYTES } from './voice-packet.js';

/**
 * RED (redundant audio, RFC 2198 in spirit, one redundant frame): the Opus payload of an AUDIO or
 * STREAM packet whose RED flag is set. A STREAM payload's 12-byte source comes first, then this.
 *
 * ```
 * off     size  field
 * 0       2     R, uint16 BE: length of the redundant frame, 1..
 * 2       R     the Opus frame whose timestamp is this packet's timestamp less one frame
 * 2+R     P     the primary Opus frame (this packet's timestamp), P >= 1
 * ```
 *
 * A block whose R is 0 or leaves no primary byte is malformed: the receiver drops the packet.
 */
export const RED_HEADER_BYTES = 2;

/** Where the two frames of a RED block are, as offsets into the payload it was read from. */
export interface RedBlock {
  redOffset: number;
  redLength: number;
  primaryOffset: number;
  primaryLength: number;
}

/** A zeroed RedBlock to reuse with readRedBlock. */
export function createRedBlock(): RedBlock {
  return { redOffset: 0, redLength: 0, primaryOffset: 0, primaryLength: 0 };
}

/** Bytes a RED block of these two frames takes. */
export function redBlockLength(redLength: number, primaryLength: number): number {
  return RED_HEADER_BYTES + redLength + primaryLength;
}

/**
 * Reads the RED block in `payload[offset..offset+length)` into `out`. Allocates nothing, never
 * throws; false (out unspecified) when it is malformed: shorter than the 2-byte length, a redundant
 * frame of 0 bytes, or one that reaches the end (no primary byte left).
 */
export function readRedBlock(payload: Uint8Array, offset: number, length: number, out: RedBlock): boolean {
  if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0) return false;
  if (offset + length > payload.byteLength || length < RED_HEADER_BYTES + 2) return false;
  const r = (payload[offset]! << 8) | payload[offset + 1]!;
  if (r === 0 || RED_HEADER_BYTES + r >= length) return false;
  out.redOffset = offset + RED_HEADER_BYTES;
  out.redLength = r;
  out.primaryOffset = offset + RED_HEADER_BYTES + r;
  out.primaryLength = length - RED_HEADER_BYTES - r;
  return true;
}

/**
 * Writes a RED block at `buf[offset..]`: the redundant frame `red[redOffset..+redLength)`, then the
 * primary `primary[primaryOffset..+primaryLength)`. Allocates nothing. Returns the block's length,
 * or -1 when it would not fit `limit` bytes (default: the payload limit less `offset`; the sender
 * then sends the primary alone). Throws TypeError on empty frames or a buffer too small.
 */
export function writeRedBlock(
  buf: Uint8Array,
  offset: number,
  red: Uint8Array,
  redOffset: number,
  redLength: number,
  primary: Uint8Array,
  primaryOffset: number,
  primaryLength: number,
  limit: number = MAX_PAYLOAD_BYTES - offset,
): number {
  if (!Number.isInteger(redLength) || redLength < 1 || redOffset < 0 || redOffset + redLength > red.length)
    throw new TypeError('the redundant frame must be 1 or more bytes inside its array');
  if (
    !Number.isInteger(primaryLength) ||
    primaryLength < 1 ||
    primaryOffset < 0 ||
    primaryOffset + primaryLength > primary.length
  )
    throw new TypeError('the primary frame must be 1 or more bytes inside its array');
  const n = redBlockLength(redLength, primaryLength);
  if (n > limit) return -1;
  if (!Number.isInteger(offset) || offset < 0 || offset + n > buf.length)
    throw new TypeError(`no room for a ${n}-byte RED block at offset ${offset}`);
  buf[offset] = redLength >>> 8;
  buf[offset + 1] = redLength & 0xff;
  for (let i = 0; i < redLength; i++) buf[offset + RED_HEADER_BYTES + i] = red[redOffset + i]!;
  const p = offset + RED_HEADER_BYTES + redLength;
  for (let i = 0; i < primaryLength; i++) buf[p + i] = primary[primaryOffset + i]!;
  return n;
}

/** Builds a RED block (tests, tools); null when it exceeds the payload limit. Throws on empty frames. */
export function encodeRed(red: Uint8Array, primary: Uint8Array): Uint8Array | null {
  const n = redBlockLength(red.length, primary.length);
  if (n > MAX_PAYLOAD_BYTES) return null;
  const out = new Uint8Array(n);
  writeRedBlock(out, 0, red, 0, red.length, primary, 0, primary.length);
  return out;
}

/** Splits a RED block into copies of its two frames; null when malformed. Never throws. */
export function decodeRed(payload: Uint8Array): { red: Uint8Array; primary: Uint8Array } | null {
  const b = createRedBlock();
  if (!readRedBlock(payload, 0, payload.length, b)) return null;
  return {
    red: payload.slice(b.redOffset, b.redOffset + b.redLength),
    primary: payload.slice(b.primaryOffset, b.primaryOffset + b.primaryLength),
  };
}
