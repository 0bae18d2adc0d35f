/** A voiced-like signal: 150 Hz with two harmonics (period 320 samples), loud throughout. */
export function voiced(length: number): Int16Array {
  const out = new Int16Array(length);
  for (let i = 0; i < length; i++) {
    const t = (2 * Math.PI * 150 * i) / 48_000;
    out[i] = Math.round(8000 * Math.sin(t) + 4000 * Math.sin(2 * t + 0.3) + 2000 * Math.sin(3 * t + 1.1));
  }
  return out;
}
