import { RestClient, SignalingClient } from '@voice/client';
import type { Channel, ChannelId } from '@voice/protocol';
import { timed, type MetricSink } from './metrics.js';

/** Logs in over REST and opens signaling (hello), timing both as `login` and `hello`. */
export async function openSession(server: string, nickname: string, m: MetricSink): Promise<SignalingClient> {
  const rest = new RestClient(server);
  const { token } = await timed(m, 'login', () => rest.login(nickname));
  const url = new URL('/ws', server);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = await timed(m, 'hello', () =>
    SignalingClient.connect({ url: url.toString(), token, client: 'loadtest' }),
  );
  m.counter('signaling.sessions_opened');
  return ws;
}

/**
 * The id of the channel called `name`, creating it when `known` (the last list) has none; when
 * another user created it meanwhile, lists again and takes theirs. Requests are timed.
 */
export async function channelNamed(
  ws: SignalingClient,
  name: string,
  known: readonly Channel[],
  m: MetricSink,
): Promise<ChannelId> {
  const found = known.find((c) => c.name === name)?.id;
  if (found !== undefined) return found;
  try {
    return (await timed(m, 'channel.create', () => ws.request('channel.create', { name }))).channel.id;
  } catch (err) {
    if ((err as { code?: string }).code !== 'CHANNEL_NAME_TAKEN') throw err;
    // Every page: the list is paged to fit a frame (protocol README 4.4).
    const channels = await timed(m, 'channel.list', () => ws.allChannels());
    const id = channels.find((c) => c.name === name)?.id;
    if (id === undefined) throw err;
    return id;
  }
}
