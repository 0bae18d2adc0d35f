import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { ScryptOptions } from 'node:crypto';
import { asChannelId, asUserId } from '@voice/protocol';
import type { ChannelId, UserId } from '@voice/protocol';

/** scrypt cost: N=2^14, r=8, p=1 takes 16 MiB and some tens of milliseconds per hash. */
const SCRYPT_N = 16_384;
const SCRYPT_R = 8;
const SCRYPT_P = 1;
const SALT_BYTES = 16;
const KEY_BYTES = 32;
/** Bounds a stored hash may name; anything outside is treated as malformed (never run). */
const MAX_N = 1 << 20;
const MAX_R = 32;
const MAX_P = 16;
const B64URL = /^[A-Za-z0-9_-]+$/;
const DECIMAL = /^[1-9][0-9]{0,9}$/;

function scryptAsync(
  password: string,
  salt: Buffer,
  keylen: number,
  options: ScryptOptions,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

const scryptOptions = (N: number, r: number, p: number): ScryptOptions => ({
  N,
  r,
  p,
  // scrypt needs 128 * N * r bytes; Node's default ceiling (32 MiB) would refuse the larger bounds.
  maxmem: 128 * N * r + 1024 * 1024,
});

/**
 * Hashes a channel password as `scrypt$N$r$p$salt$hash` (salt and hash base64url). The password is
 * NFC-normalised first so that the same text typed on different systems verifies.
 */
export async function hashPassword(password: string): Promise<string> {
  if (typeof password !== 'string') throw new TypeError('password must be a string');
  const salt = randomBytes(SALT_BYTES);
  const key = await scryptAsync(
    password.normalize('NFC'),
    salt,
    KEY_BYTES,
    scryptOptions(SCRYPT_N, SCRYPT_R, SCRYPT_P),
  );
  return `scrypt$${SCRYPT_N}$${SCRYPT_R}$${SCRYPT_P}$${salt.toString('base64url')}$${key.toString('base64url')}`;
}

/** Checks a password against a stored hash in constant time. False, never a throw, on malformed input. */
export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  if (typeof password !== 'string' || typeof stored !== 'string') return false;
  const parts = stored.split('$');
  if (parts.length !== 6) return false;
  const [scheme, nText, rText, pText, saltText, hashText] = parts as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (scheme !== 'scrypt') return false;
  if (!DECIMAL.test(nText) || !DECIMAL.test(rText) || !DECIMAL.test(pText)) return false;
  const N = Number(nText);
  const r = Number(rText);
  const p = Number(pText);
  if (N < 2 || N > MAX_N || (N & (N - 1)) !== 0 || r > MAX_R || p > MAX_P) return false;
  if (!B64URL.test(saltText) || !B64URL.test(hashText)) return false;
  const salt = Buffer.from(saltText, 'base64url');
  const expected = Buffer.from(hashText, 'base64url');
  if (salt.length < 8 || expected.length < 16 || expected.length > 64) return false;
  try {
    const actual = await scryptAsync(
      password.normalize('NFC'),
      salt,
      expected.length,
      scryptOptions(N, r, p),
    );
    return timingSafeEqual(actual, expected);
  } catch {
    return false;
  }
}

/** SHA-256 (hex) of a session token: the store keeps only this, never the token. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A new session token: 32 random bytes, base64url (43 characters, TOKEN_PATTERN). */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** A new user id: `u_` and 9 random bytes base64url (ID_PATTERN). */
export function newUserId(): UserId {
  return asUserId(`u_${randomBytes(9).toString('base64url')}`);
}

/** A new channel id: `c_` and 9 random bytes base64url (ID_PATTERN). */
export function newChannelId(): ChannelId {
  return asChannelId(`c_${randomBytes(9).toString('base64url')}`);
}
