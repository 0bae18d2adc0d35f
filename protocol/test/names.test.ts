import { createRequire } from 'node:module';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ChannelName, Nickname, StatusText, nicknameKey, normalizeName } from '../src/index.js';

const ok = (schema: { safeParse(v: unknown): { success: boolean } }, s: string) =>
  schema.safeParse(s).success;

/** The confusables table itself (source → prototype), to draw look-alikes from. */
const table = createRequire(import.meta.url)('unhomoglyph/data.json') as Record<string, string>;
/** For each ASCII lowercase letter, every other code point whose prototype is that letter alone. */
const lookalikes = new Map<string, string[]>();
for (const [src, proto] of Object.entries(table)) {
  if (/^[a-z]$/.test(proto) && src !== proto && src === src.toLowerCase() && /^\p{L}$/u.test(src)) {
    lookalikes.set(proto, [...(lookalikes.get(proto) ?? []), src]);
  }
}

/**
 * Reference model of the character rules, one code point at a time, written from the categories
 * (not the implementation's regexes): is this code point allowed anywhere in a name?
 */
function refAllowed(cp: number): boolean {
  const ch = String.fromCodePoint(cp);
  if (cp === 0x200d) return true; // decided by context (emoji ZWJ), not alone
  if (/^[\p{Cc}\p{Cf}\p{Cn}\p{Cs}\p{Co}\p{Zl}\p{Zp}]$/u.test(ch)) return false;
  if (/^\p{White_Space}$/u.test(ch)) return cp === 0x20;
  if (/^\p{Default_Ignorable_Code_Point}$/u.test(ch))
    return (cp >= 0xfe00 && cp <= 0xfe0f) || (cp >= 0xe0100 && cp <= 0xe01ef);
  return true;
}

describe('name rules', () => {
  it.each([
    ['NUL', 'a\u0000b'],
    ['an escape sequence', '\u001b[31mred'],
    ['a newline', 'two\nlines'],
    ['a right-to-left override', 'abc\u202Etxt.exe'],
    ['zero-width characters only', '\u200B\u200B\u200B'],
    ['Hangul fillers only', '\u3164\u3164'],
    ['a Hangul filler inside', 'ab\u3164cd'],
    ['braille blanks only', '\u2800\u2800'],
    ['a lone surrogate', 'ab\uD800cd'],
    ['a private-use character', 'ab\uE000'],
    ['an unassigned code point', 'ab\u0378'],
    ['a no-break space', 'a\u00A0b'],
    ['a line separator', 'a\u2028b'],
    ['a soft hyphen', 'ad\u00ADmin'],
    ['a leading combining mark', '\u0301abc'],
    ['a stack of combining marks', 'a\u0301\u0302\u0303\u0304\u0305\u0306'],
  ])('rejects %s in channel names, nicknames and status', (_what, s) => {
    expect(ok(ChannelName, s)).toBe(false);
    expect(ok(Nickname, s)).toBe(false);
    expect(ok(StatusText, s)).toBe(false);
  });

  it.each([['Zoë'], ['José'], ['日本語'], ['नमस्ते'], ['Ωmega 2'], ['a.b_c-d']])(
    'accepts the nickname %s',
    (s) => {
      expect(Nickname.parse(s)).toBe(s.normalize('NFC'));
    },
  );

  it('accepts emoji with variation selectors and ZWJ sequences in channel names', () => {
    expect(ChannelName.parse('❤️ family 👨‍👩‍👧')).toBe('❤️ family 👨‍👩‍👧');
    expect(ok(ChannelName, 'a\u200Db')).toBe(false); // a joiner between letters is not an emoji
  });

  it('normalises: NFC, trimmed, single spaces', () => {
    expect(ChannelName.parse('  Cafe\u0301   corner ')).toBe('Café corner');
    expect(normalizeName('a  \u0020b')).toBe('a b');
    expect(ok(ChannelName, '   ')).toBe(false);
    expect(StatusText.parse('')).toBe('');
  });

  it('property: an accepted name contains no code point the reference model forbids', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), (s) => {
        const r = ChannelName.safeParse(s);
        if (!r.success) return;
        for (const ch of r.data)
          expect(refAllowed(ch.codePointAt(0)!), `U+${ch.codePointAt(0)!.toString(16)}`).toBe(true);
        expect(/[\p{L}\p{N}\p{P}\p{S}]/u.test(r.data)).toBe(true);
      }),
      { numRuns: 3000, seed: 7 },
    );
  });

  it('property: one forbidden code point inside a valid name makes it invalid', () => {
    const forbidden = fc
      .integer({ min: 0, max: 0x10ffff })
      .filter((cp) => !refAllowed(cp) && !(cp >= 0xd800 && cp <= 0xdfff) && cp !== 0x20);
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z]{2,20}$/), forbidden, fc.nat(), (name, cp, at) => {
        const i = 1 + (at % (name.length - 1)); // strictly inside: trimming cannot remove it
        const bad = name.slice(0, i) + String.fromCodePoint(cp) + name.slice(i);
        expect(ok(ChannelName, bad)).toBe(false);
        expect(ok(Nickname, bad)).toBe(false);
      }),
      { numRuns: 2000, seed: 11 },
    );
  });
});

describe('nickname skeleton (UTS #39)', () => {
  it('gives look-alikes one key and different names different keys', () => {
    const k = nicknameKey('admin');
    for (const s of ['аdmin', 'ａｄｍｉｎ', 'Admin', 'ADMIN', 'adm\u0456n', 'ɑdmin', '𝐚𝐝𝐦𝐢𝐧', 'ＡＤＭＩＮ'])
      expect(nicknameKey(s)).toBe(k);
    expect(nicknameKey('rn')).toBe(nicknameKey('m'));
    // A variation selector is a valid (invisible) mark in a nickname: it must not make a new key.
    expect(Nickname.parse('admin\uFE0F')).toBe('admin\uFE0F');
    expect(nicknameKey('admin\uFE0F')).toBe(k);
    expect(nicknameKey('ad\uFE00min')).toBe(k);
    for (const s of ['admim', 'admins', 'badmin', 'a dmin']) expect(nicknameKey(s)).not.toBe(k);
  });

  it('the table has look-alikes for most Latin letters', () => {
    expect(lookalikes.size).toBeGreaterThanOrEqual(20);
  });

  it('property: swapping letters for confusables, changing case or composition keeps the key', () => {
    const letters = [...lookalikes.keys()].join('');
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom(...letters), { minLength: 2, maxLength: 16 }),
        fc.array(fc.nat()),
        (chars, picks) => {
          const plain = chars.join('');
          const disguised = chars
            .map((c, i) => {
              const alts = lookalikes.get(c)!;
              const p = picks[i];
              return p === undefined || p % 3 === 0 ? c : alts[p % alts.length]!;
            })
            .join('');
          expect(nicknameKey(disguised)).toBe(nicknameKey(plain));
          expect(nicknameKey(plain.toUpperCase())).toBe(nicknameKey(plain));
          expect(nicknameKey(disguised.normalize('NFD'))).toBe(nicknameKey(disguised.normalize('NFC')));
        },
      ),
      { numRuns: 1000, seed: 3 },
    );
  });
});
