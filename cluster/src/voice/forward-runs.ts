import { MAX_PAYLOAD_BYTES, VoiceFlags, createRedBlock, readRedBlock } from '@voice/protocol';
import type { VoiceCounters } from './counters.js';
import type { VoiceMember } from './member.js';
import type { ChannelStats } from './channel-stats.js';
import type { ChannelTimeline } from './channel-timeline.js';
import type { ChannelRoster } from './channel-roster.js';
import type { ListenerSender } from './listener-send.js';

/**
 * How far ahead of the channel media clock a packet may be forwarded on arrival, in frames. A real
 * speaker's next frame goes out as the next tick's (1); one more absorbs an early arrival. A packet
 * further ahead is not due: it waits in the speaker's jitter buffer and the tick forwards it when it
 * plays, so a sender faster than real time (a flood) reaches a listener at one frame per period.
 */
const FORWARD_AHEAD_FRAMES = 2;
/** A run that broke off this recently resumes its offset when its speaker catches up (ms). */
const RESUME_RUN_MS = 500;

/**
 * Forwarding runs: a listener who hears exactly one speaker at unity gain gets that speaker's own
 * packets, re-sealed, not a mix re-encoded (no decode, no encode, no tick wait), each as it
 * arrives. A run maps the speaker's frames onto the channel's media clock with one offset
 * (`fwdOffset`), fixed when the run starts, so its listeners' timeline never steps. The tick
 * confirms or ends runs (`atTick`, `settle`); packets are forwarded on arrival (`onArrival`).
 */
export class ForwardRuns {
  /** Members heard at the last tick (0: a silent channel). */
  lastSpeakers = 0;
  /** How long after a run ends a new one may resume its offset (`#resumes`), frames. */
  readonly #resumeFrames: number;
  /** A RED block being split (README 9.1), and the redundant frame copied out to send on its own. */
  readonly #red = createRedBlock();
  readonly #redCopy = new Uint8Array(MAX_PAYLOAD_BYTES);
  /** The primary frame of a RED packet, for listeners without RED. */
  readonly #primary = new Uint8Array(MAX_PAYLOAD_BYTES);

  constructor(
    private readonly roster: ChannelRoster,
    private readonly timeline: ChannelTimeline,
    private readonly sender: ListenerSender,
    private readonly stats: ChannelStats,
    private readonly counters: VoiceCounters,
  ) {
    this.#resumeFrames = Math.round(RESUME_RUN_MS / timeline.frameMs);
  }

  /**
   * Speaker `m`'s accepted packet for its frame `k`, as it arrives: sent at once to the listeners
   * of its run (starting one if it has none), so the server adds no tick wait and no jitter-buffer
   * timing to a forwarded stream (every packet in is a packet out).
   */
  onArrival(
    m: VoiceMember,
    k: number,
    payload: Uint8Array,
    length: number,
    arrival: number,
    flags: number,
  ): void {
    const clock = this.timeline.clockAt(arrival);
    if (m.heard && m.spokeTick !== this.timeline.tick) this.#cutRuns(m, k, arrival, clock);
    if (!m.fwdActive && !this.#takeOverRun(m, k) && !this.#startSoloRun(m, k, clock)) return;
    if (m.soloListeners === 0 || m.wasForwarded(k)) return;
    // Not due yet (the sender runs ahead of real time): the tick forwards it when it plays.
    if (((k + m.fwdOffset - clock) | 0) > FORWARD_AHEAD_FRAMES) {
      this.stats.forwardDeferred++;
      return;
    }
    m.markForwarded(k);
    // RED (README 9.1): a listener that reads it gets the block as received; any other the primary,
    // preceded by the copy of the frame before when that frame never reached the server.
    const before = (k - 1) >>> 0;
    const red =
      (flags & VoiceFlags.RED) !== 0 && readRedBlock(payload, 0, length, this.#red) ? this.#red : null;
    const gap = red !== null && !m.wasReceived(before);
    if (red) {
      for (let b = 0; b < red.primaryLength; b++) this.#primary[b] = payload[red.primaryOffset + b]!;
      if (gap) {
        for (let b = 0; b < red.redLength; b++) this.#redCopy[b] = payload[red.redOffset + b]!;
        m.markForwarded(before); // the tick must not send it again when the buffer plays the copy
      }
    }
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (l.soloFrom !== m || l.streamMode || l.deaf || l.endpoint.transport === 'none') continue;
      if (!red) this.sender.forward(l, m, payload, length, k);
      else if (l.red) this.sender.forward(l, m, payload, length, k, VoiceFlags.RED);
      else {
        if (gap) {
          this.sender.forward(l, m, this.#redCopy, red.redLength, before);
          this.counters.redCopiesSent++;
        }
        this.sender.forward(l, m, this.#primary, red.primaryLength, k);
      }
    }
    // Held 0: sent in the handler of its arrival (the microseconds since fall in the histogram's
    // first bucket, and reading the clock would box a double).
    this.stats.holdMs.record(0);
  }

  /**
   * At a tick that mixes, for listener `m` (its run of last tick `wasSolo`, already cleared): when
   * it hears exactly one of the tick's `count` speakers at unity gain, or nobody, its frame is
   * settled here (forwarded, or nothing to send) and this returns true; false: it needs a mix.
   */
  atTick(
    m: VoiceMember,
    wasSolo: VoiceMember | null,
    speakers: readonly VoiceMember[],
    count: number,
    /** `m` left `wasSolo`'s run before this tick (#cutRuns): its packets since did not reach `m`. */
    cut = false,
  ): boolean {
    const solo = soloSource(m, speakers, count);
    if (solo === NOBODY) return true; // hears no one this tick (e.g. the lone speaker): send nothing
    if (solo === null || this.#lagsBehind(m, solo, wasSolo)) return false;
    // From now on each of its packets as it arrives (onArrival). When that speaker's frame was lost,
    // send nothing: the listener's decoder rebuilds it from FEC or conceals it in the speaker's own
    // stream, which a server-encoded frame in between would break.
    m.soloFrom = solo;
    if (solo.rawLen === 0) {
      if (!solo.rawHeld) this.stats.soloGaps++;
      return true;
    }
    const mediaFrame = this.timeline.mediaFrame;
    if (!solo.fwdActive) {
      // A new run, its offset fixed by the first of its listeners this tick: from the channel clock,
      // or right after that listener's newest frame when its stream is ahead of the clock (it was
      // forwarded a run that led the tick, then its mixes were skipped): no timestamp twice.
      if (solo.fwdOffsetTick !== this.timeline.tick) {
        solo.fwdOffsetTick = this.timeline.tick;
        const top = m.sentOut.top;
        const ahead = m.outStarted && m.sentOut.active && ((top - mediaFrame) | 0) >= 0;
        solo.fwdOffset = (ahead ? top + 1 : mediaFrame) - solo.rawSeq;
      }
    } else if (((solo.rawSeq + solo.fwdOffset - mediaFrame) | 0) > FORWARD_AHEAD_FRAMES)
      // Its stream skipped ahead (its buffer dropped frames of a sender faster than real time):
      // go on right after the newest frame sent, not ahead of the channel clock.
      solo.fwdOffset = solo.fwdTop + solo.fwdOffset + 1 - solo.rawSeq;
    // Sent already when it arrived, to a listener that was forwarded this speaker then (not to one
    // that left the run before it came: #cutRuns).
    if (wasSolo === solo && solo.rawForwarded && !cut) return true;
    this.sender.forward(m, solo, solo.raw, solo.rawLen, solo.rawSeq);
    return true;
  }

  /** After a mixing tick's sends: who is forwarded to whom from now until the next tick. */
  settle(): void {
    const members = this.roster.list;
    const tick = this.timeline.tick;
    for (let i = 0; i < members.length; i++) members[i]!.soloListeners = 0;
    for (let i = 0; i < members.length; i++) {
      const from = members[i]!.soloFrom;
      if (from) from.soloListeners++;
    }
    for (let i = 0; i < members.length; i++) {
      const sp = members[i]!;
      if (sp.soloListeners === 0) {
        if (sp.fwdActive) sp.endForwarding();
      } else if (sp.rawLen > 0 && sp.spokeTick === tick) sp.markForwarded(sp.rawSeq);
    }
  }

  /**
   * A listener that streams takes its speakers as STREAM packets only: any run it was part of
   * (started before it was routed, or before it streamed) ends for it now. `atTick` resets these
   * when a tick mixes; a tick that mixes nothing (everyone streams) does not reach it.
   */
  dropStreamingSolos(): void {
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      const sp = l.soloFrom;
      if (!l.streamMode || sp === null) continue;
      l.soloFrom = null;
      if (--sp.soloListeners <= 0) sp.endForwarding();
    }
  }

  /**
   * A tick that mixed nothing (no speaker's buffer played): listeners cut from a run for a mix
   * (#cutRuns) that did not come go back to that run, so its next packets reach them.
   */
  restoreCuts(): void {
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      const from = l.cutFrom;
      if (from === null) continue;
      l.cutFrom = null;
      if (!from.fwdActive || l.soloFrom !== null) continue;
      l.soloFrom = from;
      from.soloListeners++;
      this.stats.cutsRestored++;
    }
  }

  /** Every run ends (the channel fell silent, or is closing). */
  endAll(): void {
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const m = members[i]!;
      m.outStarted = false;
      m.soloFrom = null;
      m.cutFrom = null;
      m.endForwarding();
    }
  }

  /** `m` left: no listener is forwarded it any more, and its own run ends. */
  remove(m: VoiceMember): void {
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (l.soloFrom === m) l.soloFrom = null;
      if (l.cutFrom === m) l.cutFrom = null;
    }
    m.soloFrom = null;
    m.cutFrom = null;
    m.endForwarding();
  }

  /**
   * The first packet of a session's new binding (a handover, protocol README 8.4) while its old one
   * is forwarded: the new member continues that run, its first frame going out right after the
   * last one the listeners got (no gap, no jump), instead of waiting for its own jitter buffer to
   * start at a tick while the old one's runs dry.
   */
  #takeOverRun(m: VoiceMember, k: number): boolean {
    const old = this.roster.twinOf(m);
    if (!old?.endpoint.retiring || !old.fwdActive) return false;
    m.fwdOffset = old.fwdTop + old.fwdOffset + 1 - k;
    m.soloListeners = old.soloListeners;
    m.markForwarded((k - 1) >>> 0); // opens the run; frame k itself is sent by the caller
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (l.soloFrom === old) l.soloFrom = m;
    }
    old.endForwarding();
    return true;
  }

  /**
   * The first packet of a talkspurt makes its speaker the lone one at once for every listener at
   * unity gain who hears nobody else (in a silent channel, all of them; while one member talks, that
   * member): they get it now rather than after the next tick, their stream arrives evenly from the
   * first packet on, and no frame waits in the speaker's jitter buffer first (a run that started
   * at a tick would carry that backlog for good). The tick confirms or changes this a frame later.
   */
  #startSoloRun(m: VoiceMember, k: number, clock: number): boolean {
    if (!m.heard) return false;
    const members = this.roster.list;
    const tick = this.timeline.tick;
    // During a handover (two bindings of one person) only in a silent channel, as ever.
    if (this.roster.twins > 0) {
      if (this.lastSpeakers !== 0) return false;
      for (let i = 0; i < members.length; i++) if (members[i]!.fwdActive) return false;
    }
    // The others who spoke at the last tick: a listener who heard one of them is not m's alone.
    let spoke = 0;
    for (let i = 0; i < members.length; i++) {
      const x = members[i]!;
      if (x !== m && tick > 0 && x.spokeTick === tick) spoke++;
    }
    let n = 0;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (
        l.userId === m.userId ||
        l.streamMode ||
        l.deaf ||
        l.endpoint.transport === 'none' ||
        (l.gains?.get(m.userId) ?? 1) !== 1 ||
        l.soloFrom !== null ||
        l.cutFrom !== null ||
        spoke - (tick > 0 && l.spokeTick === tick ? 1 : 0) > 0
      )
        continue;
      l.soloFrom = m;
      n++;
    }
    if (n === 0) return false;
    m.soloListeners = n;
    m.fwdOffset = this.#resumes(m, k, clock) ? m.resumeOffset : clock + 1 - k;
    m.markForwarded((k - 1) >>> 0); // opens the run; frame k itself is sent by the caller
    return true;
  }

  /**
   * New speaker `m`'s packet, before the tick that may mix it: a listener forwarded another speaker
   * who has not been sent that speaker's frame for the tick yet leaves the run now, so the tick's
   * mix of both reaches it at that frame. Otherwise the run's packet would go out first, the mix of
   * that frame would be skipped (the listener has it), and the listener would miss `m`'s first
   * frame. A listener already sent the tick's frame stays (it gets the mix from the next frame).
   * Only when `m`'s buffer will play at that tick: a talkspurt's first packet into a buffer that
   * waits for more (a grown target) would leave the listener with neither the run nor a mix for
   * as long as it waits (6 frames under load, when the listener got nothing in between).
   */
  #cutRuns(m: VoiceMember, k: number, arrival: number, clock: number): void {
    const due = (clock + 1) | 0;
    const tl = this.timeline;
    if (tl.tick === 0) return;
    const playAt = tl.dueAt + ((due - tl.mediaFrame) | 0) * tl.frameMs;
    if (!m.jitter.wouldPlay(k, arrival, playAt)) return;
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      const from = l.soloFrom;
      // Not for the run's own speaker on a new binding (a handover: #takeOverRun carries the run on).
      if (
        from === null ||
        from.userId === m.userId ||
        l.userId === m.userId ||
        (l.gains?.get(m.userId) ?? 1) === 0
      )
        continue;
      if (l.sentOut.active && ((l.sentOut.top - due) | 0) >= 0) continue;
      l.soloFrom = null;
      l.cutFrom = from;
      from.soloListeners--;
    }
  }

  /**
   * Whether `m`'s new run (its listeners chosen) goes on with the offset of its run that ended
   * shortly before: its packets stopped for a while (a stall: its buffer ran dry and the run broke
   * off) and now come as the sender catches up, a burst. Anchored on the burst's first packet, the
   * rest of it would be "ahead" of the channel clock and every later packet would wait in the
   * speaker's buffer for good; on the old timeline the burst is due, and goes out as it arrives.
   * Only when that timeline does not run ahead of the clock, follows the last frame it sent, and
   * none of the listeners was sent anything since (no timestamp repeats for them).
   */
  #resumes(m: VoiceMember, k: number, clock: number): boolean {
    if (((clock - m.resumeTop) | 0) > this.#resumeFrames) return false;
    const at = (k + m.resumeOffset) | 0;
    if (((at - m.resumeTop) | 0) <= 0 || ((at - clock) | 0) > 1) return false;
    const members = this.roster.list;
    for (let i = 0; i < members.length; i++) {
      const l = members[i]!;
      if (l.soloFrom === m && ((l.lastOutFrame - m.resumeTop) | 0) > 0) return false;
    }
    return true;
  }

  /**
   * Whether listener `l`, not forwarded `sp` last tick, would step back if it joined `sp`'s running
   * run now: the run's offset was fixed when it started and `sp`'s jitter buffer has grown since
   * (its frames play later than the channel clock), so the frame would carry a timestamp the
   * listener already had (and drop). Such a listener gets mixes (that speaker's frame, re-encoded)
   * until the run ends.
   */
  #lagsBehind(l: VoiceMember, sp: VoiceMember, wasSolo: VoiceMember | null): boolean {
    if (wasSolo === sp || !sp.fwdActive || !l.outStarted) return false;
    return sp.rawLen === 0 || ((sp.rawSeq + sp.fwdOffset - this.timeline.mediaFrame) | 0) < 0;
  }
}

/** `soloSource` result for a listener who hears no one this tick. */
const NOBODY = Symbol('nobody');

/**
 * The one speaker listener `m` hears among `speakers[0..count)`, when its mix would be exactly that
 * speaker's frame (one audible speaker besides itself, at gain 1); NOBODY when it hears none; else
 * null (a mix is needed).
 */
function soloSource(
  m: VoiceMember,
  speakers: readonly VoiceMember[],
  count: number,
): VoiceMember | null | typeof NOBODY {
  let only: VoiceMember | null = null;
  for (let s = 0; s < count; s++) {
    const sp = speakers[s]!;
    if (sp.userId === m.userId) continue; // itself, or its other binding during a handover
    const g = m.gains?.get(sp.userId) ?? 1;
    if (g === 0) continue;
    if (only !== null && sp.userId === only.userId) {
      // One speaker on two bindings (a handover): the new one carries it on.
      if (only.endpoint.retiring) only = sp;
      continue;
    }
    if (only !== null || g !== 1) return null;
    only = sp;
  }
  if (only === null) {
    // Nobody audible, or only speakers at custom gains other than 1 (then a mix is needed).
    for (let s = 0; s < count; s++) {
      const sp = speakers[s]!;
      if (sp.userId !== m.userId && (m.gains?.get(sp.userId) ?? 1) !== 0) return null;
    }
    return NOBODY;
  }
  return only;
}
