import type { EventEmitter } from 'node:events';
import { threadId } from 'node:worker_threads';
import { createOpus, type OpusFactory } from '@voice/media';
import { FrameBank } from '../voice/frame-bank.js';
import { artillerySink, errorCode, type MetricSink } from './metrics.js';
import { GeneratorMonitor } from './monitor.js';
import { LeanPlane } from '../voice/lean-plane.js';
import { runLeanUser } from './lean-user.js';
import {
  parseEngineConfig,
  parseLeanStep,
  parseSignalingStep,
  parseVoiceStep,
  type EngineConfig,
} from './options.js';
import { runSignalingUser } from './signaling-user.js';
import { runVoiceUser } from './voice-user.js';

/** What Artillery hands an engine (the parts we use). */
export interface ArtilleryScript {
  config: { target?: unknown; voice?: unknown };
}
export interface ScenarioSpec {
  flow: Record<string, unknown>[];
}
type Done = (err: Error | null, context: unknown) => void;

/** Seats in channels of `seats`, filled in arrival order within this worker. */
class SeatPlan {
  private readonly next = new Map<string, number>();
  seat(kind: string, seats: number): { channelIndex: number; seat: number } {
    const n = this.next.get(kind) ?? 0;
    this.next.set(kind, n + 1);
    return { channelIndex: Math.floor(n / seats), seat: n % seats };
  }
}

/**
 * The Artillery engine (`engine: voice`): every virtual user is a real client of this project,
 * built from @voice/client. Flow steps: `signaling: {...}`, `voice: {...}`, `lean: {...}` (capacity
 * runs: UDP users that count packets and decode nothing), `think: seconds`. One
 * engine per Artillery worker thread; it owns the thread's Opus backend, frame banks and monitor.
 */
export class VoiceEngine {
  private readonly cfg: EngineConfig;
  private readonly seats = new SeatPlan();
  private opus: Promise<OpusFactory> | null = null;
  private readonly banks = new Map<number, FrameBank>();
  private monitor: GeneratorMonitor | null = null;
  private lean: Promise<LeanPlane> | null = null;
  private users = 0;
  private readonly stop = new AbortController();

  constructor(script: ArtilleryScript) {
    this.cfg = parseEngineConfig(script.config.target, script.config.voice, process.env);
  }

  createScenario(spec: ScenarioSpec, ee: EventEmitter): (context: unknown, done: Done) => void {
    const sink = artillerySink(ee);
    if (!this.monitor) {
      this.monitor = new GeneratorMonitor(sink);
      this.monitor.start();
    }
    const steps = spec.flow.map((step) => this.compileStep(step));
    return (context, done) => {
      ee.emit('started');
      const user = this.users++;
      void (async () => {
        for (const run of steps) await run(user, sink);
      })().then(
        () => done(null, context),
        (err: unknown) => {
          sink.error(errorCode(err));
          done(err instanceof Error ? err : new Error(String(err)), context);
        },
      );
    };
  }

  private compileStep(step: Record<string, unknown>): (user: number, m: MetricSink) => Promise<void> {
    const keys = Object.keys(step);
    if (keys.length !== 1) throw new TypeError(`a flow step has one key, got ${keys.join(', ')}`);
    const key = keys[0]!;
    const cfg = this.cfg;
    const name = (user: number) => `lt${cfg.runId}-${threadId}-${user}`;
    if (key === 'think') {
      const s = Number(step.think);
      if (!(s >= 0)) throw new TypeError('think must be seconds >= 0');
      return () => new Promise((r) => setTimeout(r, s * 1000));
    }
    if (key === 'signaling') {
      const o = parseSignalingStep(step.signaling);
      return (user, m) =>
        runSignalingUser(
          {
            server: cfg.targets[user % cfg.targets.length]!,
            nickname: name(user),
            channelPrefix: `lt${cfg.runId}-sig`,
            step: o,
            signal: this.stop.signal,
          },
          m,
        );
    }
    if (key === 'voice') {
      const o = parseVoiceStep(step.voice);
      return async (user, m) => {
        const { channelIndex, seat } = this.seats.seat(`${o.transport}${o.frameMs}`, o.seats);
        const opus = await (this.opus ??= createOpus());
        let bank = this.banks.get(o.frameMs);
        if (!bank) {
          bank = FrameBank.build(opus, { frameMs: o.frameMs });
          this.banks.set(o.frameMs, bank);
        }
        // Members of one channel are spread over the targets (a cluster routes them together).
        const t = cfg.targets;
        await runVoiceUser(
          {
            server: t[(channelIndex + seat) % t.length]!,
            nickname: name(user),
            channel: `lt${cfg.runId}-${o.transport}${o.frameMs}-${threadId}-${channelIndex}`,
            seat,
            step: o,
            opus,
            bank,
            signal: this.stop.signal,
            ...(cfg.udpTarget ? { udpTarget: cfg.udpTarget } : {}),
          },
          m,
        );
      };
    }
    if (key === 'lean') {
      const o = parseLeanStep(step.lean);
      return async (user, m) => {
        const { channelIndex, seat } = this.seats.seat('lean', o.seats);
        const plane = await (this.lean ??= (async () =>
          new LeanPlane({ opus: await (this.opus ??= createOpus()), phases: o.phases }))());
        const t = cfg.targets;
        await runLeanUser(
          {
            server: t[(channelIndex + seat) % t.length]!,
            nickname: name(user),
            channel: `lt${cfg.runId}-lean-${threadId}-${channelIndex}`,
            seat,
            step: o,
            plane,
            signal: this.stop.signal,
          },
          m,
        );
      };
    }
    throw new TypeError(`unknown flow step ${JSON.stringify(key)} (signaling, voice, lean, think)`);
  }

  /**
   * Ends the users' waits, the monitor and the lean plane; idempotent. Artillery 2.0.21 has no
   * engine clean-up hook, so nothing here may hold a worker open by itself: the monitor's timer is
   * unref'd and the lean plane stops its clock when its last user leaves.
   */
  close(): void {
    this.stop.abort();
    this.monitor?.stop();
    void this.lean?.then((p) => p.close());
  }
}
