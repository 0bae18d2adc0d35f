import { dispatch, spawn, stop, type ActorSystemRef, type Ref } from 'nact';
import { Histogram, type OpusFactory } from '@voice/media';
import type { ChannelId } from '@voice/protocol';
import type { Logger } from '../log.js';
import type { StoredChannel } from '../state/types.js';
import { ChannelCore, type ChannelIo } from './channel.js';
import type { VoiceEndpoint } from './endpoint.js';
import type { ScheduledHandle, ScheduledTask } from './scheduler.js';

type ChannelMsg =
  | { type: 'tick' }
  | { type: 'add'; ep: VoiceEndpoint }
  | { type: 'remove'; ep: VoiceEndpoint }
  | { type: 'retire'; ep: VoiceEndpoint }
  | { type: 'update'; ep: VoiceEndpoint }
  | { type: 'settings'; channel: StoredChannel };

const TICK: ChannelMsg = { type: 'tick' };

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
}

/**
 * One active channel: the nact actor that owns its `ChannelCore`, the tick it receives from the
 * scheduler (skipped, never queued, while the previous one waits: a bounded mailbox) and how late
 * those ticks run. Every member change reaches the core as a message, so the core has one owner.
 */
export class ChannelActor implements ScheduledTask {
  readonly core: ChannelCore;
  readonly #actor: Ref<ChannelMsg>;
  /** Set by the plane once the clock has a slot for this channel. */
  schedule: ScheduledHandle | null = null;
  slotMs = 0;
  /** Seats held (members attached, or being re-attached): the channel stops at zero. */
  members = 0;
  /** A tick is waiting in the mailbox: the next one is skipped rather than queued (bounded mailbox). */
  #tickQueued = false;
  ticksSkipped = 0;
  /** When the queued tick was due (performance clock), and how late ticks reach the actor. */
  #dueAt = 0;
  #lastDueAt = 0;
  readonly lateness = new Histogram({ bucketWidth: 0.05, buckets: 2000, window: 3000 });
  #closed = false;

  constructor(
    readonly channel: StoredChannel,
    deps: ChannelActorDeps,
  ) {
    this.core = new ChannelCore(channel.id, channel.voice, deps.opus, deps.io, {
      tickBudgetMs: channel.voice.frameMs * deps.tickBudget,
      timeStretch: deps.timeStretch,
      minBufferFrames: deps.minBufferFrames ?? 1,
    });
    this.#actor = spawn(
      deps.system,
      (state: ChannelCore, msg: ChannelMsg) => {
        switch (msg.type) {
          case 'tick':
            this.#tick(state);
            break;
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

  #tick(state: ChannelCore): void {
    this.#tickQueued = false;
    const now = performance.now();
    this.lateness.record(now - this.#dueAt);
    // Frames of time since the last tick that ran (1, or more after a stall or a skip; an
    // earlier phase after alignment is a shorter period, still one frame).
    const frames =
      this.#lastDueAt === 0
        ? 1
        : Math.max(1, Math.round((this.#dueAt - this.#lastDueAt) / state.settings.frameMs));
    this.#lastDueAt = this.#dueAt;
    state.tick(now, frames, Math.max(0, now - this.#dueAt));
  }

  /** The scheduler's call: hand the actor a tick unless the previous one is still queued. */
  due(dueAt: number): void {
    if (this.#tickQueued) {
      // The actor has not run the previous tick yet: skip rather than queue (bounded mailbox).
      this.ticksSkipped++;
      return;
    }
    this.#tickQueued = true;
    this.#dueAt = dueAt;
    dispatch(this.#actor, TICK);
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
