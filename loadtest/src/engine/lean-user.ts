import type { LeanPlane } from '../voice/lean-plane.js';
import { timed, type MetricSink } from './metrics.js';
import type { LeanStep } from './options.js';
import { ChannelBook, openSession } from './session.js';
import { sleep } from './sleep.js';

export interface LeanUserOptions {
  readonly server: string;
  readonly nickname: string;
  readonly channel: string;
  readonly seat: number;
  readonly step: LeanStep;
  readonly plane: LeanPlane;
  readonly signal: AbortSignal;
}

/**
 * A lean voice user (capacity runs): logs in, joins its seat's channel over signaling, then
 * registers over UDP in the worker's LeanPlane; the first `speakers` seats talk. Counts what it
 * receives against one mix per frame over its window (`voice.lean_expected/received`).
 */
export async function runLeanUser(o: LeanUserOptions, m: MetricSink): Promise<void> {
  const ws = await openSession(o.server, o.nickname, m);
  try {
    const channelId = await new ChannelBook().idOf(ws, o.channel, m);
    const { voice } = await timed(m, 'channel.join', () => ws.request('channel.join', { channelId }));
    const member = await o.plane.add(voice, o.seat < o.step.speakers);
    o.plane.start();
    try {
      await sleep(o.step.warmupSeconds * 1000, o.signal);
      const r0 = member.received - member.duplicates;
      const d0 = member.duplicates;
      const f0 = o.plane.frame;
      const t0 = performance.now();
      await sleep(o.step.seconds * 1000, o.signal);
      const frames = o.plane.frame - f0;
      const heartbeats = Math.floor((performance.now() - t0) / 5000);
      m.counter('voice.lean_expected', frames + heartbeats);
      m.counter('voice.lean_received', member.received - member.duplicates - r0);
      m.counter('voice.lean_duplicates', member.duplicates - d0);
      await sleep(o.step.lingerSeconds * 1000, o.signal);
    } finally {
      o.plane.remove(member);
    }
  } finally {
    ws.close();
  }
}
