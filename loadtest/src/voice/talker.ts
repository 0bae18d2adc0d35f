import type { AudioSource } from '@voice/client';
import type { FrameBank } from './frame-bank.js';

export interface TalkerOptions {
  readonly bank: FrameBank;
  /** This user's seat in its channel, 0-based. */
  readonly seat: number;
  /** Seats in the channel (10) and how many talk at once (2): seats talk in turns of `speakers`. */
  readonly seats: number;
  readonly speakers: number;
  /** How long a turn lasts, ms. */
  readonly turnMs: number;
  /** A click every this many ms, on multiples of the period on the shared monotonic clock. */
  readonly clickPeriodMs: number;
  /** performance.now() to the shared monotonic clock (see clock.ts). */
  readonly toMono: (perfMs: number) => number;
}

/** Which pre-encoded frame the paired encoder sends next. */
export interface FrameCue {
  /** The Opus packet to send. */
  frame: Uint8Array;
  /** -1: background; k >= 0: the click frame with the click k ms in (for tests and figures). */
  variant: number;
}

/**
 * The audio a load-test user "captures": nothing while it is not its turn (a client with voice
 * activity detection sends nothing), else the bank's tone, with a click placed on each multiple of
 * `clickPeriodMs` when this seat is the first of its group of talkers. One click per instant in a
 * channel: two talkers clicking at once reach the listeners' mix up to a frame apart (each frame
 * waits for the tick at its own phase), and the listener's meter counted two clicks, the later one
 * with a delay that was not any click's. Turns follow the shared clock, so users in different threads agree on who talks
 * without talking to each other. It writes no samples: the paired encoder (PreEncodedOpus) sends the
 * bank's frame named by `cue`.
 *
 * A frame read at time t holds what a microphone captured during [t - frame, t): a click k ms into
 * the frame was captured at t - frame + k, which is the instant the receiving user measures from.
 */
export class Talker implements AudioSource {
  readonly name = 'load-test talker';
  lastCaptureTime = 0;
  readonly cue: FrameCue;
  private loopIndex = 0;
  /** The tail frame owed after a click frame (see FrameBank.tails), or null. */
  private tail: Uint8Array | null = null;
  /** The shared-clock instant of the last click sent (NaN before the first). */
  private lastClick = Number.NaN;
  /** Clicks sent and frames sent, for the user's own figures. */
  clicksSent = 0;
  framesSent = 0;
  private readonly turns: number;
  private readonly myTurn: number;
  private readonly clicker: boolean;

  constructor(private readonly o: TalkerOptions) {
    if (!Number.isInteger(o.seats) || o.seats < 1) throw new TypeError('seats must be an integer >= 1');
    if (!Number.isInteger(o.speakers) || o.speakers < 1 || o.speakers > o.seats)
      throw new TypeError('speakers must be an integer in 1..seats');
    if (!Number.isInteger(o.seat) || o.seat < 0 || o.seat >= o.seats)
      throw new TypeError('seat must be an integer in 0..seats-1');
    if (!(o.turnMs >= o.bank.frameMs)) throw new TypeError('turnMs must be at least one frame');
    if (!(o.clickPeriodMs >= 2 * o.bank.frameMs)) throw new TypeError('clickPeriodMs must be >= 2 frames');
    this.turns = Math.ceil(o.seats / o.speakers);
    this.myTurn = Math.floor(o.seat / o.speakers);
    this.clicker = o.seat % o.speakers === 0;
    this.cue = { frame: o.bank.loop[0]!, variant: -1 };
  }

  /** True when this seat talks at shared-clock time `mono`. */
  talksAt(mono: number): boolean {
    return Math.floor(mono / this.o.turnMs) % this.turns === this.myTurn;
  }

  read(_out: Int16Array, now: number): boolean {
    this.lastCaptureTime = now;
    const end = this.o.toMono(now);
    if (!this.talksAt(end)) {
      this.tail = null;
      return false;
    }
    const bank = this.o.bank;
    const f = bank.frameMs;
    const start = end - f;
    const p = this.o.clickPeriodMs;
    const click = Math.ceil(start / p) * p;
    const cue = this.cue;
    this.loopIndex = (this.loopIndex + 1) % bank.loop.length;
    // A sender that catches up after a stall reads frames less than a frame apart, whose windows
    // overlap: the same click instant must not go out in two frames (a listener heard it twice).
    if (click < end && this.clicker && click !== this.lastClick) {
      this.lastClick = click;
      const k = Math.min(f - 1, Math.max(0, Math.round(click - start)));
      cue.variant = k;
      cue.frame = bank.clicks[k]!;
      this.tail = bank.tails[k]!;
      this.clicksSent++;
    } else {
      cue.variant = -1;
      cue.frame = this.tail ?? bank.loop[this.loopIndex]!;
      this.tail = null;
    }
    this.framesSent++;
    return true;
  }
}
