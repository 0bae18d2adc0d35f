import { MixGroups, mixToInt16 } from '@voice/media';
import { VoiceFlags } from '@voice/protocol';
import type { EncoderSlot, VoiceMember } from './member.js';
import type { ChannelStats } from './channel-stats.js';
import type { ChannelTimeline } from './channel-timeline.js';
import type { ChannelRoster } from './channel-roster.js';
import type { ListenerSender } from './listener-send.js';
import type { MixEncoders } from './mix-encoders.js';
import type { ForwardRuns } from './forward-runs.js';

/**
 * A channel's mix, once a tick: the speakers the tick decoded (`add`), mixed minus each listener
 * (MixGroups: one shared mix for listeners with default volumes), each distinct mix encoded once
 * and sent; a listener who hears exactly one speaker is left to its forwarding run instead.
 */
export class ChannelMix {
  readonly #mixer: MixGroups;
  readonly #ids: string[] = [];
  readonly #frames: Float32Array[] = [];
  readonly #speakers: VoiceMember[] = [];
  /** Speakers added this tick. */
  count = 0;
  /** This tick's mix went to some listener (not all forwarded, streamed or skipped). */
  sent = false;
  /** Distinct mix buffer -> its encoded packet, for this tick only. */
  readonly #encodedBy = new Map<Float32Array, EncoderSlot>();

  constructor(
    frameSamples: number,
    /** Most speakers mixed in one tick; more are not heard (a moderation problem). */
    readonly maxSpeakers: number,
    private readonly roster: ChannelRoster,
    private readonly timeline: ChannelTimeline,
    private readonly encoders: MixEncoders,
    private readonly sender: ListenerSender,
    private readonly runs: ForwardRuns,
    private readonly stats: ChannelStats,
  ) {
    this.#mixer = new MixGroups(frameSamples, maxSpeakers);
  }

  /** A listener's volumes (undefined: all at 100 %); the mixer groups listeners by them. */
  setListener(userId: string, gains: Map<string, number> | undefined): void {
    this.#mixer.setListener(userId, gains);
  }

  removeListener(userId: string): void {
    this.#mixer.removeListener(userId);
  }

  /** Starts a tick's list of speakers. */
  begin(): void {
    this.count = 0;
  }

  /** Adds `m`'s decoded frame (`m.frame`) to this tick's mix; false when the mix is full. */
  add(m: VoiceMember): boolean {
    const n = this.count;
    if (n >= this.maxSpeakers) return false;
    this.#ids[n] = m.userId;
    this.#frames[n] = m.frame;
    this.#speakers[n] = m;
    this.count = n + 1;
    return true;
  }

  /** Mixes this tick's speakers, encodes each distinct mix once and sends it to its listeners. */
  send(): void {
    const count = this.count;
    const tick = this.timeline.tick;
    this.#mixer.mix(this.#ids, this.#frames, count);
    this.#encodedBy.clear();
    let mixed = false;
    // Speakers not yet in a mix sent to someone this tick (the timing advance is only for those that are).
    let unmixed = count;
    for (let i = 0; i < this.roster.list.length; i++) {
      const m = this.roster.list[i]!;
      const cut = m.cutFrom !== null;
      const wasSolo = m.soloFrom ?? m.cutFrom;
      m.soloFrom = null;
      m.cutFrom = null;
      if (m.deaf || m.endpoint.transport === 'none') continue;
      if (m.streamMode) {
        // Took this tick's speakers as STREAM packets on arrival; its next mix starts a talkspurt.
        m.outStarted = false;
        continue;
      }
      // Hears one speaker at unity gain (forwarded, no decode-mix-encode), or nobody.
      if (this.runs.atTick(m, wasSolo, this.#speakers, count, cut)) continue;
      const buf = this.#mixer.output(m.userId);
      if (!buf) continue;
      let slot = this.#encodedBy.get(buf);
      if (!slot) {
        slot = this.encoders.get(this.#streamKey(m));
        this.stats.encoders = this.encoders.size;
        // An encoder that did not run last tick starts from a state the listener's decoder never saw:
        // that decoder holds the last frame of another stream (a forwarded speaker, another mix),
        // and the new encoder's first frame does not overlap-add with it (a broadband click up to
        // 33 dB over the codec's floor: cluster/bench/switch-clicks.ts). Encoding that frame
        // first, output discarded, gives the encoder the history the decoder has. One encode per
        // switch.
        if (slot.lastTick !== tick - 1) {
          const prime = this.#heardLastTick(m, wasSolo, slot);
          if (prime) {
            // A new encoder's first frame is coded as a start (no inter-frame prediction): spend it
            // on the priming too, so the frame the listener hears is coded as a continuation.
            if (slot.lastTick === -2) slot.encoder.encode(prime, slot.out);
            slot.encoder.encode(prime, slot.out);
            this.stats.encoderPrimes++;
          }
        }
        const t0 = performance.now();
        const last = slot.prevPcm;
        slot.prevPcm = slot.pcm;
        slot.prevTick = slot.lastTick;
        slot.pcm = last;
        // Exact while the sum fits; the soft limiter only for a frame that would clip.
        mixToInt16(buf, slot.pcm);
        slot.len = slot.encoder.encode(slot.pcm, slot.out);
        this.stats.encodeUs.record((performance.now() - t0) * 1000);
        this.stats.encodes++;
        slot.lastTick = tick;
        this.#encodedBy.set(buf, slot);
      }
      // Leaving a forwarding run: the lone speaker's packet for this frame arrived before the tick
      // found a second speaker and went out then. The listener has this timestamp (the mix would
      // be dropped as a duplicate); it gets the mix from the next frame on.
      if (m.outStarted && m.sentOut.has(this.timeline.mediaFrame | 0)) {
        this.stats.mixRepeatsSkipped++;
        continue;
      }
      this.sender.sendTo(
        m,
        slot.out,
        slot.len,
        m.outStarted ? 0 : VoiceFlags.MARKER,
        this.timeline.mediaFrame,
      );
      m.outStarted = true;
      if (unmixed > 0) unmixed = this.#markMixed(m, count, unmixed);
      mixed = true;
      m.heardSlot = slot;
      m.heardTick = tick;
    }
    this.sent = mixed;
    this.#recordHolds(count, mixed);
    this.runs.settle();
  }

  /**
   * Marks the speakers whose frames are in the mix listener `m` was just sent (every one it hears
   * but itself); returns how many of the tick's `count` speakers are still unmarked (`unmixed`).
   */
  #markMixed(m: VoiceMember, count: number, unmixed: number): number {
    for (let s = 0; s < count && unmixed > 0; s++) {
      const sp = this.#speakers[s]!;
      if (
        sp.mixedTick === this.timeline.tick ||
        sp.userId === m.userId ||
        (m.gains?.get(sp.userId) ?? 1) === 0
      )
        continue;
      sp.mixedTick = this.timeline.tick;
      unmixed--;
    }
    return unmixed;
  }

  /**
   * Server-added delay of this tick's frames: a frame that went out in a mix (or forwarded at the
   * tick) waited for the tick; one forwarded on arrival to every listener who got it was not held
   * (forwardOnArrival records that). With two speakers and a listener, each speaker's frame is
   * forwarded to the other on arrival and mixed for the listener: the mix's wait is the delay.
   */
  #recordHolds(count: number, mixed: boolean): void {
    for (let s = 0; s < count; s++) {
      const sp = this.#speakers[s]!;
      // The timing advance moves a speaker's frames to the tick: only one some listener got in a
      // mix waits for it (not one every listener is forwarded as it arrives, or streams).
      if (sp.rawLen > 0 && sp.mixedTick === this.timeline.tick) sp.recordPhase(sp.tickArrivalHold);
      if (sp.rawLen === 0 || (sp.rawForwarded && !mixed)) continue;
      this.stats.holdMs.record(sp.tickHold);
      sp.tickHoldMs.record(sp.tickHold);
      sp.tickPhaseMs.record(sp.tickPhase);
    }
  }

  /**
   * The frame listener `m` was sent last tick, when it came from another stream than `slot`: the
   * forwarded speaker's decoded frame, or the other mix encoder's input. Null when it heard nothing
   * last tick (its decoder restarts at a talkspurt anyway).
   */
  #heardLastTick(m: VoiceMember, wasSolo: VoiceMember | null, slot: EncoderSlot): Int16Array | null {
    const prev = this.timeline.tick - 1;
    if (wasSolo) return wasSolo.prevPcmTick === prev ? wasSolo.prevPcm : null;
    const heard = m.heardSlot;
    if (!heard || heard === slot || m.heardTick !== prev) return null;
    if (heard.lastTick === prev) return heard.pcm; // not encoded yet this tick
    return heard.lastTick === this.timeline.tick && heard.prevTick === prev ? heard.prevPcm : null;
  }

  /** Which encoder stream a listener's mix belongs to: stable while its role does not change. */
  #streamKey(m: VoiceMember): string {
    if (m.spokeTick === this.timeline.tick) return m.gains ? m.ownKey : m.minusKey;
    // Its other binding spoke (a handover): the mixer gave it that one's mix-minus.
    if (this.roster.twinOf(m)?.spokeTick === this.timeline.tick) return m.gains ? m.ownKey : m.minusKey;
    const key = this.#mixer.groupKey(m.userId) ?? '';
    return key === '' ? 'all' : `group:${key}`;
  }
}
