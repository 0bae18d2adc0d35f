import { createSignal, For, Show } from 'solid-js';
import { explain } from './ConnectScreen.tsx';
import type { ExtensionLink } from './link.ts';
import { save, saved } from './settings.ts';
import { view } from './store.ts';

function fmt(v: number | null | undefined, unit: string, digits = 0): string {
  return v === null || v === undefined ? '—' : `${v.toFixed(digits)} ${unit}`;
}

export function ChannelView(props: { link: ExtensionLink }) {
  const channel = () => view.channels.find((c) => c.id === view.state.channelId);
  const canModerate = () => view.state.isAdmin || channel()?.ownerId === view.state.userId;
  const [error, setError] = createSignal<string | null>(null);

  const serverMute = async (userId: string, on: boolean) => {
    setError(null);
    const r = await props.link.request({ cmd: 'serverMute', userId, on });
    if (!r.ok && r.error) setError(explain(r.error.code, r.error.message));
  };

  const setVolume = (userId: string, percent: number) => {
    save({ volumes: { ...saved.volumes, [userId]: percent } });
    void props.link.request({ cmd: 'volume', userId, percent });
  };

  return (
    <section class="channel-view" aria-label="Channel">
      <header class="channel-head">
        <h2 data-testid="channel-title">{channel()?.name ?? '…'}</h2>
        <div class="row">
          <button
            class="btn btn-toggle"
            classList={{ on: view.state.muted }}
            aria-pressed={view.state.muted}
            onClick={() => void props.link.request({ cmd: 'mute', on: !view.state.muted })}
            data-testid="mute"
            title="Mute (Ctrl+M)"
          >
            {view.state.muted ? 'Muted' : 'Mute'}
          </button>
          <button
            class="btn btn-toggle"
            classList={{ on: view.state.deaf }}
            aria-pressed={view.state.deaf}
            onClick={() => void props.link.request({ cmd: 'deafen', on: !view.state.deaf })}
            data-testid="deafen"
          >
            {view.state.deaf ? 'Deafened' : 'Deafen'}
          </button>
          <button
            class="btn btn-ghost"
            onClick={() => void props.link.request({ cmd: 'leave' })}
            data-testid="leave"
          >
            Leave
          </button>
        </div>
      </header>

      <Show when={error()}>
        <div class="banner banner-error" role="alert" data-testid="channel-view-error">
          {error()}
        </div>
      </Show>

      <ul class="members" data-testid="members">
        <For each={view.members}>
          {(m) => (
            <li
              class="member"
              classList={{ speaking: m.speaking, away: m.away }}
              data-testid="member"
              data-nickname={m.nickname}
              data-speaking={String(m.speaking)}
              data-server-muted={String(m.serverMute)}
            >
              <span class="avatar" aria-hidden="true">
                {m.nickname.slice(0, 1).toUpperCase()}
              </span>
              <span class="member-name">
                {m.nickname}
                {m.userId === view.state.userId ? ' (you)' : ''}
              </span>
              <span class="member-flags">
                <Show when={m.selfMute}>
                  <span class="badge">muted</span>
                </Show>
                <Show when={m.selfDeaf}>
                  <span class="badge">deafened</span>
                </Show>
                <Show when={m.serverMute}>
                  <span class="badge badge-danger" data-testid="server-muted">
                    server-muted
                  </span>
                </Show>
                <Show when={m.away}>
                  <span class="badge">away</span>
                </Show>
              </span>
              <Show when={m.userId !== view.state.userId}>
                <label class="volume">
                  <span class="sr-only">Volume of {m.nickname}</span>
                  <input
                    type="range"
                    min="0"
                    max="200"
                    step="5"
                    value={saved.volumes[m.userId] ?? m.volume}
                    onChange={(e) => setVolume(m.userId, Number(e.currentTarget.value))}
                    data-testid="volume"
                  />
                  <span class="small">{saved.volumes[m.userId] ?? m.volume}%</span>
                </label>
                <Show when={canModerate()}>
                  <button
                    class="btn btn-small"
                    aria-pressed={m.serverMute}
                    data-testid="server-mute"
                    title={`Nobody hears ${m.nickname} in this channel until you lift it`}
                    onClick={() => void serverMute(m.userId, !m.serverMute)}
                  >
                    {m.serverMute ? 'Unmute for all' : 'Mute for all'}
                  </button>
                </Show>
              </Show>
            </li>
          )}
        </For>
      </ul>

      <footer class="stats" data-testid="stats">
        <span data-testid="ping" title="Round trip to the server">
          Ping {fmt(view.stats?.pingMs, 'ms', 1)}
        </span>
        <span data-testid="loss" title="Your packets the server did not get">
          Loss {fmt(view.stats?.lossPercent, '%', 1)}
        </span>
        <span data-testid="jitter" title="Arrival jitter of what you hear">
          Jitter {fmt(view.stats?.jitterMs, 'ms', 1)}
        </span>
        <span>Via {view.stats?.transport ?? '—'}</span>
      </footer>
    </section>
  );
}
