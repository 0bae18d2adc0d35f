/**
 * Just enough of the Mumble 1.3 protocol for the side-by-side benchmark's load generator: the
 * control channel's framing and the few protobuf fields it needs, Mumble's own varint, and the
 * OCB2-AES128 that seals its UDP voice (CryptState.cpp). Not a client library: a bench tool.
 */
import { createCipheriv, type Cipher } from 'node:crypto';

/** Control message types (Mumble.proto order). */
export const MumbleMsg = {
  Version: 0,
  UDPTunnel: 1,
  Authenticate: 2,
  Ping: 3,
  Reject: 4,
  ServerSync: 5,
  ChannelState: 7,
  UserState: 9,
  PermissionDenied: 12,
  CryptSetup: 15,
} as const;

/** A protobuf field: a varint (numbers, bools) or length-delimited bytes (strings, bytes). */
export type PbValue = number | boolean | string | Uint8Array;

function pbVarint(out: number[], n: number): void {
  let v = n;
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
}

/** Encodes `fields` (field number -> value) as a protobuf message. */
export function pbEncode(fields: [number, PbValue][]): Buffer {
  const out: number[] = [];
  for (const [no, v] of fields) {
    if (typeof v === 'number' || typeof v === 'boolean') {
      pbVarint(out, no << 3);
      pbVarint(out, typeof v === 'boolean' ? Number(v) : v);
    } else {
      const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
      pbVarint(out, (no << 3) | 2);
      pbVarint(out, bytes.length);
      for (const b of bytes) out.push(b);
    }
  }
  return Buffer.from(out);
}

/** Decodes a protobuf message into field number -> last value (varints as numbers, the rest as bytes). */
export function pbDecode(buf: Uint8Array): Map<number, number | Buffer> {
  const m = new Map<number, number | Buffer>();
  let i = 0;
  const varint = (): number => {
    let v = 0;
    let mul = 1;
    for (;;) {
      const b = buf[i++]!;
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const type = key & 7;
    if (type === 0) m.set(key >>> 3, varint());
    else if (type === 2) {
      const n = varint();
      m.set(key >>> 3, Buffer.from(buf.subarray(i, i + n)));
      i += n;
    } else if (type === 5) i += 4;
    else if (type === 1) i += 8;
    else break;
  }
  return m;
}

/** A control frame: 2-byte type, 4-byte length, payload (big-endian). */
export function frame(type: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(6);
  head.writeUInt16BE(type, 0);
  head.writeUInt32BE(payload.length, 2);
  return Buffer.concat([head, payload]);
}

/** Mumble's PacketDataStream varint (not protobuf's), for values under 2^28. */
export function mumbleVarint(out: Buffer, at: number, v: number): number {
  if (v < 0x80) {
    out[at] = v;
    return at + 1;
  }
  if (v < 0x4000) {
    out[at] = (v >> 8) | 0x80;
    out[at + 1] = v & 0xff;
    return at + 2;
  }
  if (v < 0x200000) {
    out[at] = (v >> 16) | 0xc0;
    out[at + 1] = (v >> 8) & 0xff;
    out[at + 2] = v & 0xff;
    return at + 3;
  }
  out[at] = (v >>> 24) | 0xe0;
  out[at + 1] = (v >> 16) & 0xff;
  out[at + 2] = (v >> 8) & 0xff;
  out[at + 3] = v & 0xff;
  return at + 4;
}

/** GF(2^128) doubling (S2 in CryptState.cpp), on a 16-byte block in place. */
function times2(b: Buffer): void {
  const carry = b[0]! >> 7;
  for (let i = 0; i < 15; i++) b[i] = ((b[i]! << 1) | (b[i + 1]! >> 7)) & 0xff;
  b[15] = ((b[15]! << 1) & 0xff) ^ (carry * 0x87);
}

/**
 * The sending half of Mumble's CryptState: OCB2-AES128 with a 16-byte nonce incremented per packet;
 * a packet is the nonce's first byte, the tag's first 3 bytes, and the ciphertext.
 */
export class MumbleEncrypter {
  readonly #aes: Cipher;
  readonly #iv: Buffer;
  readonly #delta = Buffer.alloc(16);
  readonly #check = Buffer.alloc(16);
  readonly #tmp = Buffer.alloc(16);

  constructor(key: Uint8Array, clientNonce: Uint8Array) {
    this.#aes = createCipheriv('aes-128-ecb', key, null).setAutoPadding(false);
    this.#iv = Buffer.from(clientNonce);
  }

  #block(src: Buffer, dst: Buffer): void {
    this.#aes.update(src).copy(dst);
  }

  /** Seals `plain` into `out` (4 + plain.length bytes); returns the packet length. */
  seal(plain: Buffer, out: Buffer): number {
    const iv = this.#iv;
    // Little-endian increment of the nonce, as CryptState::encrypt does.
    for (let i = 0; i < 16; i++) {
      iv[i] = (iv[i]! + 1) & 0xff;
      if (iv[i] !== 0) break;
    }
    const delta = this.#delta;
    const check = this.#check.fill(0);
    const tmp = this.#tmp;
    this.#block(iv, delta);
    let len = plain.length;
    let off = 0;
    while (len > 16) {
      times2(delta);
      for (let i = 0; i < 16; i++) tmp[i] = plain[off + i]! ^ delta[i]!;
      this.#block(tmp, tmp);
      for (let i = 0; i < 16; i++) {
        out[4 + off + i] = tmp[i]! ^ delta[i]!;
        check[i]! ^= plain[off + i]!;
      }
      off += 16;
      len -= 16;
    }
    times2(delta);
    tmp.fill(0);
    tmp.writeUInt32BE(len * 8, 12);
    for (let i = 0; i < 16; i++) tmp[i]! ^= delta[i]!;
    const pad = Buffer.alloc(16);
    this.#block(tmp, pad);
    for (let i = 0; i < 16; i++) tmp[i] = i < len ? plain[off + i]! : pad[i]!;
    for (let i = 0; i < 16; i++) check[i]! ^= tmp[i]!;
    for (let i = 0; i < len; i++) out[4 + off + i] = tmp[i]! ^ pad[i]!;
    // S3(delta) = S2(delta) ^ delta
    const d3 = Buffer.from(delta);
    times2(d3);
    for (let i = 0; i < 16; i++) tmp[i] = d3[i]! ^ delta[i]! ^ check[i]!;
    const tag = Buffer.alloc(16);
    this.#block(tmp, tag);
    out[0] = iv[0]!;
    out[1] = tag[0]!;
    out[2] = tag[1]!;
    out[3] = tag[2]!;
    return 4 + plain.length;
  }
}
