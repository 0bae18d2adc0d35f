import { createEffect, createSignal, onCleanup, onMount, Show } from 'solid-js';
import { ChannelList } from './ChannelList.tsx';
import { ChannelView } from './ChannelView.tsx';
import { ConnectScreen } from './ConnectScreen.tsx';
import type { ExtensionLink } from './link.ts';
import { audioSettings, save, saved, sendSettings } from './settings.ts';
import { SettingsPanel } from './SettingsPanel.tsx';
import { view } from './store.ts';

const STATUS_TEXT = {
  connected: 'Connected',
  connecting: 'Connecting…',
  reconnecting: 'Reconnecting…',
  disconnected: 'Disconnected',
} as const;

export function App(props: { link: ExtensionLink }) {
  const [settingsOpen, setSettingsOpen] = createSignal(false);
  const inApp = () => view.state.connection !== 'disconnected' && view.state.userId !== null;

  createEffect(() => document.documentElement.setAttribute('data-theme', saved.theme));

  // Audio settings go to the extension whenever the link comes (back) up.
  createEffect(() => {
    if (view.linkUp) void sendSettings(props.link, audioSettings());
  });

  // Devices are remembered by name: when the list shows a remembered name under another id (ids
  // can change between runs), switch to it.
  createEffect(() => {
    const find = (name: string, input: boolean) =>
      name ? view.devices.find((d) => d.name === name && (input ? d.input : d.output)) : undefined;
    const i = find(saved.inputDeviceName, true);
    const o = find(saved.outputDeviceName, false);
    const patch: { inputDeviceId?: number; outputDeviceId?: number } = {};
    if (i && i.id !== saved.inputDeviceId) patch.inputDeviceId = i.id;
    if (o && o.id !== saved.outputDeviceId) patch.outputDeviceId = o.id;
    if (Object.keys(patch).length > 0) {
      save(patch);
      void sendSettings(props.link, patch);
    }
  });

  // Keyboard: push-to-talk (held) and mute toggle, while the window has focus and no field is typed in.
  onMount(() => {
    const typing = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      return (
        !!t &&
        (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)
      );
    };
    const down = (e: KeyboardEvent) => {
      if (typing(e) || e.repeat) return;
      if (saved.transmit === 'ptt' && e.code === saved.pttKey)
        void props.link.request({ cmd: 'ptt', down: true });
      else if (e.code === saved.muteKey && e.ctrlKey && inApp())
        void props.link.request({ cmd: 'mute', on: !view.state.muted });
    };
    const up = (e: KeyboardEvent) => {
      if (saved.transmit === 'ptt' && e.code === saved.pttKey)
        void props.link.request({ cmd: 'ptt', down: false });
    };
    const blur = () => {
      if (saved.transmit === 'ptt') void props.link.request({ cmd: 'ptt', down: false });
    };
    window.addEventListener('keydown', down);
    window.addEventListener('keyup', up);
    window.addEventListener('blur', blur);
    onCleanup(() => {
      window.removeEventListener('keydown', down);
      window.removeEventListener('keyup', up);
      window.removeEventListener('blur', blur);
    });
  });

  return (
    <div class="app">
      <Show when={!view.linkUp}>
        <div class="banner banner-error" role="alert" data-testid="link-down">
          The audio engine is not running. Restart the app.
        </div>
      </Show>
      <Show when={view.audioError}>
        <div class="banner banner-warn" role="status" data-testid="audio-banner">
          {view.audioError}
        </div>
      </Show>
      <Show
        when={inApp()}
        fallback={<ConnectScreen link={props.link} onSettings={() => setSettingsOpen(true)} />}
      >
        <div class="layout">
          <aside class="sidebar">
            <header class="sidebar-head">
              <div>
                <div class="me" data-testid="me">
                  {view.state.nickname}
                </div>
                <div class="muted small">{view.state.server}</div>
              </div>
              <span
                class={`status status-${view.state.connection}`}
                data-testid="connection"
                data-state={view.state.connection}
              >
                {STATUS_TEXT[view.state.connection]}
              </span>
            </header>
            <ChannelList link={props.link} />
            <footer class="sidebar-foot">
              <button class="btn btn-ghost" onClick={() => setSettingsOpen(true)} data-testid="open-settings">
                Settings
              </button>
              <button
                class="btn btn-ghost"
                onClick={() => void props.link.request({ cmd: 'disconnect' })}
                data-testid="sign-out"
              >
                Sign out
              </button>
            </footer>
          </aside>
          <main class="main">
            <Show when={view.state.error && view.state.connection === 'reconnecting'}>
              <div class="banner banner-warn" role="status">
                {view.state.error!.message} — trying again
                {view.state.retryInMs !== null ? ` in ${Math.ceil(view.state.retryInMs / 1000)} s` : ''}.
              </div>
            </Show>
            <Show
              when={view.state.channelId}
              fallback={<div class="empty">Pick a channel on the left to join it.</div>}
            >
              <ChannelView link={props.link} />
            </Show>
          </main>
        </div>
      </Show>
      <Show when={settingsOpen()}>
        <SettingsPanel link={props.link} onClose={() => setSettingsOpen(false)} />
      </Show>
    </div>
  );
}
