import { createStore, produce } from 'solid-js/store';
import type {
  ChannelView,
  DesktopEvent,
  DesktopEventOf,
  DeviceView,
  MemberView,
} from '../../src/desktop/messages.ts';

/** Everything the screens show, fed by the extension's events. */
export interface View {
  linkUp: boolean;
  state: Omit<DesktopEventOf<'state'>, 'ev'>;
  channels: ChannelView[];
  members: MemberView[];
  level: { rmsDbfs: number; transmitting: boolean };
  stats: Omit<DesktopEventOf<'stats'>, 'ev'> | null;
  devices: DeviceView[];
  backend: string;
  audioError: string | null;
}

export const [view, setView] = createStore<View>({
  linkUp: false,
  state: {
    connection: 'disconnected',
    server: null,
    userId: null,
    nickname: null,
    isAdmin: false,
    channelId: null,
    muted: false,
    deaf: false,
    error: null,
    retryInMs: null,
  },
  channels: [],
  members: [],
  level: { rmsDbfs: -120, transmitting: false },
  stats: null,
  devices: [],
  backend: '',
  audioError: null,
});

export function apply(e: DesktopEvent): void {
  switch (e.ev) {
    case 'state': {
      const { ev: _ev, ...s } = e;
      setView('state', s);
      break;
    }
    case 'channels':
      setView('channels', e.channels);
      break;
    case 'members':
      setView('members', e.members);
      break;
    case 'speaking':
      setView(
        'members',
        produce((ms) => {
          const m = ms.find((x) => x.userId === e.userId);
          if (m) m.speaking = e.speaking;
        }),
      );
      break;
    case 'level':
      setView('level', { rmsDbfs: e.rmsDbfs, transmitting: e.transmitting });
      break;
    case 'stats': {
      const { ev: _ev, ...s } = e;
      setView('stats', s);
      break;
    }
    case 'devices':
      setView({ devices: e.devices, backend: e.backend });
      break;
    case 'audioError':
      setView('audioError', audioErrorText(e));
      break;
    case 'reply':
      break;
  }
}

/** What a person can do about a sound problem. */
function audioErrorText(e: DesktopEventOf<'audioError'>): string {
  const device = e.which === 'input' ? 'microphone' : e.which === 'output' ? 'speaker' : 'sound system';
  switch (e.error.code) {
    case 'DEVICE_FAILED':
      return `The ${device} stopped working (${e.error.message}). Pick a device in Settings.`;
    case 'NO_DEVICE':
      return `No ${device} found (${e.error.message}). Plug one in, then pick it in Settings.`;
    case 'DEVICES_STUCK':
      return 'Sound devices that stopped responding hold what the app may use for sound. Plug them back in, or restart the app.';
    default:
      return `${device.charAt(0).toUpperCase()}${device.slice(1)}: ${e.error.message}`;
  }
}
