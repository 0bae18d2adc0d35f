/**
 * A set of a speaker's recent frame indices (uint32, wrapping): the newest and a bitmask of the 32
 * before it. Frames older than that count as members (too old to act on either way). Nothing is
 * allocated. Used for the frames a forwarding run sent, and the frames whose packets arrived.
 */
export class FrameWindow {
  /** False until the first `add` (and after `clear`): then nothing is a member. */
  active = false;
  /** The newest frame added. */
  top = 0;
  private mask = 0;

  has(k: number): boolean {
    if (!this.active) return false;
    const d = (this.top - k) | 0;
    if (d < 0) return false;
    if (d === 0 || d > 32) return true;
    return ((this.mask >>> (d - 1)) & 1) === 1;
  }

  add(k: number): void {
    if (!this.active) {
      this.active = true;
      this.top = k;
      this.mask = 0;
      return;
    }
    const d = (k - this.top) | 0;
    if (d > 0) {
      // (A shift by 32 is a shift by 0 in JS: the old newest alone stays, as bit 31.)
      this.mask = d > 32 ? 0 : d === 32 ? 0x8000_0000 : ((this.mask << d) | (1 << (d - 1))) >>> 0;
      this.top = k;
    } else if (d < 0 && d >= -32) this.mask = (this.mask | (1 << (-d - 1))) >>> 0;
  }

  clear(): void {
    this.active = false;
  }
}
