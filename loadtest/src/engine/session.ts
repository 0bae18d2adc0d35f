import { RestClient, SignalingClient } from '@voice/client';
import { MAX_PAGE_ITEMS, type Channel, type ChannelId } from '@voice/protocol';
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
 * Channel ids by name, as one user has learned them: from its own creations and from the pages of
 * `channel.list` (the server pages it, 50 by default).
 */
export class ChannelBook {
  private readonly ids = new Map<string, ChannelId>();

  learn(channels: readonly Channel[]): void {
    for (const c of channels) this.ids.set(c.name, c.id);
  }

  /**
   * The id of the channel called `name`: known, else created, else (another user created it
   * meanwhile) found by paging through the list. Requests are timed.
   */
  async idOf(ws: SignalingClient, name: string, m: MetricSink): Promise<ChannelId> {
    const known = this.ids.get(name);
    if (known !== undefined) return known;
    try {
      const { channel } = await timed(m, 'channel.create', () => ws.request('channel.create', { name }));
      this.ids.set(name, channel.id);
      return channel.id;
    } catch (err) {
      if ((err as { code?: string }).code !== 'CHANNEL_NAME_TAKEN') throw err;
      m.counter('signaling.channel_create_raced');
      let cursor: string | null = null;
      do {
        const page = await timed(m, 'channel.list', () =>
          ws.request('channel.list', { limit: MAX_PAGE_ITEMS, ...(cursor !== null ? { cursor } : {}) }),
        );
        this.learn(page.channels);
        cursor = page.next;
      } while (cursor !== null && !this.ids.has(name));
      const id = this.ids.get(name);
      if (id === undefined) throw err;
      return id;
    }
  }
}
