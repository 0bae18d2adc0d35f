/**
 * Crash-test writer: opens the SqliteStore at argv[2] and writes as fast as it can until killed,
 * printing each id on stdout once its write has resolved (the acknowledgement). Stdout is a pipe,
 * which Node writes synchronously on Linux, so every printed id was acknowledged before printing.
 *
 * Run with: node --conditions=source --import tsx cluster/test/helpers/store-crash-child.ts <db>
 */
import { DEFAULT_VOICE_SETTINGS } from '@voice/protocol';
import { hashToken, newChannelId, newToken, newUserId } from '../../src/state/passwords.js';
import { SqliteStore } from '../../src/state/sqlite-store.js';

async function main(path: string): Promise<never> {
  const store = SqliteStore.open(path);
  const owner = newUserId();
  for (let i = 0; ; i++) {
    const now = Date.now();
    if (i % 2 === 0) {
      const id = newChannelId();
      await store.createChannel({
        id,
        name: `crash ${process.pid} ${i}`,
        userLimit: i % 10,
        ownerId: owner,
        passwordHash: null,
        voice: DEFAULT_VOICE_SETTINGS,
        createdAt: now,
        updatedAt: now,
      });
      if (i % 6 === 0) await store.updateChannel(id, { userLimit: 99, updatedAt: now + 1 });
      process.stdout.write(`${id}\n`);
    } else {
      const id = newUserId();
      await store.createUser(
        { id, nickname: `user ${i}`, status: 'x'.repeat(i % 128), createdAt: now, lastSeenAt: now },
        hashToken(newToken()),
      );
      process.stdout.write(`${id}\n`);
    }
  }
}

const path = process.argv[2];
if (path === undefined) {
  process.stderr.write('usage: store-crash-child <db path>\n');
  process.exit(2);
}
main(path).catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
