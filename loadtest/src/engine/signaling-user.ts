import { RestClient, SignalingClient } from '@voice/client';
import { timed, type MetricSink } from './metrics.js';
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
  const rest = new RestClient(o.server);
  const { token } = await timed(m, 'login', () => rest.login(o.nickname));
  const wsUrl = new URL('/ws', o.server);
  wsUrl.protocol = wsUrl.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = await timed(m, 'hello', () =>
    SignalingClient.connect({ url: wsUrl.toString(), token, client: 'loadtest' }),
  );
  m.counter('signaling.sessions_opened');
  try {
    const req = <K extends Parameters<SignalingClient['request']>[0]>(
      t: K,
      body: Parameters<SignalingClient['request']>[1] & object,
    ) => timed(m, t, () => ws.request(t, body as never));
    let { channels } = await req('channel.list', {});
    for (let c = 0; c < o.step.cycles && !o.signal.aborted; c++) {
      const name = `${o.channelPrefix}-${Math.floor(rnd() * o.step.channels)}`;
      let id = channels.find((x) => x.name === name)?.id;
      if (id === undefined) {
        try {
          id = (await req('channel.create', { name })).channel.id;
        } catch (err) {
          if ((err as { code?: string }).code !== 'CHANNEL_NAME_TAKEN') throw err;
          ({ channels } = await req('channel.list', {}));
          id = channels.find((x) => x.name === name)?.id;
          if (id === undefined) throw err;
        }
      }
      const joined = await req('channel.join', { channelId: id });
      const other = joined.members.find((x) => x.userId !== ws.welcome.user.id);
      if (other) await req('voice.volume', { userId: other.userId, volume: 50 + Math.floor(rnd() * 100) });
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
