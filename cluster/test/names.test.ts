import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../../test-support/server.js';
import { errorCode as code } from '../../test-support/errors.js';

/** Names through the real server: REST log-in, WebSocket channel and profile requests. */
let srv: TestServer;
beforeAll(async () => {
  srv = await startTestServer({ limits: { loginBurst: 100 } });
});
afterAll(async () => {
  await srv.stop();
});

const HOSTILE = [
  'a\u0000b',
  '\u001b[2Jwiped',
  'two\nlines',
  'abc\u202Etxt.exe',
  '\u200B\u200B\u200B',
  '\u3164\u3164',
];
/** JSON can carry a lone surrogate (`"\ud800"`); msgpack cannot (its encoder writes U+FFFD). */
const LONE_SURROGATE = 'ab\uD800cd';

describe('names at the server', () => {
  it('refuses hostile nicknames at log-in and rename, and hostile channel names', async () => {
    for (const n of [...HOSTILE, LONE_SURROGATE])
      expect(await code(srv.rest().login(n)), JSON.stringify(n)).toBe('INVALID_FIELD');
    const { ws } = await srv.user('plain-user');
    for (const n of HOSTILE) {
      expect(await code(ws.request('profile.update', { nickname: n })), JSON.stringify(n)).toBe(
        'INVALID_FIELD',
      );
      expect(await code(ws.request('channel.create', { name: n })), JSON.stringify(n)).toBe('INVALID_FIELD');
    }
    const { channels } = await ws.request('channel.list', {});
    expect(channels).toEqual([]);
  });

  it("refuses a look-alike of a connected user's nickname, at log-in and on rename", async () => {
    await srv.user('admin');
    for (const n of ['аdmin', 'ａｄｍｉｎ', 'ADMIN', 'adm\u0456n'])
      expect(await code(srv.rest().login(n)), n).toBe('NICKNAME_TAKEN');
    const other = await srv.user('someone');
    expect(await code(other.ws.request('profile.update', { nickname: 'аdmin' }))).toBe('NICKNAME_TAKEN');
    // Not a look-alike: accepted, and the old nickname is free again.
    const r = await other.ws.request('profile.update', { nickname: 'admiral' });
    expect(r.user.nickname).toBe('admiral');
    const again = await srv.rest().login('ѕomeone'); // Cyrillic ѕ: free now that "someone" is gone
    expect(again.user.nickname).toBe('ѕomeone');
  });
});
