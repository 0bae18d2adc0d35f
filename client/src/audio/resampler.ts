/**
 * Streaming windowed-sinc resampler for mono float audio, with a ratio that may change while it runs
 * (drift compensation nudges it by parts per million). A Kaiser-windowed sinc is tabulated at
 * `PHASES` sub-sample offsets and interpolated linearly between them (the classic polyphase scheme of
 * libsamplerate and Speex); the cut-off follows the lower of the two rates so downsampling does not
 * alias. Input waits in one preallocated linear buffer that is compacted in place: nothing is
 * allocated per call.
 *
 * Why not a library: libsamplerate-js (WebAssembly) loads asynchronously and returns new arrays per
 * call; wave-resampler converts whole buffers only. Neither steers the ratio of a running stream.
 */

const PHASES = 512;

export interface ResamplerOptions {
  readonly inRate: number;
  readonly outRate: number;
  /** Most input samples held (default one second of input). */
  readonly capacity?: number;
  /** Kernel length in input samples, even (default 32: about 80 dB stopband). */
  readonly taps?: number;
}

function besselI0(x: number): number {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < 1e-12 * sum) break;
  }
  return sum;
}

export class SincResampler {
  readonly inRate: number;
  readonly outRate: number;
  readonly taps: number;
  /** Input samples dropped because the buffer was full. */
  dropped = 0;
  private readonly half: number;
  private readonly table: Float32Array;
  private readonly buf: Float32Array;
  private end: number;
  private pos: number;
  private readonly baseStep: number;
  private step: number;
  private correction = 1;

  constructor(o: ResamplerOptions) {
    const { inRate, outRate, taps = 32 } = o;
    if (!(inRate > 0) || !(outRate > 0)) throw new TypeError('rates must be > 0');
    if (!Number.isInteger(taps) || taps < 4 || taps % 2 !== 0)
      throw new TypeError('taps must be an even integer >= 4');
    const capacity = o.capacity ?? Math.ceil(inRate);
    if (!Number.isInteger(capacity) || capacity < taps)
      throw new TypeError('capacity must be an integer >= taps');
    this.inRate = inRate;
    this.outRate = outRate;
    this.taps = taps;
    this.half = taps / 2;
    this.baseStep = inRate / outRate;
    this.step = this.baseStep;
    // Cut-off (relative to the input's Nyquist): below the lower Nyquist, leaving a transition band.
    const fc = Math.min(1, outRate / inRate) * 0.92;
    const beta = 8.6;
    const i0b = besselI0(beta);
    this.table = new Float32Array((PHASES + 1) * taps);
    for (let p = 0; p <= PHASES; p++) {
      const frac = p / PHASES;
      let sum = 0;
      for (let k = 0; k < taps; k++) {
        const x = frac + this.half - 1 - k; // distance from the output point to input sample k
        const r = x / this.half;
        const win = r * r >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - r * r)) / i0b;
        const arg = Math.PI * fc * x;
        const sinc = x === 0 ? 1 : Math.sin(arg) / arg;
        const h = fc * sinc * win;
        this.table[p * taps + k] = h;
        sum += h;
      }
      // Unity gain at DC for every phase: no ripple at the phase rate.
      for (let k = 0; k < taps; k++) this.table[p * taps + k]! /= sum;
    }
    this.buf = new Float32Array(capacity + taps);
    // Start with `half` samples of silence so the first output lines up with input sample 0.
    this.end = this.half;
    this.pos = this.half;
  }

  /** Output rate multiplier: 1.001 consumes input 0.1 % faster (for drift compensation). */
  setCorrection(c: number): void {
    if (!(c > 0.9 && c < 1.1)) throw new TypeError(`correction must be in (0.9, 1.1), got ${c}`);
    this.correction = c;
    this.step = this.baseStep * c;
  }

  get currentCorrection(): number {
    return this.correction;
  }

  /** Input samples held ahead of the read position (fractional). */
  get buffered(): number {
    return this.end - this.pos;
  }

  /** Output samples that read() can produce now. */
  get readable(): number {
    const last = this.end - this.half; // the output point must have `half` samples after it
    return last <= this.pos ? 0 : Math.ceil((last - this.pos) / this.step);
  }

  /** Appends `n` input samples; returns how many were accepted (the rest are dropped and counted). */
  write(input: Float32Array, n: number = input.length): number {
    if (this.end + n > this.buf.length) this.compact();
    const room = this.buf.length - this.end;
    const take = Math.min(n, room);
    if (take < n) this.dropped += n - take;
    this.buf.set(input.subarray(0, take), this.end);
    this.end += take;
    return take;
  }

  /** Produces up to `n` output samples into `out[offset..]`; returns how many. */
  read(out: Float32Array, n: number, offset = 0): number {
    const taps = this.taps;
    const table = this.table;
    const buf = this.buf;
    const limit = this.end - this.half;
    let produced = 0;
    let pos = this.pos;
    while (produced < n && pos < limit) {
      const i = Math.floor(pos);
      const fp = (pos - i) * PHASES;
      const p = Math.floor(fp);
      const w = fp - p;
      const r0 = p * taps;
      const r1 = r0 + taps;
      const base = i - this.half + 1;
      let a = 0;
      let b = 0;
      for (let k = 0; k < taps; k++) {
        const x = buf[base + k]!;
        a += x * table[r0 + k]!;
        b += x * table[r1 + k]!;
      }
      out[offset + produced++] = a + (b - a) * w;
      pos += this.step;
    }
    this.pos = pos;
    return produced;
  }

  /** Forgets all input (after a device switch); keeps the ratio. */
  reset(): void {
    this.buf.fill(0, 0, this.half);
    this.end = this.half;
    this.pos = this.half;
  }

  /** Moves the samples still needed to the front of the buffer. */
  private compact(): void {
    const keepFrom = Math.max(0, Math.floor(this.pos) - this.half + 1);
    if (keepFrom === 0) return;
    this.buf.copyWithin(0, keepFrom, this.end);
    this.end -= keepFrom;
    this.pos -= keepFrom;
  }
}
