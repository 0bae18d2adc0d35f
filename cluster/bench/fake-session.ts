import type { UserId } from '@voice/protocol';
import type { Session } from '../src/app/sessions.js';

/** Only the fields the channel core reads: this seam is the session layer, not audio. */
export function fakeSession(i: number, streams = 1, red = false): Session {
  return {
    streams,
    red,
    userId: `u_bench${String(i).padStart(7, '0')}` as UserId,
    selfMute: false,
    selfDeaf: false,
    serverMute: false,
    volumes: new Map(),
  } as unknown as Session;
}
