import { DEFAULT_VOICE_SETTINGS, VoiceSettings } from '@voice/protocol';
import type { Page } from './types.js';

/** The key that makes names unique and searchable regardless of case and Unicode composition. */
export const foldKey = (s: string): string => s.normalize('NFC').toLowerCase();

export function checkPage(page: Page): void {
  if (!Number.isSafeInteger(page.limit) || page.limit < 0)
    throw new TypeError(`page.limit must be a non-negative integer`);
  if (!Number.isSafeInteger(page.offset) || page.offset < 0)
    throw new TypeError(`page.offset must be a non-negative integer`);
}

/** Stored voice settings, or the defaults when what is stored is corrupt or out of bounds. */
export function parseVoice(text: string): VoiceSettings {
  try {
    const parsed = VoiceSettings.safeParse(JSON.parse(text));
    if (parsed.success) return parsed.data;
  } catch {
    // fall through: corrupt JSON
  }
  return { ...DEFAULT_VOICE_SETTINGS };
}
