import { Packr, type Options } from 'msgpackr';
import {
  ClientMessages,
  type ClientMessage,
  type ClientMessageType,
  type ServerMessage,
} from './signaling.js';
import { ERROR_CODES, type ErrorCode } from './errors.js';

/** Largest signaling frame either side accepts. Voice-over-WebSocket frames fit well under it. */
export const MAX_FRAME_BYTES = 16 * 1024;
/** A client frame larger than this closes the connection (1009) instead of being answered. */
export const CLOSE_FRAME_BYTES = 64 * 1024;

// Plain maps only: no records/structures extension, so any msgpack implementation can talk to us.
// - `skipValues: [undefined]` leaves out properties whose value is undefined (as JSON.stringify
//   does); msgpackr would otherwise write them as its private extension 0xd4 0x00 0x00, which
//   other msgpack libraries do not understand, and a nil would fail `.optional()` fields.
// - `encodeUndefinedAsNil` covers the remaining case (undefined inside an array).
// - `copyBuffers`: decoded `bin` values (a voice packet's `p`, a binding's `key`) are copies, not
//   views into the frame, so they stay valid after the frame's memory is reused (uWebSockets.js
//   frees a message's ArrayBuffer when its handler returns).
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  int64AsType: 'number',
  mapsAsObjects: true,
  encodeUndefinedAsNil: true,
  copyBuffers: true,
  skipValues: [undefined],
} as Options);

export type DecodeResult<T> =
  { ok: true; value: T } | { ok: false; code: ErrorCode; message: string; re?: number };

export function encodeMessage(msg: ServerMessage | ClientMessage): Uint8Array {
  return packr.pack(msg);
}

/**
 * How many of `items`, from the first, fit in one frame of at most `maxBytes` once `envelope` wraps
 * them. The server pages every list it sends with this, so no list can outgrow a frame; each item
 * is encoded once to measure it (lists are requests, not the packet path).
 */
export function countFitting<T>(
  items: readonly T[],
  envelope: (items: T[]) => ServerMessage,
  maxBytes: number = MAX_FRAME_BYTES,
): number {
  // An empty array is 1 byte; the largest array header (array32) is 5.
  let used = packr.pack(envelope([])).byteLength - 1 + 5;
  let n = 0;
  for (const item of items) {
    used += packr.pack(item).byteLength;
    if (used > maxBytes) break;
    n++;
  }
  return n;
}

/** Decodes any msgpack value without validating it. Never throws. */
export function decodeRaw(bytes: Uint8Array): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: packr.unpack(bytes) };
  } catch {
    return { ok: false };
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** A request id as `reqId` in signaling.ts accepts it: an integer in [0, 2^32). */
function isRequestId(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

function fail<T>(code: ErrorCode, message: string = ERROR_CODES[code].text, re?: number): DecodeResult<T> {
  return re === undefined ? { ok: false, code, message } : { ok: false, code, message, re };
}

/**
 * Decodes and validates one client frame. Never throws: returns a typed error with the request id
 * when one could be read, so the server can answer the right request.
 */
export function decodeClientMessage(bytes: Uint8Array): DecodeResult<ClientMessage> {
  if (bytes.byteLength > MAX_FRAME_BYTES) return fail('FRAME_TOO_LARGE');
  const raw = decodeRaw(bytes);
  if (!raw.ok) return fail('BAD_FRAME');
  const v = raw.value;
  // Only a plain map: msgpackr also decodes extensions and the reserved byte 0xc1 to objects
  // (Date, Set, RegExp, Error, typed arrays, a C1 marker), none of which is a message.
  if (!isPlainObject(v)) return fail('BAD_FRAME');
  const rec = v;
  const re = isRequestId(rec.id) ? rec.id : undefined;
  const t = rec.t;
  if (typeof t !== 'string' || !Object.hasOwn(ClientMessages, t)) {
    // Describe a non-string `t` by its type only: msgpack extensions can decode to values that
    // JSON.stringify throws on (bigint, cyclic structures).
    const what =
      typeof t === 'string' ? JSON.stringify(t.slice(0, 32)) : `of type ${t === null ? 'null' : typeof t}`;
    return fail('UNKNOWN_TYPE', `unknown message type ${what}`, re);
  }
  const schema = ClientMessages[t as ClientMessageType];
  const parsed = schema.safeParse(v);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.join('.') || '(message)';
    return fail('INVALID_FIELD', `${t}: ${where}: ${issue?.message ?? 'invalid'}`, re);
  }
  return { ok: true, value: parsed.data };
}

/** Decodes a server frame on the client side (light validation: the server is trusted to be well-formed). */
export function decodeServerMessage(bytes: Uint8Array): DecodeResult<ServerMessage> {
  const raw = decodeRaw(bytes);
  if (!raw.ok) return fail('BAD_FRAME');
  const v = raw.value;
  if (typeof v !== 'object' || v === null || typeof (v as { t?: unknown }).t !== 'string')
    return fail('BAD_FRAME');
  return { ok: true, value: v as ServerMessage };
}
