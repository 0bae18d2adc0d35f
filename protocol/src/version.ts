/**
 * Signaling protocol versions this build speaks. A client sends the versions it supports in
 * `hello`; the server answers with the highest one both know, or `UNSUPPORTED_VERSION`.
 * Bump PROTOCOL_VERSION on any incompatible change to a message or to the voice packet.
 */
export const PROTOCOL_VERSION = 1;
export const SUPPORTED_VERSIONS: readonly number[] = [1];

/** Picks the highest version both sides support, or null. */
export function negotiateVersion(offered: readonly number[]): number | null {
  let best: number | null = null;
  for (const v of offered) if (SUPPORTED_VERSIONS.includes(v) && (best === null || v > best)) best = v;
  return best;
}
