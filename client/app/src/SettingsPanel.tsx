import { createSignal, For, onCleanup, Show } from 'solid-js';
import { focusSoon } from './focus.ts';
import type { ExtensionLink } from './link.ts';
import { audioSettings, save, saved, sendSettings, type Saved } from './settings.ts';
import { view } from './store.ts';

/** A key code as a person reads it: KeyV -> V, Digit1 -> 1, ShiftLeft -> Shift (left). */
function keyName(code: string): string {
  const m = /^(?:Key|Digit|Numpad)(.+)$/.exec(code);
  if (m) return code.startsWith('Numpad') ? `Numpad ${m[1]}` : m[1]!;
  const side = /^(.+)(Left|Right)$/.exec(code);
  return side ? `${side[1]} (${side[2]!.toLowerCase()})` : code;
}

export function SettingsPanel(props: { link: ExtensionLink; onClose: () => void }) {
  const [testing, setTesting] = createSignal(false);
  const [capturing, setCapturing] = createSignal<'pttKey' | 'muteKey' | null>(null);

  const apply = (patch: Partial<Saved>) => {
    save(patch);
    void sendSettings(props.link, audioSettings());
  };
  const pickDevice = (which: 'inputDeviceId' | 'outputDeviceId', id: number) => {
    const name = view.devices.find((d) => d.id === id)?.name ?? '';
    save(
      which === 'inputDeviceId'
        ? { inputDeviceId: id, inputDeviceName: name }
        : { outputDeviceId: id, outputDeviceName: name },
    );
    void sendSettings(props.link, { [which]: id });
  };
  // A remembered device that is not there (unplugged): shown as such, so the person can pick another.
  const missing = (which: 'input' | 'output') => {
    const id = which === 'input' ? saved.inputDeviceId : saved.outputDeviceId;
    return id >= 0 && !view.devices.some((d) => d.id === id && (which === 'input' ? d.input : d.output));
  };
  const toggleTest = () => {
    const on = !testing();
    setTesting(on);
    void props.link.request({ cmd: 'loopback', on });
  };
  onCleanup(() => {
    if (testing()) void props.link.request({ cmd: 'loopback', on: false });
  });
  const onKey = (e: KeyboardEvent) => {
    const which = capturing();
    if (!which) {
      if (e.key === 'Escape') props.onClose();
      return;
    }
    e.preventDefault();
    // Escape cancels choosing a key rather than becoming one.
    if (e.key !== 'Escape') save({ [which]: e.code });
    setCapturing(null);
  };

  // Meter: -60..0 dBFS as 0..100 %, threshold marker at the VAD level.
  const pct = (db: number) => Math.max(0, Math.min(100, ((db + 60) / 60) * 100));

  return (
    <div class="modal" role="dialog" aria-modal="true" aria-label="Settings" onKeyDown={onKey}>
      <div class="card settings" data-testid="settings">
        <header class="section-head">
          <h2>Settings</h2>
          <button
            class="btn btn-ghost"
            ref={focusSoon}
            onClick={() => props.onClose()}
            data-testid="close-settings"
          >
            Close
          </button>
        </header>
        <Show when={view.audioError}>
          <div class="banner banner-error" role="alert" data-testid="audio-error">
            {view.audioError}
          </div>
        </Show>
        <div class="grid2">
          <label class="field">
            <span>Microphone</span>
            <select
              class="input"
              value={saved.inputDeviceId}
              onChange={(e) => pickDevice('inputDeviceId', Number(e.currentTarget.value))}
              data-testid="input-device"
            >
              <option value="-1">System default</option>
              <Show when={missing('input')}>
                <option value={saved.inputDeviceId}>
                  {saved.inputDeviceName || 'Your microphone'} (not found)
                </option>
              </Show>
              <For each={view.devices.filter((d) => d.input)}>
                {(d) => <option value={d.id}>{d.name}</option>}
              </For>
            </select>
          </label>
          <label class="field">
            <span>Speaker</span>
            <select
              class="input"
              value={saved.outputDeviceId}
              onChange={(e) => pickDevice('outputDeviceId', Number(e.currentTarget.value))}
              data-testid="output-device"
            >
              <option value="-1">System default</option>
              <Show when={missing('output')}>
                <option value={saved.outputDeviceId}>
                  {saved.outputDeviceName || 'Your speaker'} (not found)
                </option>
              </Show>
              <For each={view.devices.filter((d) => d.output)}>
                {(d) => <option value={d.id}>{d.name}</option>}
              </For>
            </select>
          </label>
        </div>

        <label class="field">
          <span>
            Input gain: {saved.inputGainDb > 0 ? '+' : ''}
            {saved.inputGainDb} dB
          </span>
          <input
            type="range"
            min="-20"
            max="20"
            step="1"
            value={saved.inputGainDb}
            onInput={(e) => apply({ inputGainDb: Number(e.currentTarget.value) })}
            data-testid="gain"
          />
        </label>
        <div
          class="meter"
          aria-label="Input level"
          role="meter"
          aria-valuemin={-60}
          aria-valuemax={0}
          aria-valuenow={Math.round(view.level.rmsDbfs)}
        >
          <div
            class="meter-fill"
            classList={{ hot: view.level.transmitting }}
            style={{ width: `${pct(view.level.rmsDbfs)}%` }}
          />
          <Show when={saved.transmit === 'vad'}>
            <div class="meter-mark" style={{ left: `${pct(saved.vadThresholdDbfs)}%` }} />
          </Show>
        </div>

        <fieldset class="field">
          <legend>Send my voice</legend>
          <div class="row">
            <For
              each={
                [
                  ['vad', 'When I speak'],
                  ['ptt', 'Push to talk'],
                  ['always', 'Always'],
                ] as const
              }
            >
              {([v, label]) => (
                <label class="radio">
                  <input
                    type="radio"
                    name="transmit"
                    checked={saved.transmit === v}
                    onChange={() => apply({ transmit: v })}
                    data-testid={`transmit-${v}`}
                  />
                  {label}
                </label>
              )}
            </For>
          </div>
        </fieldset>
        <Show when={saved.transmit === 'vad'}>
          <label class="field">
            <span>Voice threshold: {saved.vadThresholdDbfs} dBFS</span>
            <input
              type="range"
              min="-70"
              max="-10"
              step="1"
              value={saved.vadThresholdDbfs}
              onInput={(e) => apply({ vadThresholdDbfs: Number(e.currentTarget.value) })}
              data-testid="vad"
            />
          </label>
        </Show>
        <div class="grid2">
          <Show when={saved.transmit === 'ptt'}>
            <div class="field">
              <span>Push-to-talk key</span>
              <button class="btn" onClick={() => setCapturing('pttKey')} data-testid="ptt-key">
                {capturing() === 'pttKey' ? 'Press a key…' : keyName(saved.pttKey)}
              </button>
            </div>
          </Show>
          <div class="field">
            <span>Mute toggle (with Ctrl)</span>
            <button class="btn" onClick={() => setCapturing('muteKey')}>
              {capturing() === 'muteKey' ? 'Press a key…' : keyName(saved.muteKey)}
            </button>
          </div>
        </div>

        <div class="row">
          <button
            class="btn"
            classList={{ on: testing() }}
            aria-pressed={testing()}
            onClick={toggleTest}
            data-testid="mic-test"
          >
            {testing() ? 'Stop the test' : 'Test my microphone'}
          </button>
          <span class="muted small">You hear yourself as the others will.</span>
        </div>

        <fieldset class="field">
          <legend>Theme</legend>
          <div class="row">
            <For each={['dark', 'light'] as const}>
              {(t) => (
                <label class="radio">
                  <input
                    type="radio"
                    name="theme"
                    checked={saved.theme === t}
                    onChange={() => save({ theme: t })}
                    data-testid={`theme-${t}`}
                  />
                  {t === 'dark' ? 'Dark' : 'Light'}
                </label>
              )}
            </For>
          </div>
        </fieldset>
      </div>
    </div>
  );
}
