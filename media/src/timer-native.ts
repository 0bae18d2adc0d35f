import { builtAddonUrl, loadAddon } from './native-addon.js';

declare const handleBrand: unique symbol;
/** An addon timer (an external value: only the addon reads it). */
export type NativeTimerHandle = { readonly [handleBrand]: true };

/** The addon's exports (see media/native/voice_timer.c). */
export interface VoiceTimerAddon {
  /** A disarmed one-shot timer whose fires call `callback` on the main loop. */
  create(callback: () => void): NativeTimerHandle;
  /** Fires once, `ms` from now (fractions of a millisecond count); re-arming replaces the deadline. */
  arm(handle: NativeTimerHandle, ms: number): void;
  /** No fire until armed again (one already pending in the loop is dropped too). */
  disarm(handle: NativeTimerHandle): void;
  /** `on`: the timer alone does not keep the process alive. */
  unref(handle: NativeTimerHandle, on: boolean): void;
  /** Idempotent; the callback is never called after it. */
  close(handle: NativeTimerHandle): void;
}

/** Where the build script puts the addon (relative to media/src and media/dist alike). */
export const TIMER_ADDON_PATH = builtAddonUrl('voice_timer');

/**
 * A microsecond one-shot timer on the main event loop: a timerfd(2) the loop's epoll watches
 * (media/native/voice_timer.c, built by scripts/build-native.mjs). Null when the addon is not built
 * or not on Linux (never throws): the clock then wakes by its metronome thread.
 */
export function loadNativeTimer(path: URL = TIMER_ADDON_PATH): VoiceTimerAddon | null {
  if (process.platform !== 'linux') return null;
  return loadAddon<VoiceTimerAddon>(path, (mod) => {
    for (const f of ['create', 'arm', 'disarm', 'unref', 'close'] as const)
      if (typeof mod[f] !== 'function') return false;
    // Self-check: one can be made, armed, disarmed and closed twice.
    const t = mod.create!(() => undefined);
    mod.arm!(t, 1000);
    mod.disarm!(t);
    mod.close!(t);
    mod.close!(t);
    return true;
  });
}
