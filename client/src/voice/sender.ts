import { MAX_PAYLOAD_BYTES, VoiceFlags, writeRedBlock } from '@voice/protocol';
import { OPUS_MAX_PACKET_BYTES, Ticker, type OpusEncoder, type Tick } from '@voice/media';
import type { SentLog } from './recording.js';
import { isClockedSource, type AudioSource } from './sources.js';

/** Seals and sends one AUDIO packet; returns its sequence number, or -1 when it was dropped. */
export type SendAudio = (flags: number, timestamp: number, payload: Uint8Array, length: number) => number;

/**
 * Redundant audio (RED, protocol README 9.1): each packet also carries the previous frame's Opus
 * bytes, so a single lost packet is rebuilt exactly. 'auto': while the upstream loss the
 * HEARTBEAT_ACKs report is over RED_LOSS_THRESHOLD, and RED_HOLD_MS after; 'on': always; 'off':
 * never. Only where the server granted it (Welcome.red); else 'off'.
 */
export type Redundancy = 'auto' | 'on' | 'off';
/** Upstream loss (fraction, between two ACKs) above which 'auto' adds redundancy. */
export const RED_LOSS_THRESHOLD = 0.01;
/** How long 'auto' keeps redundancy after the last ACK that reported loss over the threshold, ms. */
export const RED_HOLD_MS = 15_000;

export interface SenderOptions {
  readonly frameMs: 10 | 20;
  readonly encoder: OpusEncoder;
  readonly source: AudioSource;
  readonly send: SendAudio;
  /** Unwrapped timestamp (48 kHz samples) of the first frame; the sender advances it per tick. */
  readonly firstTimestamp: number;
  /** True while sending is suppressed (self-mute): frames are read and discarded. */
  readonly muted: () => boolean;
  readonly sentLog: SentLog | null;
  readonly onError?: (err: unknown) => void;
  /** Redundancy (default 'off': only a server that granted RED may receive it). */
  readonly redundancy?: Redundancy;
}

export interface SenderStats {
  /** Frames read from the source. */
  frames: number;
  /** AUDIO packets handed to the transport. */
  packets: number;
  /** Of them, packets that carried the previous frame too (RED). */
  redSent: number;
  /** Talkspurts started (packets sent with MARKER). */
  talkspurts: number;
  /** Frames the source had nothing for (pauses). */
  pauses: number;
  /** Frames read while muted. */
  mutedFrames: number;
  /** Frames dropped: encode failure, payload over 1000 bytes, or the transport refused. */
  dropped: number;
  /** Ticks the clock skipped because the event loop was late (a gap in timestamps). */
  skippedTicks: number;
  /** Timing advances applied (`voice.advance`), and their sum, ms (positive: later). */
  advances: number;
  advancedMs: number;
  /** Timing advances not applied: a clocked source that cannot move its cut (no `shift`). */
  advancesIgnored: number;
}

/**
 * Paces a source at real time with a drift-free Ticker: each tick reads one frame, encodes it with
 * Opus and sends it as an AUDIO packet. The header timestamp advances by one frame per tick whether
 * or not a packet is sent, so a pause is a gap in time; the first packet after a pause carries MARKER.
 *
 * A clocked source (a sound card, `ClockedSource`) drives the sender instead: no timer runs, and each
 * frame is encoded and sent the moment the device delivers it, so the device's clock is the stream's.
 */
export class Sender {
  readonly frameSamples: number;
  private readonly ticker: Ticker;
  private readonly pcm: Int16Array;
  private readonly opus = new Uint8Array(OPUS_MAX_PACKET_BYTES);
  /** The last frame sent (its Opus bytes and timestamp), repeated in the next packet with RED. */
  private readonly prev = new Uint8Array(OPUS_MAX_PACKET_BYTES);
  private prevLen = 0;
  private prevTs = 0;
  /** A RED packet: length, the previous frame, this frame. */
  private readonly redBuf = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** 'auto': redundancy until this time (performance.now() ms). */
  private redUntil = Number.NEGATIVE_INFINITY;
  private ts: number;
  private sourcePos = 0;
  private talking = false;
  private closed = false;
  private readonly s: SenderStats = {
    frames: 0,
    packets: 0,
    redSent: 0,
    talkspurts: 0,
    pauses: 0,
    mutedFrames: 0,
    dropped: 0,
    skippedTicks: 0,
    advances: 0,
    advancedMs: 0,
    advancesIgnored: 0,
  };

  constructor(private readonly o: SenderOptions) {
    this.frameSamples = o.frameMs * 48;
    if (o.encoder.frameSamples !== this.frameSamples) {
      throw new TypeError(`encoder frame ${o.encoder.frameSamples} does not match ${this.frameSamples}`);
    }
    this.pcm = new Int16Array(this.frameSamples);
    this.ts = o.firstTimestamp;
    this.ticker = new Ticker({
      periodMs: o.frameMs,
      maxLatePeriods: 10,
      onTick: (t) => this.tick(t),
      onError: (err) => o.onError?.(err),
    });
  }

  get source(): AudioSource {
    return this.o.source;
  }

  /** Unwrapped timestamp of the next frame. */
  get nextTimestamp(): number {
    return this.ts;
  }

  /** The last frame read from the source (reused buffer), or null before the first. */
  get lastFrame(): Int16Array | null {
    return this.s.frames > 0 ? this.pcm : null;
  }

  /**
   * The upstream loss between the last two HEARTBEAT_ACKs (protocol README 8.3), at `nowMs`: with
   * 'auto', over RED_LOSS_THRESHOLD turns redundancy on until RED_HOLD_MS after the last such report.
   */
  noteUpstreamLoss(fraction: number, nowMs: number): void {
    if (fraction > RED_LOSS_THRESHOLD) this.redUntil = nowMs + RED_HOLD_MS;
  }

  /** Whether the next packets carry the previous frame (RED). */
  redundant(nowMs: number): boolean {
    const mode = this.o.redundancy ?? 'off';
    return mode === 'on' || (mode === 'auto' && nowMs < this.redUntil);
  }

  start(): void {
    if (this.closed) return;
    const src = this.o.source;
    if (isClockedSource(src)) {
      src.attach(this.frameSamples, (pcm, captureTime, active) => this.deliver(pcm, captureTime, active));
    } else this.ticker.start();
  }

  /**
   * A timing advance: every later frame is cut and sent `ms` later (negative: earlier), taken
   * modulo one frame. Timestamps do not move (they count samples; this moves send time only), so
   * the receiver sees no gap. A timer-driven source reads the same audio whenever it is asked, so
   * the shift costs nothing. A clocked source (a device) moves the instant it cuts its frames in its
   * stream (`ClockedAudioSource.shift`): the same phase with the least hold, so an earlier send may
   * come out as a later one by the rest of a frame. One that cannot is counted in `advancesIgnored`.
   * Returns whether it was applied.
   */
  advance(ms: number): boolean {
    if (!Number.isFinite(ms)) throw new TypeError('advance must be a finite number of ms');
    if (this.closed) return false;
    const src = this.o.source;
    if (isClockedSource(src)) {
      if (!src.shift) {
        this.s.advancesIgnored++;
        return false;
      }
      const moved = src.shift(ms * 48);
      this.s.advances++;
      this.s.advancedMs += moved / 48;
      return true;
    }
    const shift = ms % this.o.frameMs;
    if (shift === 0) return true;
    this.ticker.shift(shift);
    this.s.advances++;
    this.s.advancedMs += shift;
    return true;
  }

  private tick(t: Tick): void {
    if (t.skipped > 0) {
      // The loop stalled: time went on without frames. Leave a gap in timestamps, as a sender would.
      this.s.skippedTicks += t.skipped;
      this.ts += t.skipped * this.frameSamples;
    }
    this.send(this.o.source.read(this.pcm, performance.now()));
  }

  /** A clocked source's frame (exactly frameSamples long, valid during the call). */
  private deliver(pcm: Int16Array, _captureTime: number, active: boolean): void {
    if (this.closed) return;
    try {
      this.pcm.set(pcm);
      this.send(active);
    } catch (err) {
      // Called from the device's callback or the source's hold timer: report, do not throw there.
      this.s.dropped++;
      this.o.onError?.(err);
    }
  }

  /** Encodes and sends the frame in `this.pcm` (when `active`); advances the timeline either way. */
  private send(active: boolean): void {
    const ts = this.ts;
    this.ts += this.frameSamples;
    const src = this.o.source;
    const pos = this.sourcePos;
    this.sourcePos += this.frameSamples;
    this.s.frames++;
    if (!active) {
      this.s.pauses++;
      this.talking = false;
      this.prevLen = 0;
      return;
    }
    if (this.o.muted()) {
      this.s.mutedFrames++;
      this.talking = false;
      this.prevLen = 0;
      return;
    }
    let len: number;
    try {
      len = this.o.encoder.encode(this.pcm, this.opus);
    } catch (err) {
      this.s.dropped++;
      this.prevLen = 0;
      this.o.onError?.(err);
      return;
    }
    if (len > MAX_PAYLOAD_BYTES) {
      this.s.dropped++;
      this.prevLen = 0;
      return;
    }
    const marker = !this.talking;
    let flags = marker ? VoiceFlags.MARKER : 0;
    let payload = this.opus;
    let plen = len;
    // The frame just before this one, when it was encoded (not after a pause, a talkspurt start or a
    // timestamp gap) and both fit the payload limit; else this frame alone.
    if (
      !marker &&
      this.prevLen > 0 &&
      this.prevTs === ts - this.frameSamples &&
      this.redundant(performance.now())
    ) {
      const n = writeRedBlock(this.redBuf, 0, this.prev, 0, this.prevLen, this.opus, 0, len);
      if (n > 0) {
        payload = this.redBuf;
        plen = n;
        flags |= VoiceFlags.RED;
      }
    }
    // Kept whether or not the send succeeds: the next packet then carries what the transport refused.
    for (let i = 0; i < len; i++) this.prev[i] = this.opus[i]!;
    this.prevLen = len;
    this.prevTs = ts;
    const seq = this.o.send(flags, ts, payload, plen);
    if (seq < 0) {
      this.s.dropped++;
      return;
    }
    this.talking = true;
    this.s.packets++;
    if ((flags & VoiceFlags.RED) !== 0) this.s.redSent++;
    if (marker) this.s.talkspurts++;
    this.o.sentLog?.add(src.lastCaptureTime, performance.now(), pos, ts % 0x1_0000_0000, seq, marker);
  }

  stats(): SenderStats {
    return { ...this.s };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ticker.close();
    const src = this.o.source;
    if (isClockedSource(src)) src.detach();
  }
}
