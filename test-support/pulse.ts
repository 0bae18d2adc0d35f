import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * PulseAudio null sinks standing in for sound cards (BRIEF section 4): `voice_mic*` sinks whose
 * monitors are the "microphones" (a test plays into the sink), `voice_spk*` sinks that are the
 * "speakers" (a test records their monitor). ALSA sees them by name through ~/.asoundrc entries of
 * type pulse, so PortAudio (naudiodon) lists and opens them like any device.
 */
export const PULSE_SINKS = ['voice_mic', 'voice_mic2', 'voice_spk', 'voice_spk2'] as const;
export type PulseSink = (typeof PULSE_SINKS)[number];

const BEGIN = '# >>> voice test devices (test-support/pulse.ts) >>>';
const END = '# <<< voice test devices <<<';

function asoundBlock(): string {
  const lines = [BEGIN];
  for (const s of PULSE_SINKS) {
    const dev = s.startsWith('voice_mic') ? `${s}.monitor` : s;
    lines.push(`pcm.${s} { type pulse; device "${dev}" hint { show on; description "test ${s}" } }`);
  }
  lines.push(END);
  return lines.join('\n') + '\n';
}

async function pactl(...args: string[]): Promise<string> {
  return (await run('pactl', args, { timeout: 10_000 })).stdout;
}

/** Starts PulseAudio when it is not running and loads the null sinks; idempotent. */
export async function ensurePulseDevices(): Promise<void> {
  try {
    await pactl('info');
  } catch {
    await run('pulseaudio', ['--start', '--exit-idle-time=-1'], { timeout: 15_000 }).catch(() => undefined);
    for (let i = 0; ; i++) {
      try {
        await pactl('info');
        break;
      } catch (err) {
        if (i > 40) throw new Error(`PulseAudio did not start: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  }
  // Else idle sinks are suspended and a capture stops after a moment.
  await pactl('unload-module', 'module-suspend-on-idle').catch(() => undefined);
  const sinks = await pactl('list', 'short', 'sinks');
  for (const s of PULSE_SINKS) {
    if (!new RegExp(`\\s${s}\\s`).test(sinks))
      await pactl('load-module', 'module-null-sink', `sink_name=${s}`, 'rate=48000', 'channels=1');
  }
  const rc = join(homedir(), '.asoundrc');
  const old = existsSync(rc) ? readFileSync(rc, 'utf8') : '';
  const block = asoundBlock();
  if (!old.includes(block)) {
    const start = old.indexOf(BEGIN);
    const end = old.indexOf(END);
    const kept = start >= 0 && end > start ? old.slice(0, start) + old.slice(end + END.length + 1) : old;
    writeFileSync(rc, kept + block);
  }
}

/** Removes a sink (a device unplugged); returns a function that plugs it back in. */
export async function unplug(sink: PulseSink): Promise<() => Promise<void>> {
  const mods = await pactl('list', 'short', 'modules');
  const line = mods.split('\n').find((l) => l.includes(`sink_name=${sink}`));
  if (line) await pactl('unload-module', line.split('\t')[0]!);
  let back = false; // twice would load a second sink, which PulseAudio names `${sink}.2`
  return async () => {
    if (back) return;
    back = true;
    await pactl('load-module', 'module-null-sink', `sink_name=${sink}`, 'rate=48000', 'channels=1');
  };
}

/**
 * Suspends a sink (and so its monitor): streams on it stop getting periods, as on a device that
 * wedges. Returns a function that resumes it.
 */
export async function suspend(sink: PulseSink): Promise<() => Promise<void>> {
  await pactl('suspend-sink', sink, '1');
  return async () => {
    await pactl('suspend-sink', sink, '0');
  };
}

/**
 * Kills the PulseAudio daemon under whatever runs on it (a sound server, or a USB card, gone at
 * once), then starts it again with the test devices. Only for the last test of a file: every
 * stream on it dies.
 */
export async function killPulse(): Promise<() => Promise<void>> {
  await run('pulseaudio', ['--kill'], { timeout: 10_000 });
  return ensurePulseDevices;
}

/** Plays a WAV into a sink (the "microphone"), looping until killed. */
export function playInto(sink: PulseSink, wavPath: string): ChildProcess {
  // --latency-msec: without it the first 1.5 s go missing (BRIEF); loop with a shell so it never ends.
  return spawn('sh', ['-c', `while :; do paplay --latency-msec=10 -d ${sink} "${wavPath}" || exit 1; done`], {
    stdio: 'ignore',
    detached: true,
  });
}

/**
 * Records a sink's monitor (the "speaker") as raw 48 kHz mono s16le. parec hands its audio over in
 * large, late chunks through a pipe: `stop()` ends it (SIGINT flushes) and returns all it recorded.
 */
export function recordFrom(sink: PulseSink): { proc: ChildProcess; stop: () => Promise<Int16Array> } {
  const proc = spawn(
    'parec',
    ['--latency-msec=10', '--raw', '--format=s16le', '--rate=48000', '--channels=1', '-d', `${sink}.monitor`],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  const chunks: Buffer[] = [];
  proc.stdout.on('data', (d: Buffer) => chunks.push(d));
  const exited = new Promise<void>((r) => proc.once('close', () => r()));
  return {
    proc,
    stop: async () => {
      proc.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
      const b = Buffer.concat(chunks);
      const out = new Int16Array(Math.floor(b.length / 2));
      for (let i = 0; i < out.length; i++) out[i] = b.readInt16LE(i * 2);
      return out;
    },
  };
}

/** Ends a process group started by playInto (the shell loop and its paplay). */
export function stopPlaying(p: ChildProcess): void {
  if (p.pid !== undefined && p.exitCode === null) {
    try {
      process.kill(-p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
