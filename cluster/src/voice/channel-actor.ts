import { dispatch, spawn, stop, type ActorSystemRef, type Ref } from 'nact';
import { Histogram, type OpusFactory } from '@voice/media';
import type { ChannelId } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { StoredChannel } from '../state/types.js';
import { ChannelCore, type ChannelIo } from './channel.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { ScheduledHandle, ScheduledTask } from './scheduler.js';
import { EarlyTicks } from './early-tick.js';

type ChannelMsg =
  | { type: 'add'; ep: VoiceEndpoint }
  | { type: 'remove'; ep: VoiceEndpoint }
  | { type: 'retire'; ep: VoiceEndpoint }
  | { type: 'update'; ep: VoiceEndpoint }
  | { type: 'settings'; channel: StoredChannel };

/**
 * Ticks in a row in which every listener of a channel streamed before it shares the clock slot of
 * the other such channels (1 s): a channel that flips between the two is not moved at each flip.
 */
export const SHARE_AFTER_TICKS = 50;

/** What a channel actor is built from. */
export interface ChannelActorDeps {
  system: ActorSystemRef;
  opus: OpusFactory;
  io: ChannelIo;
  log: Logger;
  /** Share of a frame a tick may use before the channel lowers its encoder complexity. */
  tickBudget: number;
  /** Time-stretch the members' playouts (ChannelCoreOptions.timeStretch). */
  timeStretch: boolean;
  /** The fewest frames the members' jitter buffers target (ChannelCoreOptions.minBufferFrames). */
  minBufferFrames?: number;
  /** Run a tick as soon as the frames it mixes are in (config `clock.mixOnReady`). */
  mixOnReady?: boolean;
}

/**
 * One active channel: the nact actor that owns its `ChannelCore`, the tick the scheduler runs and
 * how late those ticks run. Every member change reaches the core as a message, so the core has one
 * owner on one thread. The tick itself is no message: the scheduler calls it directly (as the
 * ingress calls `forwardOnArrival`), because a nact dispatch per tick (an immediate, an async
 * closure and its promise, a context object with a copied Map) was the largest allocation left per
 * channel and frame. (The hop through the loop that message made, the scheduler now makes once
 * per wake-up: see `TickScheduler.#run`.)
 */
export class ChannelActor implements ScheduledTask {
  readonly core: ChannelCore;
  readonly #actor: Ref<ChannelMsg>;
  /** Set by the plane once the clock has a slot for this channel. */
  schedule: ScheduledHandle | null = null;
  slotMs = 0;
  /** Seats held (members attached, or being re-attached): the channel stops at zero. */
  members = 0;
  /** Frame periods no tick ran in (the process stalled or the clock skipped), made up by the next. */
  ticksSkipped = 0;
  /** When ticks ran and are due; a tick may run before its phase once its frames are in. */
  readonly #early: EarlyTicks;
  /** Ticks in a row in which no listener needed a mix. */
  #streamingTicks = 0;
  readonly #log: Logger;
  readonly lateness = new Histogram({ bucketWidth: 0.05, buckets: 2000, window: 3000 });
  #closed = false;

  constructor(
    readonly channel: StoredChannel,
    deps: ChannelActorDeps,
  ) {
    this.#log = deps.log;
    this.core = new ChannelCore(channel.id, channel.voice, deps.opus, deps.io, {
      tickBudgetMs: channel.voice.frameMs * deps.tickBudget,
      timeStretch: deps.timeStretch,
      minBufferFrames: deps.minBufferFrames ?? 1,
    });
    this.#early = new EarlyTicks(channel.voice.frameMs, deps.mixOnReady ?? false);
    // Called from the ingress, in the handler of the packet that completed the next tick's frames.
    this.core.onReady = () => this.#runEarly();
    // Called from the ingress, by the first packet for a channel whose clock slept.
    this.core.onWake = (frames) => {
      this.#early.slept(frames);
      this.schedule?.sleep(false);
    };
    this.#actor = spawn(
      deps.system,
      (state: ChannelCore, msg: ChannelMsg) => {
        switch (msg.type) {
          case 'add':
            if (!msg.ep.closed) state.addMember(msg.ep);
            break;
          case 'remove':
            if (msg.ep.member) state.removeMember(msg.ep.member);
            // Nothing seals for it any more: free its native cipher state now, not at GC.
            msg.ep.cipher.close();
            break;
          case 'retire':
            if (msg.ep.member) state.retireMember(msg.ep.member);
            break;
          case 'update':
            if (msg.ep.member) state.updateMember(msg.ep.member);
            break;
          case 'settings':
            state.updateSettings(msg.channel.voice);
            break;
        }
        return state;
      },
      `channel-${channel.id}`,
      {
        initialState: this.core,
        // A bug in one tick must not take the channel down: log, count, carry on.
        onCrash: (_msg, err, ctx) => {
          deps.log.error({ err, channel: channel.id }, 'channel actor crashed; resuming');
          return ctx.resume;
        },
      },
    );
  }

  get id(): ChannelId {
    return this.channel.id;
  }

  /** The scheduler's call: run this channel's tick now. */
  due(dueAt: number): void {
    if (this.#closed) return;
    const state = this.core;
    const now = performance.now();
    this.lateness.record(now - dueAt);
    // Frames of time since the last tick that ran (1, or more after a stall or a skip; an
    // earlier phase after alignment is a shorter period, still one frame).
    const frames = this.#early.scheduled(dueAt, now);
    if (frames === 0) return; // ran early, when its frames were in (mixOnReady)
    this.ticksSkipped += frames - 1;
    try {
      state.tick(now, frames, Math.max(0, now - dueAt));
      this.#shareWhenStreaming();
      // Nobody has spoken for a while: no tick until the next packet (ChannelCore.wake).
      if (state.sleepy && this.schedule) {
        this.schedule.sleep(true);
        state.sleep();
      }
    } catch (err) {
      // A bug in one tick must not take the channel (or the other channels of its slot) down.
      this.#log.error({ err, channel: this.channel.id }, 'channel tick failed; resuming');
    }
  }

  /** Runs the next tick now, its frames all in, instead of at its scheduled phase (mixOnReady). */
  #runEarly(): void {
    if (this.#closed || !this.schedule) return;
    const now = performance.now();
    const dueAt = this.#early.tryEarly(now);
    if (dueAt === 0) return;
    this.core.stats.earlyTicks++;
    try {
      // Negative lateness: the buffers judge their delay at the frame's due time, as at the
      // scheduled tick, and the phases the alignment and the timing advance read are against it.
      this.core.tick(now, 1, now - dueAt);
    } catch (err) {
      this.#log.error({ err, channel: this.channel.id }, 'channel tick failed; resuming');
    }
  }

  /**
   * A channel whose every listener streams (README 8.8) sends each packet as it arrives and mixes
   * nothing: its tick is a little bookkeeping whose phase does not matter, so it shares one clock
   * slot with the others like it (one wake-up a frame for all of them, not one per slot). The
   * first tick in which someone needs a mix takes it back to a slot of its own.
   */
  #shareWhenStreaming(): void {
    const schedule = this.schedule;
    if (!schedule) return;
    const members = this.core.members;
    let streaming = members.length > 0;
    for (let i = 0; i < members.length && streaming; i++) {
      const m = members[i]!;
      streaming = m.streamMode || m.deaf || m.endpoint.transport === 'none';
    }
    if (!streaming) {
      this.#streamingTicks = 0;
      if (schedule.shared) schedule.share(false);
      return;
    }
    if (++this.#streamingTicks >= SHARE_AFTER_TICKS && !schedule.shared) schedule.share(true);
  }

  add(ep: VoiceEndpoint): void {
    dispatch(this.#actor, { type: 'add', ep });
  }
  remove(ep: VoiceEndpoint): void {
    dispatch(this.#actor, { type: 'remove', ep });
  }
  /** A handed-over binding: its member takes no more packets and stops speaking once played out. */
  retire(ep: VoiceEndpoint): void {
    dispatch(this.#actor, { type: 'retire', ep });
  }
  update(ep: VoiceEndpoint): void {
    dispatch(this.#actor, { type: 'update', ep });
  }
  settings(channel: StoredChannel): void {
    dispatch(this.#actor, { type: 'settings', channel });
  }

  /** Leaves the clock, stops the actor and frees the core (encoders, decoders). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.schedule?.remove();
    stop(this.#actor);
    // Members whose 'remove' message will never run (the actor is stopped) free their ciphers here.
    for (const m of this.core.members) m.endpoint.cipher.close();
    this.core.close();
  }
}
