import { z } from 'zod';
import unhomoglyph from 'unhomoglyph';

/**
 * Rules for the names people show each other (nicknames, channel names, status text). The server
 * and every client validate with these, so a client can tell the user before it sends.
 *
 * A name is NFC-normalised, trimmed, and runs of spaces are collapsed to one. It must then not
 * contain: control (Cc), format (Cf: bidi overrides, zero-width characters), unassigned (Cn),
 * surrogate (Cs, i.e. lone halves of a pair), private-use (Co) characters, line or paragraph
 * separators, whitespace other than U+0020, or default-ignorable code points (Hangul fillers and
 * the like). Exceptions kept so that emoji work: variation selectors, and U+200D ZERO WIDTH JOINER
 * between two pictographs. It must hold at least one visible character (a letter, digit,
 * punctuation or symbol other than U+2800 BRAILLE PATTERN BLANK), may not start with a combining
 * mark, and may not stack more than 4 combining marks on one character.
 */

/** Emoji ZWJ sequences (👨‍👩‍👧): a joiner after a pictograph (optionally with VS16 or a skin tone) and before one. */
const EMOJI_ZWJ =
  /(?<=\p{Extended_Pictographic}(?:\u{FE0F}|\p{Emoji_Modifier})?)\u200D(?=\p{Extended_Pictographic})/gu;
const FORBIDDEN = /[\p{Cc}\p{Cf}\p{Cn}\p{Cs}\p{Co}\p{Zl}\p{Zp}]/u;
const VARIATION_SELECTOR = /[\u{FE00}-\u{FE0F}\u{E0100}-\u{E01EF}]/u;
const IGNORABLE = /\p{Default_Ignorable_Code_Point}/u;
const IGNORABLES = /\p{Default_Ignorable_Code_Point}/gu;
const OTHER_SPACE = /(?! )\p{White_Space}/u;
const VISIBLE = /(?!\u2800)(?!\p{Default_Ignorable_Code_Point})[\p{L}\p{N}\p{P}\p{S}]/u;
const LEADING_MARK = /^\p{M}/u;
const MARK_STACK = /\p{M}{5}/u;

/** NFC, trimmed, single spaces: the form in which names are stored and compared. */
export function normalizeName(s: string): string {
  return s.normalize('NFC').trim().replace(/ {2,}/g, ' ');
}

/** Why `s` (already normalised) is not an acceptable name, or null when it is. Empty passes. */
export function nameProblem(s: string): string | null {
  const rest = s.replace(EMOJI_ZWJ, '');
  const bad = FORBIDDEN.exec(rest);
  if (bad)
    return `U+${codePointHex(bad[0])} (control, format, unassigned, surrogate or private-use) is not allowed`;
  for (const ch of rest) {
    if (IGNORABLE.test(ch) && !VARIATION_SELECTOR.test(ch))
      return `U+${codePointHex(ch)} (an invisible character) is not allowed`;
  }
  const space = OTHER_SPACE.exec(rest);
  if (space) return `U+${codePointHex(space[0])}: the only space allowed is U+0020`;
  if (s !== '' && !VISIBLE.test(rest)) return 'must contain a visible character';
  if (LEADING_MARK.test(rest)) return 'may not start with a combining mark';
  if (MARK_STACK.test(rest)) return 'at most 4 combining marks on one character';
  return null;
}

function codePointHex(ch: string): string {
  return (ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0');
}

/** A zod schema for a name of `min`..`max` UTF-16 units after normalisation. */
function nameSchema(min: number, max: number) {
  return z
    .string()
    .transform(normalizeName)
    .pipe(
      z
        .string()
        .min(min, `at least ${min} characters`)
        .max(max, `at most ${max} characters`)
        .superRefine((s, ctx) => {
          const problem = nameProblem(s);
          if (problem !== null) ctx.addIssue({ code: 'custom', message: problem });
        }),
    );
}

/** Letters (with their combining marks), digits, space, `_`, `.` and `-`. */
export const NICKNAME_RE = /^[\p{L}\p{M}\p{N}_.\- ]+$/u;
export const Nickname = nameSchema(2, 32).pipe(
  z.string().regex(NICKNAME_RE, 'letters, digits, space, _ . - only'),
);
export const ChannelName = nameSchema(1, 64);
export const StatusText = nameSchema(0, 128);

/**
 * The key under which a nickname is unique: the UTS #39 confusable skeleton of its case-folded
 * form, so `аdmin` (Cyrillic а), `ＡＤＭＩＮ` (full-width), `𝐚𝐝𝐦𝐢𝐧`, `Admin` and `admin` share one key.
 * The prototype table is Unicode's confusables.txt as shipped by the `unhomoglyph` package. The
 * table maps some compatibility characters (full-width, mathematical letters) only partly, so
 * the skeleton is taken, NFKC-folded and lower-cased, and taken again. Case folding comes first
 * (UTS #39's advice for case-insensitive identifiers), so a capital that looks like a different
 * lower-case letter (`I` and `l`) is not caught. For comparison only, never for display (`m`
 * becomes `rn`).
 */
export function nicknameKey(nickname: string): string {
  const once = skeleton(nickname.toLowerCase());
  return skeleton(once.normalize('NFKC').toLowerCase());
}

/** UTS #39 skeleton: NFD, default-ignorables removed (variation selectors pass the name rules), prototypes, NFD. */
function skeleton(s: string): string {
  return unhomoglyph(s.normalize('NFD').replace(IGNORABLES, '')).normalize('NFD');
}
