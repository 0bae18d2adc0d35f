import type { SignalingClient } from '@voice/client';
import { timed, type MetricSink } from './metrics.js';
import { ChannelBook, openSession } from './session.js';
import { sleep } from './sleep.js';
import type { SignalingStep } from './options.js';

export interface SignalingUserOptions {
  readonly server: string;
  readonly nickname: string;
  /** Channel names are `${channelPrefix}-${k}`, k in 0..step.channels-1. */
  readonly channelPrefix: string;
  readonly step: SignalingStep;
  readonly signal: AbortSignal;
  readonly random?: () => number;
}

/**
 * A signaling-only user, timing every request: log-in (REST), connect + hello, channel list, then
 * `cycles` of join (creating the channel when nobody has), a volume change for a member, mute and
 * unmute, ping and leave; then it holds the session open, pinging, to count concurrent sessions.
 */
export async function runSignalingUser(o: SignalingUserOptions, m: MetricSink): Promise<void> {
  const rnd = o.random ?? Math.random;
  const ws = await openSession(o.server, o.nickname, m);
  try {
    const req = <K extends Parameters<SignalingClient['request']>[0]>(
      t: K,
      body: Parameters<SignalingClient['request']>[1] & object,
    ) => timed(m, t, () => ws.request(t, body as never));
    // The whole list, as a client shows it: every page (it is paged to fit a frame, protocol
    // README 4.4). Channels created later are found through the book.
    const book = new ChannelBook();
    book.learn(await timed(m, 'channel.list', () => ws.allChannels()));
    for (let c = 0; c < o.step.cycles && !o.signal.aborted; c++) {
      const name = `${o.channelPrefix}-${Math.floor(rnd() * o.step.channels)}`;
      const id = await book.idOf(ws, name, m);
      const joined = await req('channel.join', { channelId: id });
      const other = joined.members.find((x) => x.userId !== ws.welcome.user.id);
      if (other) {
        try {
          await req('voice.volume', { userId: other.userId, volume: 50 + Math.floor(rnd() * 100) });
        } catch (err) {
          // The member left between our join and this request: the churn this scenario makes.
          if ((err as { code?: string }).code !== 'NOT_FOUND') throw err;
          m.counter('signaling.volume_target_left');
        }
      }
      await req('voice.state', { selfMute: true });
      await req('voice.state', { selfMute: false });
      await req('ping', { ts: performance.now() });
      await req('channel.leave', {});
      m.counter('signaling.cycles');
      await sleep(o.step.thinkMs * (0.5 + rnd()), o.signal);
    }
    const holdUntil = performance.now() + o.step.holdSeconds * 1000;
    while (performance.now() < holdUntil && !o.signal.aborted) {
      await sleep(Math.min(o.step.pingMs, holdUntil - performance.now()), o.signal);
      if (performance.now() < holdUntil) await req('ping', { ts: performance.now() });
    }
  } finally {
    ws.close();
  }
}
