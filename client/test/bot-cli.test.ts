import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readWav } from '@voice/media';
import { medianToneDbfs } from '../../test-support/audio.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

const CLI = join(import.meta.dirname, '../src/bot-cli.ts');

let srv: TestServer;
let dir: string;
beforeEach(async () => {
  srv = await startTestServer();
  dir = mkdtempSync(join(tmpdir(), 'voice-bot-cli-'));
});
afterEach(async () => {
  await srv.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  lines: Record<string, unknown>[];
  stderr: string;
}

/** Runs `voice-bot` as a user would (its own Node process) to its exit. */
function bot(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', CLI, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const lines = out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      resolve({ code, lines, stderr });
    });
  });
}

describe('voice-bot (client/src/bot-cli.ts)', () => {
  it('two bots in one channel hear each other; the recording and the stats lines say so', async () => {
    const wav = join(dir, 'heard.wav');
    const common = ['--server', srv.url, '--channel', 'Bots', '--stats-ms', '500', '--heartbeat-ms', '500'];
    const speaker = bot([...common, '--nick', 'cli-speaker', '--create', '--tone', '440', '--seconds', '5']);
    // The listener joins the channel the speaker creates.
    await expect.poll(() => srv.voice.channelStats().length, { timeout: 10_000 }).toBe(1);
    const listener = bot([
      ...common,
      '--nick',
      'cli-ear',
      '--tone',
      '1100',
      '--record',
      wav,
      '--seconds',
      '3',
    ]);
    const [s, l] = await Promise.all([speaker, listener]);
    expect(s.code, s.stderr).toBe(0);
    expect(l.code, l.stderr).toBe(0);
    const last = l.lines.at(-1)!;
    // The CLI asks for streams by default: the server grants 4, so the speaker comes as STREAM packets.
    expect(last).toMatchObject({ final: true, transport: 'udp', ready: true, lost: 0, streams: 4 });
    expect(last.sent as number).toBeGreaterThan(50);
    expect(last.received as number).toBeGreaterThan(50);
    expect(typeof last.rttMs).toBe('number');
    expect(l.lines.length).toBeGreaterThanOrEqual(4); // a line every 500 ms, then the final one
    expect(s.lines.at(-1)).toMatchObject({ final: true, transport: 'udp' });
    expect(s.lines.at(-1)!.received as number).toBeGreaterThan(50);
    // The listener's WAV holds the speaker's tone at its level, and not its own.
    const { samples, sampleRate } = await readWav(wav);
    expect(sampleRate).toBe(48_000);
    expect(medianToneDbfs(samples, 440, 1000)).toBeGreaterThan(-23);
    expect(medianToneDbfs(samples, 440, 1000)).toBeLessThan(-17);
    expect(medianToneDbfs(samples, 1100, 1000)).toBeLessThan(-50);
    expect(l.stderr).toMatch(/wrote \d+\.\d\d s to /);
  });

  it('refuses bad arguments with usage and exit status 2, before connecting', async () => {
    // Four of the checks (each case is a Node process start, about 1.5 s of CPU here).
    const cases = [
      ['--server', srv.url, '--channel', 'X'],
      ['--server', srv.url, '--nick', 'n', '--channel', 'X', '--tone', '440', '--wav', 'a.wav'],
      ['--server', srv.url, '--nick', 'n', '--channel', 'X', '--bogus'],
      ['--server', srv.url, '--nick', 'n', '--channel', 'X', '--streams', '9'],
    ];
    for (const args of cases) {
      const r = await bot(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^voice-bot: .+\nusage: voice-bot/);
    }
    expect(srv.sessions.size).toBe(0);
  });
});
