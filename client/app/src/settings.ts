import { createStore } from 'solid-js/store';
import type { AudioSettings } from '../../src/desktop/messages.ts';
import type { ExtensionLink } from './link.ts';
import { setView } from './store.ts';

/** What the UI remembers between runs (localStorage: the Neutralino webview keeps it too). */
export interface Saved extends Required<
  Pick<AudioSettings, 'inputGainDb' | 'vadThresholdDbfs' | 'transmit' | 'outputVolume'>
> {
  server: string;
  nickname: string;
  /** The server's admin token, if the person has one: sent in hello, never put back on screen. */
  adminToken: string;
  theme: 'dark' | 'light';
  pttKey: string;
  muteKey: string;
  inputDeviceId: number;
  outputDeviceId: number;
  /** Device names: PortAudio's ids can change between runs (a device plugged in), names do not. */
  inputDeviceName: string;
  outputDeviceName: string;
  volumes: Record<string, number>;
}

const KEY = 'voice.settings.v1';

export const DEFAULTS: Saved = {
  server: 'localhost:7800',
  nickname: '',
  adminToken: '',
  theme: 'dark',
  transmit: 'vad',
  pttKey: 'KeyV',
  muteKey: 'KeyM',
  inputGainDb: 0,
  vadThresholdDbfs: -45,
  outputVolume: 100,
  inputDeviceId: -1,
  outputDeviceId: -1,
  inputDeviceName: '',
  outputDeviceName: '',
  volumes: {},
};

function load(): Saved {
  try {
    const raw = localStorage.getItem(KEY);
    if (!raw) return { ...DEFAULTS };
    const v = JSON.parse(raw) as Partial<Saved>;
    return { ...DEFAULTS, ...v, volumes: { ...(v.volumes ?? {}) } };
  } catch {
    return { ...DEFAULTS };
  }
}

const [saved, setSavedStore] = createStore<Saved>(load());

export { saved };

export function save(patch: Partial<Saved>): void {
  setSavedStore(patch);
  try {
    localStorage.setItem(KEY, JSON.stringify(saved));
  } catch {
    // Storage full or disabled: settings last for this run only.
  }
}

/** The audio part, as the extension takes it. */
export function audioSettings(): AudioSettings {
  return {
    inputDeviceId: saved.inputDeviceId,
    outputDeviceId: saved.outputDeviceId,
    inputGainDb: saved.inputGainDb,
    vadThresholdDbfs: saved.vadThresholdDbfs,
    transmit: saved.transmit,
    outputVolume: saved.outputVolume,
  };
}

/**
 * Sends audio settings to the extension. A success means the devices asked for are running (it
 * reopens one that failed), so an earlier sound problem is over.
 */
export async function sendSettings(link: ExtensionLink, settings: AudioSettings): Promise<void> {
  const r = await link.request({ cmd: 'settings', settings });
  if (r.ok) setView('audioError', null);
}
