import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { build } from 'vite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOpus, decodeWav, encodeWav, sineInt16, type OpusFactory } from '@voice/media';
import { ToneSource, VoiceClient } from '../src/index.js';
import { toneLevelDbfs } from '../../test-support/levels.js';
import { ADMIN_TOKEN, freePort } from '../../test-support/server.js';
import { startServerProcess, stopServerProcess } from '../../test-support/server-process.js';

/**
 * The desktop app end to end: a real server, the real extension (audio from and to WAV files), the
 * real UI (built with Vite) in Debian's chromium. One scenario, in order, as a person would use it.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const APP = join(ROOT, 'client', 'app');
// The README's screenshots: refreshed with UPDATE_SCREENSHOTS=1; otherwise taken into the test's
// temporary directory, so a test run never changes tracked files.
const UPDATE_SHOTS = process.env.UPDATE_SCREENSHOTS === '1';
let SHOTS = join(ROOT, 'docs', 'screenshots');
const MIC_HZ = 1000;
const BOT_HZ = 440;

let opus: OpusFactory;
let server: ChildProcess;
let serverUrl: string;
let port: number;
let dataDir: string;
let tmp: string;
let ext: ChildProcess;
let extUrl: string;
let browser: Browser;
let page: Page;
const bots: VoiceClient[] = [];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const medianToneDbfs = (s: Int16Array, hz: number, ms: number): number => toneLevelDbfs(s, hz, ms);

/**
 * Presses Tab through the page and returns the visible controls focus never reached (radios of one
 * group count as one stop: arrows move inside a group). In-page code is a string: this file is
 * compiled without the DOM library.
 */
async function controlsTabMisses(): Promise<{ controls: number; missed: string[] }> {
  const n = await page.evaluate<number>(`(() => {
    document.activeElement?.blur();
    for (const e of document.querySelectorAll('[data-tab-probe]')) e.removeAttribute('data-tab-probe');
    const els = [...document.querySelectorAll('button, input, select, textarea, a[href]')].filter(
      (e) => !e.disabled && e.offsetParent !== null,
    );
    els.forEach((e, i) =>
      e.setAttribute('data-tab-probe', e.type === 'radio' && e.name ? 'radio:' + e.name : String(i)),
    );
    return els.length;
  })()`);
  const seen = new Set<string>();
  for (let i = 0; i < n + 2; i++) {
    await page.keyboard.press('Tab');
    const probe = await page.evaluate<string | null>(
      `document.activeElement?.getAttribute('data-tab-probe') ?? null`,
    );
    if (probe) seen.add(probe);
  }
  const missed = await page.evaluate<string[]>(`(() => {
    const reached = ${JSON.stringify([...seen])};
    return [...document.querySelectorAll('[data-tab-probe]')]
      .filter((e) => !reached.includes(e.getAttribute('data-tab-probe')))
      .map((e) => e.getAttribute('data-testid') ?? e.getAttribute('aria-label') ?? e.outerHTML.slice(0, 80));
  })()`);
  return { controls: n, missed };
}

/** The number a connection figure shows ("Ping 0.4 ms" -> 0.4), NaN for "—". */
async function figure(testId: string): Promise<number> {
  const m = /(-?\d+(?:\.\d+)?)/.exec((await page.getByTestId(testId).textContent()) ?? '');
  return m ? Number(m[1]) : Number.NaN;
}

const channelButton = (name: string) => page.locator(`[data-testid=channel][data-name="${name}"]`);
const memberRow = (nickname: string) => page.locator(`[data-testid=member][data-nickname="${nickname}"]`);

/** What the extension's "speaker" played so far (its streamed WAV). */
function played(): Int16Array {
  return decodeWav(readFileSync(join(tmp, 'speaker.wav'))).samples;
}

async function startExtension(): Promise<void> {
  ext = spawn(
    process.execPath,
    [
      '--conditions=source',
      '--import',
      'tsx',
      join(ROOT, 'client', 'src', 'desktop', 'main.ts'),
      '--dev',
      '--static',
      join(APP, 'resources'),
      '--audio',
      'file',
      '--in',
      join(tmp, 'mic.wav'),
      '--out',
      join(tmp, 'speaker.wav'),
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const first = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: ext.stdout! });
    rl.once('line', resolve);
    ext.once('exit', (code) => reject(new Error(`extension exited with ${code}`)));
  });
  extUrl = (JSON.parse(first) as { url: string }).url;
}

const startServer = (): Promise<ChildProcess> => startServerProcess(dataDir, port, 'inherit');
const stopServer = (): Promise<void> => stopServerProcess(server);

beforeAll(async () => {
  opus = await createOpus();
  tmp = mkdtempSync(join(tmpdir(), 'voice-desktop-'));
  if (!UPDATE_SHOTS) SHOTS = tmp;
  dataDir = mkdtempSync(join(tmpdir(), 'voice-desktop-data-'));
  // The "microphone": a steady 1 kHz tone at -20 dBFS, well above the voice threshold.
  writeFileSync(join(tmp, 'mic.wav'), encodeWav(sineInt16(48_000 * 4, MIC_HZ, -20)));
  await build({ configFile: join(APP, 'vite.config.ts'), logLevel: 'error' });
  port = await freePort();
  serverUrl = `http://127.0.0.1:${port}`;
  server = await startServer();
  await startExtension();
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(15_000);
}, 90_000);

afterAll(async () => {
  for (const b of bots) await b.close();
  await browser?.close();
  if (ext && ext.exitCode === null) {
    const gone = new Promise((r) => ext.once('exit', r));
    ext.kill('SIGTERM');
    await gone;
  }
  if (server) await stopServer();
  rmSync(tmp, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}, 30_000);

describe('desktop app end to end (server, extension, UI in chromium)', () => {
  it('connect, create a channel, hear and see a bot, mute, volume, settings, server restart', async () => {
    await page.goto(extUrl);
    await page.getByTestId('nickname').waitFor();

    // A remembered microphone that is gone (unplugged since last time) is said, shown as not found,
    // and picking another device ends the message.
    await page.evaluate(
      `localStorage.setItem('voice.settings.v1', JSON.stringify({ inputDeviceId: 7, inputDeviceName: 'USB headset' }))`,
    );
    await page.reload();
    await expect.poll(() => page.getByTestId('audio-banner').textContent()).toMatch(/No microphone found/);
    await page.getByRole('button', { name: 'Settings', exact: true }).click();
    expect(await page.getByTestId('input-device').inputValue()).toBe('7');
    expect(await page.locator('[data-testid=input-device] option:checked').textContent()).toBe(
      'USB headset (not found)',
    );
    await page.getByTestId('input-device').selectOption('-1');
    await page.getByTestId('audio-banner').waitFor({ state: 'detached' });
    await page.getByTestId('close-settings').click();
    await page.getByTestId('server').fill(`127.0.0.1:${port}`);
    await page.getByTestId('nickname').fill('alice');
    await page.screenshot({ path: join(SHOTS, 'connect.png') });

    // A wrong address gets a clear message, not a hang.
    await page.getByTestId('server').fill('127.0.0.1:1');
    await page.getByTestId('connect').click();
    await expect
      .poll(() => page.getByTestId('connect-error').textContent())
      .toMatch(/address does not look right|Nothing answers/);
    await page.getByTestId('server').fill(`127.0.0.1:${port}`);

    // A nickname someone connected already has: said so.
    const squatter = await VoiceClient.connect({ server: serverUrl, nickname: 'carol', opus });
    bots.push(squatter);
    await page.getByTestId('nickname').fill('carol');
    await page.getByTestId('connect').click();
    await expect
      .poll(() => page.getByTestId('connect-error').textContent())
      .toMatch(/already using that nickname/);
    await page.getByTestId('nickname').fill('alice');

    // Connect.
    await page.getByTestId('connect').click();
    await page.locator('[data-testid=connection][data-state=connected]').waitFor();

    // Create a channel; the app joins it.
    await page.getByTestId('new-channel').click();
    await page.getByTestId('channel-name').fill('Room');
    await page.getByTestId('channel-save').click();
    await expect.poll(() => page.getByTestId('channel-title').textContent()).toBe('Room');

    // A bot joins and speaks: the UI shows it, speaking.
    const bob = await VoiceClient.connect({
      server: serverUrl,
      nickname: 'bob',
      opus,
      channel: 'Room',
      record: true,
    });
    bots.push(bob);
    await bob.waitReady(5000);
    bob.startVoice(new ToneSource(BOT_HZ, -20));
    await page.locator('[data-testid=member][data-nickname=bob][data-speaking=true]').waitFor();
    expect(
      await page.locator('[data-testid=channel][data-name=Room] [data-testid=count]').textContent(),
    ).toBe('2');

    // What the extension's microphone sends reaches the bot at level...
    await sleep(1500);
    const before = medianToneDbfs(bob.recording().samples, MIC_HZ, 1000);
    expect(before).toBeGreaterThan(-24);
    expect(before).toBeLessThan(-16);
    // ...and muting stops it (the bot's recording), with the button showing the state.
    await page.getByTestId('mute').click();
    await expect.poll(() => page.getByTestId('mute').getAttribute('aria-pressed')).toBe('true');
    await sleep(1500);
    const after = medianToneDbfs(bob.recording().samples, MIC_HZ, 1000);
    expect(after).toBeLessThan(-60);
    await page.getByTestId('mute').click();
    // Unmuted, we show as speaking again (the server's voice detector starts afresh).
    await memberRow('alice').and(page.locator('[data-speaking=true]')).waitFor({ timeout: 3000 });

    // The bot's tone comes out of the extension's speaker at level; the volume slider halves it.
    await sleep(2000);
    const full = medianToneDbfs(played(), BOT_HZ, 1000);
    expect(full).toBeGreaterThan(-24);
    expect(full).toBeLessThan(-16);
    await page.locator('[data-testid=member][data-nickname=bob] [data-testid=volume]').fill('50');
    await sleep(2500);
    const half = medianToneDbfs(played(), BOT_HZ, 1000);
    console.log(`speaker: ${full.toFixed(1)} dBFS at 100 %, ${half.toFixed(1)} dBFS at 50 %`);
    expect(half - full).toBeGreaterThan(-7.5);
    expect(half - full).toBeLessThan(-4.5);

    // Connection figures are numbers once voice has run for seconds; nothing is lost on loopback.
    await expect.poll(() => figure('ping')).toBeGreaterThan(0);
    expect(await figure('ping')).toBeLessThan(500);
    expect(await figure('loss')).toBe(0);
    expect(await figure('jitter')).toBeGreaterThanOrEqual(0);
    expect(await figure('jitter')).toBeLessThan(100);
    await page.evaluate('document.activeElement?.blur()');
    await page.screenshot({ path: join(SHOTS, 'channel.png') });

    // The channel's owner server-mutes the bot: the row says so, and its voice stops reaching us.
    await memberRow('bob').getByTestId('server-mute').click();
    await memberRow('bob')
      .and(page.locator('[data-server-muted=true]'))
      .getByTestId('server-muted')
      .waitFor();
    await sleep(1500);
    expect(medianToneDbfs(played(), BOT_HZ, 1000)).toBeLessThan(-60);
    await memberRow('bob').getByTestId('server-mute').click();
    await memberRow('bob').and(page.locator('[data-server-muted=false][data-speaking=true]')).waitFor({
      timeout: 3000,
    });
    await expect
      .poll(() => Math.abs(medianToneDbfs(played(), BOT_HZ, 1000) - half), { timeout: 5000 })
      .toBeLessThan(1.5);

    // Someone else's channels: one full (user limit 1), one locked.
    const dave = await VoiceClient.connect({ server: serverUrl, nickname: 'dave', opus });
    bots.push(dave);
    await dave.signaling.request('channel.create', { name: 'Solo', userLimit: 1 });
    await dave.signaling.request('channel.create', { name: 'Locked', password: 'sesame' });
    await dave.join('Solo');
    await channelButton('Solo').and(page.locator('[data-full=true]')).waitFor();
    expect(await channelButton('Solo').getByTestId('count').textContent()).toBe('full');
    await channelButton('Solo').click();
    await expect.poll(() => page.getByTestId('channel-error').textContent()).toMatch(/Solo is full/);
    await page.screenshot({ path: join(SHOTS, 'channels.png') });
    expect(await page.getByTestId('channel-title').textContent()).toBe('Room');

    // A locked channel asks for its password; a wrong one says so and keeps asking; the right one joins.
    await channelButton('Locked').click();
    await page.getByTestId('channel-password').waitFor();
    await page.keyboard.press('Escape');
    await page.getByTestId('channel-password').waitFor({ state: 'detached' });
    await channelButton('Locked').click();
    for (const guess of ['open', 'shut', 'ajar']) {
      await page.getByTestId('channel-password').fill(guess);
      await page.getByTestId('channel-password-join').click();
      expect(await page.getByTestId('password-error').textContent()).toMatch(/Wrong password/);
    }
    expect(await page.getByTestId('channel-title').textContent()).toBe('Room');
    // The server makes a third wrong guess wait: the prompt says how long, even for the right one.
    await page.getByTestId('channel-password').fill('sesame');
    await page.getByTestId('channel-password-join').click();
    expect(await page.getByTestId('password-error').textContent()).toMatch(/Wait 1 s/);
    await sleep(1100);
    await page.getByTestId('channel-password-join').click();
    await expect.poll(() => page.getByTestId('channel-title').textContent()).toBe('Locked');
    await channelButton('Room').click();
    await expect.poll(() => page.getByTestId('channel-title').textContent()).toBe('Room');
    // A name already taken: said in the dialog, which stays open.
    await page.getByTestId('new-channel').click();
    await page.getByTestId('channel-name').fill('Locked');
    await page.getByTestId('channel-save').click();
    expect(await page.getByTestId('channel-form-error').textContent()).toMatch(/exists already/);
    await page.keyboard.press('Escape');
    await page.getByTestId('channel-form').waitFor({ state: 'detached' });

    // The owner sets, changes and removes Room's password from the edit dialog; a bot finds out.
    const roomId = bob.channel!.id;
    const erin = await VoiceClient.connect({ server: serverUrl, nickname: 'erin', opus });
    bots.push(erin);
    const editRoom = async (change: (form: Page) => Promise<void>): Promise<void> => {
      await page.getByRole('button', { name: 'Edit Room' }).click();
      await change(page);
      await page.getByTestId('channel-save').click();
      await page.getByTestId('channel-form').waitFor({ state: 'detached' });
    };
    await editRoom((p) => p.getByTestId('channel-form-password').fill('first'));
    await channelButton('Room').and(page.locator('[data-locked=true]')).waitFor();
    await expect(erin.join(roomId)).rejects.toMatchObject({ code: 'WRONG_PASSWORD' });
    await editRoom((p) => p.getByTestId('channel-form-password').fill('second'));
    await expect(erin.join(roomId, { password: 'first' })).rejects.toMatchObject({ code: 'WRONG_PASSWORD' });
    await erin.join(roomId, { password: 'second' });
    await erin.leave();
    await editRoom((p) => p.getByTestId('channel-form-remove-password').check());
    await channelButton('Room').and(page.locator('[data-locked=false]')).waitFor();
    await erin.join(roomId);
    await erin.leave();
    await erin.close();
    await dave.join('Locked', { password: 'sesame' });

    // Settings persist across a reload.
    await page.getByTestId('open-settings').click();
    await page.getByTestId('settings').waitFor();
    await page.screenshot({ path: join(SHOTS, 'settings.png') });
    await page.getByTestId('theme-light').check();
    await page.getByTestId('transmit-ptt').check();
    await page.getByTestId('close-settings').click();
    await page.reload();
    await page.locator('[data-testid=connection][data-state=connected]').waitFor();
    expect(await page.locator('html').getAttribute('data-theme')).toBe('light');
    await page.getByTestId('open-settings').click();
    expect(await page.getByTestId('transmit-ptt').isChecked()).toBe(true);
    expect(await page.getByTestId('ptt-key').textContent()).toBe('V'); // KeyV, as a person reads it
    await page.screenshot({ path: join(SHOTS, 'settings-light.png') });
    await page.getByTestId('close-settings').click();

    // Keyboard, with the window focused: push-to-talk sends only while V is held; Ctrl+M toggles mute.
    const micAtBob = (): number => medianToneDbfs(bob.recording().samples, MIC_HZ, 500);
    await expect.poll(micAtBob, { timeout: 5000 }).toBeLessThan(-60);
    await page.keyboard.down('v');
    await expect.poll(micAtBob, { timeout: 5000 }).toBeGreaterThan(-24);
    await page.keyboard.up('v');
    await expect.poll(micAtBob, { timeout: 5000 }).toBeLessThan(-60);
    await page.keyboard.press('Control+m');
    await expect.poll(() => page.getByTestId('mute').getAttribute('aria-pressed')).toBe('true');
    await page.keyboard.press('Control+m');
    await expect.poll(() => page.getByTestId('mute').getAttribute('aria-pressed')).toBe('false');
    await page.getByTestId('open-settings').click();
    await page.getByTestId('transmit-vad').check();
    await page.getByTestId('close-settings').click();

    // The server restarts: the UI shows reconnecting, then connected and back in the channel, unaided.
    await stopServer();
    await page.locator('[data-testid=connection][data-state=reconnecting]').waitFor();
    server = await startServer();
    await page.locator('[data-testid=connection][data-state=connected]').waitFor({ timeout: 20_000 });
    await expect
      .poll(() => page.getByTestId('channel-title').textContent(), { timeout: 10_000 })
      .toBe('Room');
    // The bot came back by itself too (its VoiceClient resumed after the server's "shutting down").
    await page.locator('[data-testid=member][data-nickname=bob]').waitFor({ timeout: 20_000 });
    // The server kept the lifted server mute lifted across its restart.
    expect(await memberRow('bob').getAttribute('data-server-muted')).toBe('false');
    // Its audio is back, and still at 50 %: the new server session was told the volume again.
    await expect
      .poll(() => Math.abs(medianToneDbfs(played(), BOT_HZ, 1000) - (full - 6.02)), { timeout: 15_000 })
      .toBeLessThan(1.5);

    // Sign out and in again as the server's admin: a wrong admin token is named, the right one is
    // remembered but never put back on screen.
    await page.getByTestId('sign-out').click();
    await page.getByTestId('admin-token').fill('not-the-admin-token');
    await page.getByTestId('connect').click();
    await expect.poll(() => page.getByTestId('connect-error').textContent()).toMatch(/admin token/);
    await page.getByTestId('admin-token').fill(ADMIN_TOKEN);
    await page.getByTestId('connect').click();
    await page.locator('[data-testid=connection][data-state=connected]').waitFor();
    await page.getByTestId('sign-out').click();
    await page.getByTestId('admin-token').waitFor();
    expect(await page.getByTestId('admin-token').inputValue()).toBe('');
    expect(await page.getByTestId('admin-token').getAttribute('placeholder')).toMatch(/Saved/);
    expect(await page.content()).not.toContain(ADMIN_TOKEN);
    expect(await controlsTabMisses()).toEqual({ controls: 6, missed: [] });
    await page.getByTestId('connect').click();
    await page.locator('[data-testid=connection][data-state=connected]').waitFor();

    // An admin joins someone else's locked channel without its password and server-mutes its member.
    await channelButton('Locked').click();
    await expect.poll(() => page.getByTestId('channel-title').textContent()).toBe('Locked');
    await memberRow('dave').getByTestId('server-mute').click();
    await memberRow('dave').and(page.locator('[data-server-muted=true]')).waitFor();

    // Deleting a channel asks once more, then it is gone for everyone (an admin, someone else's).
    await page.getByRole('button', { name: 'Edit Solo' }).click();
    await page.getByTestId('channel-delete').click();
    expect(await page.getByTestId('channel-delete').textContent()).toMatch(/removing everyone/);
    expect(await channelButton('Solo').count()).toBe(1);
    await page.getByTestId('channel-delete').click();
    await channelButton('Solo').waitFor({ state: 'detached' });
    await page.getByTestId('channel-form').waitFor({ state: 'detached' });

    // Keyboard: Tab reaches every control of the channel view and of the settings.
    const inChannel = await controlsTabMisses();
    console.log(`tab: ${inChannel.controls} controls in the channel view`);
    expect(inChannel.missed).toEqual([]);
    expect(inChannel.controls).toBeGreaterThanOrEqual(12);
    await page.getByTestId('open-settings').click();
    await page.getByTestId('settings').waitFor();
    const inSettings = await controlsTabMisses();
    console.log(`tab: ${inSettings.controls} controls with the settings open`);
    expect(inSettings.missed).toEqual([]);
    expect(inSettings.controls).toBeGreaterThan(inChannel.controls);
    await page.keyboard.press('Escape'); // dialogs close with Escape
    await page.getByTestId('settings').waitFor({ state: 'detached' });

    // Readable at 800x600 too: nothing wider than the window, in the channel view and the settings.
    await page.setViewportSize({ width: 800, height: 600 });
    const overflowX = (): Promise<number> =>
      page.evaluate<number>(
        `Math.max(document.documentElement.scrollWidth, ...[...document.querySelectorAll('.card, .main, .sidebar')].map((e) => e.scrollWidth - e.clientWidth + innerWidth)) - innerWidth`,
      );
    expect(await overflowX()).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(SHOTS, 'channel-800x600.png') });
    await page.getByTestId('open-settings').click();
    await page.getByTestId('settings').waitFor();
    expect(await overflowX()).toBeLessThanOrEqual(0);
    await page.screenshot({ path: join(SHOTS, 'settings-800x600.png') });
  }, 120_000);
});
