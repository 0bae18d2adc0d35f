/**
 * A channel's outgoing media clock, shared by its tick (mixes) and its forwarding on arrival: every
 * packet the channel sends plays at one of its frames, so a listener moving between a mix and a
 * forwarded speaker keeps one timeline.
 */
export class ChannelTimeline {
  /** Ticks run (a stalled, made-up tick counts once per frame it plays). */
  tick = 0;
  /** Outgoing media clock, in frames: advances with time, not with ticks run. */
  mediaFrame = 0;
  /** When the latest tick was due (performance clock, ms): the media clock between ticks. */
  dueAt = 0;

  constructor(readonly frameMs: number) {}

  /**
   * The media frame at time `t` (performance clock): the latest tick's, plus the whole frame periods
   * since that tick was due. After a stall the tick runs late, but the packets that arrive before it
   * are due by the clock, not ahead of it.
   */
  clockAt(t: number): number {
    if (this.tick === 0) return this.mediaFrame;
    const since = (t - this.dueAt) / this.frameMs;
    return since >= 1 ? (this.mediaFrame + Math.floor(since)) | 0 : this.mediaFrame;
  }
}
