import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { RestClient } from '../../client/src/index.js';
import { startRedis, type TestRedis } from '../../test-support/redis.js';
import { freePort } from '../../test-support/server.js';

const ROOT = join(import.meta.dirname, '..', '..');
const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

describe('npm run cluster (deploy/cluster/cli.ts)', () => {
  it(
    '--config: every node starts from that JSON configuration; Ctrl-C stops the cluster',
    { timeout: 60_000 },
    async () => {
      const redis: TestRedis = await startRedis();
      cleanup.push(() => redis.stop());
      const dir = mkdtempSync(join(tmpdir(), 'voice-cli-'));
      cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
      const file = join(dir, 'base.json');
      // A limit a client can see: one channel on the whole server.
      writeFileSync(file, JSON.stringify({ limits: { maxChannels: 1 }, logLevel: 'warn' }));
      const base = await freePort();
      const child = spawn(
        process.execPath,
        [
          '--conditions=source',
          '--import',
          'tsx',
          'deploy/cluster/cli.ts',
          '--nodes',
          '1',
          '--base-port',
          String(base),
          '--redis-url',
          redis.url,
          '--config',
          file,
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      cleanup.push(() => child.kill('SIGKILL'));
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      await expect.poll(() => out, { timeout: 30_000, interval: 100 }).toContain('cluster up');
      expect(out).toContain(`node-1: http://127.0.0.1:${base}`);

      const rest = new RestClient(`http://127.0.0.1:${base}`);
      await rest.login('cli-owner');
      await expect(rest.createChannel({ name: 'first' })).resolves.toMatchObject({ name: 'first' });
      // The configured cap, not the default of 1,000 (nor the 10 per user): the second is refused.
      const refused = await rest.createChannel({ name: 'second' }).then(
        () => null,
        (e: unknown) => (e as { code?: string }).code,
      );
      expect(refused).toBe('FORBIDDEN'); // ChannelLimitError: "at most 1 channels"
      const listed = await rest.call<{ total: number }>('GET', '/api/v1/channels');
      expect(listed.total).toBe(1);

      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(out).toContain('stopping the cluster');
    },
  );
});
