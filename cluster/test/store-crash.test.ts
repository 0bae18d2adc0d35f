import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_VOICE_SETTINGS, asChannelId, asUserId } from '@voice/protocol';
import { hashToken, newChannelId, newToken, newUserId } from '../src/state/passwords.js';
import { SqliteStore } from '../src/state/sqlite-store.js';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./helpers/store-crash-child.ts', import.meta.url));
const MIN_ACKS = 300;
const ROUNDS = 3;

/**
 * Runs the writer child on `dbPath`, SIGKILLs it once `minAcks` writes were acknowledged, and
 * returns every id it acknowledged (a line cut short by the kill is not an acknowledgement).
 */
function writeUntilKilled(dbPath: string, minAcks: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CHILD, dbPath], {
      cwd: REPO_ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked: string[] = [];
    let pending = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`only ${acked.length} acks before the deadline; stderr: ${stderr}`));
    }, 8_000);
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      const lines = (pending + chunk).split('\n');
      pending = lines.pop() ?? '';
      acked.push(...lines);
      if (!killed && acked.length >= minAcks) {
        killed = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (killed && signal === 'SIGKILL') resolve(acked);
      else reject(new Error(`writer ended by itself (code ${code}, signal ${signal}); stderr: ${stderr}`));
    });
  });
}

/**
 * What these tests prove, and what they do not. kill -9 ends the process, not the machine: every
 * write() the process made is in the kernel's page cache and reaches the file whatever SQLite's
 * `synchronous` setting (the kill test below passes with `synchronous = OFF`). So it proves crash
 * safety of the process: a transaction is all or nothing, an acknowledged write is never lost when
 * the server dies, and the file is never corrupt. Durability against power loss or a kernel panic
 * needs each commit fsynced before it is acknowledged; that is `journal_mode = WAL` with
 * `synchronous = FULL`, asserted here on the store's own connection. Proving it end to end would
 * need the disk itself cut under the writer (a dm-flakey device dropping writes, or a VM killed
 * without flushing), which this machine cannot do in a test (ARCHITECTURE.md, "Store durability").
 */
describe('SqliteStore durability settings', () => {
  it('fsyncs every commit: WAL with synchronous = FULL on the connection it writes with', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'voice-durable-'));
    const store = SqliteStore.open(join(dir, 'state.sqlite'));
    try {
      expect(store.durability()).toEqual({ journalMode: 'wal', synchronous: 'FULL' });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SqliteStore under kill -9 (crash safety of the process, not power-loss durability)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'voice-crash-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('never loses an acknowledged write nor corrupts the file', { timeout: 30_000 }, async () => {
    const dbPath = join(dir, 'state.sqlite');
    const acked: string[] = [];

    for (let round = 0; round < ROUNDS; round++) {
      const ids = await writeUntilKilled(dbPath, MIN_ACKS);
      expect(ids.length).toBeGreaterThanOrEqual(MIN_ACKS);
      acked.push(...ids);

      // The file as the crash left it (hot WAL included): SQLite's own consistency check.
      const raw = new Database(dbPath);
      try {
        expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
        expect(raw.pragma('foreign_key_check')).toEqual([]);
      } finally {
        raw.close();
      }

      const store = SqliteStore.open(dbPath);
      try {
        for (const id of acked) {
          if (id.startsWith('c_')) {
            const ch = await store.getChannel(asChannelId(id));
            expect(ch, `acked channel ${id}`).not.toBeNull();
            expect(ch!.voice).toEqual(DEFAULT_VOICE_SETTINGS);
          } else {
            expect(id, 'an ack line').toMatch(/^u_/);
            expect(await store.getUser(asUserId(id)), `acked user ${id}`).not.toBeNull();
          }
        }
        const channels = acked.filter((id) => id.startsWith('c_')).length;
        expect((await store.listChannels({}, { limit: 1, offset: 0 })).total).toBeGreaterThanOrEqual(
          channels,
        );

        // Still writable after the crash.
        const now = Date.now();
        const user = {
          id: newUserId(),
          nickname: `after ${round}`,
          status: '',
          createdAt: now,
          lastSeenAt: now,
        };
        const token = hashToken(newToken());
        await store.createUser(user, token);
        const channel = {
          id: newChannelId(),
          name: `after crash ${round}`,
          userLimit: 0,
          ownerId: user.id,
          passwordHash: null,
          voice: DEFAULT_VOICE_SETTINGS,
          createdAt: now,
          updatedAt: now,
        };
        await store.createChannel(channel);
        expect(await store.getUserByTokenHash(token)).toEqual(user);
        expect(await store.getChannel(channel.id)).toEqual(channel);
      } finally {
        await store.close();
      }
    }
    expect(acked.length).toBeGreaterThanOrEqual(ROUNDS * MIN_ACKS);
  });
});
