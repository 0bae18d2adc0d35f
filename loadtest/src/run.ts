/**
 * The load-test runner: `npm run loadtest -- <scenario> [--target URL[,URL...]] [options]`.
 *
 * Starts what the run needs (Artillery's install, the build, a server in its own process unless
 * --target names running ones, a lossy relay for --jitter-ms), runs Artillery bounded in users and
 * time with the voice engine, samples server and generator CPU and the servers' /metrics, stops
 * everything it started, and writes report.json and report.html (inline SVG charts, no network)
 * into the output folder. Exit code: Artillery's (non-zero when an `ensure` check failed), or 3 when
 * anything tried to leave the machine, or 4 when the generator saturated and --strict was given.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { LossyRelay } from '../../test-support/lossy-relay.js';
import { ensureArtillery, runArtillery } from './runner/artillery.js';
import { startOwnServer, type OwnServer } from './runner/own-server.js';
import {
  charts,
  judgeGenerator,
  machineInfo,
  periodsOf,
  renderHtml,
  type ArtilleryOutput,
  type RunReport,
} from './runner/report.js';
import { Sampler } from './runner/sampler.js';
import { summarizeProfiles } from './runner/cpu-profile.js';
import {
  dumpScript,
  loadScenario,
  resolveSize,
  runDeadlineSeconds,
  sizeScript,
  type RunSize,
} from './runner/scenario.js';
import { sweepCharts, sweepHtml, summarizeStep, type SweepStep } from './runner/sweep.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const SCENARIOS = [
  'signaling',
  'sessions',
  'voice-udp',
  'voice-udp-streams',
  'voice-ws',
  'cluster',
  'soak',
  'capacity',
] as const;
const ADMIN_TOKEN = 'loadtest-admin-token-0123456789';
const say = (l: string) => process.stderr.write(`loadtest: ${l}\n`);

const { values: v, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    target: { type: 'string' },
    size: { type: 'string', default: 'full' },
    users: { type: 'string' },
    seconds: { type: 'string' },
    ramp: { type: 'string' },
    workers: { type: 'string' },
    'frame-ms': { type: 'string' },
    'jitter-ms': { type: 'string' },
    opus: { type: 'string' },
    'cpu-prof': { type: 'boolean', default: false },
    sweep: { type: 'string' },
    out: { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    strict: { type: 'boolean', default: false },
    nice: { type: 'string' },
    'max-seconds': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});

if (v.help || positionals.length !== 1) {
  process.stderr.write(
    `usage: npm run loadtest -- <${SCENARIOS.join('|')}|file.yml> [--target URL[,URL...]]
  --size smoke|full|soak   a size from the scenario file (default full)
  --users N --seconds S --ramp S   override the size (users arriving over ramp, staying S)
  --workers N              Artillery worker threads (default: CPUs - 1)
  --frame-ms 10|20         voice frame size     --jitter-ms J   jitter on server-to-client UDP (own server)
  --opus auto|libopus|native|opusscript   the own server's Opus backend
  --cpu-prof               V8 CPU profile of the own server, in the output folder
  --sweep N,N,...          one run per user count (fresh server each), with a members-per-core summary
  --out DIR                output folder (default loadtest/reports/<scenario>-<time>)
  --strict                 exit 4 when the generator saturated
  --nice N                 run the generator at niceness N (1-19; sharing the server's cores, it
                           then does not preempt the server it measures)
  --max-seconds S          stop Artillery after S seconds (default: ramp + stay + margins)
`,
  );
  process.exit(v.help ? 0 : 2);
}

const name = positionals[0]!;
const scenarioFile = (SCENARIOS as readonly string[]).includes(name)
  ? join(root, 'loadtest/scenarios', `${name}.yml`)
  : resolve(name);
const targets = (v.target ?? '').split(',').filter((s) => s.trim() !== '');
if (name === 'cluster' && targets.length === 0) {
  say('the cluster scenario runs against running processes: --target http://a:port,http://b:port,...');
  process.exit(2);
}
const num = (s: string | undefined, what: string): number | undefined => {
  if (s === undefined) return undefined;
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) {
    say(`${what} must be a positive number`);
    process.exit(2);
  }
  return n;
};
const jitterMs = num(v['jitter-ms'], '--jitter-ms');
if (jitterMs !== undefined && targets.length > 0) {
  say('--jitter-ms needs the runner’s own server (it puts a relay in front of it)');
  process.exit(2);
}
const frameMs = num(v['frame-ms'], '--frame-ms');
if (frameMs !== undefined && frameMs !== 10 && frameMs !== 20) {
  say('--frame-ms must be 10 or 20');
  process.exit(2);
}
const workers = num(v.workers, '--workers');
if (workers !== undefined && !Number.isInteger(workers)) {
  say('--workers must be a whole number');
  process.exit(2);
}
const OPUS = ['auto', 'libopus', 'native', 'opusscript'] as const;
const opusBackend = v.opus as (typeof OPUS)[number] | undefined;
if (opusBackend !== undefined && !OPUS.includes(opusBackend)) {
  say(`--opus must be one of ${OPUS.join(', ')}`);
  process.exit(2);
}
const maxSeconds = num(v['max-seconds'], '--max-seconds');
const nice = num(v.nice, '--nice');
if (nice !== undefined && !(Number.isInteger(nice) && nice >= 0 && nice <= 19)) {
  say('--nice must be a whole number from 0 to 19');
  process.exit(2);
}
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const outDir = resolve(v.out ?? join(root, 'loadtest/reports', `${name.replace(/\W+/g, '_')}-${stamp}`));
mkdirSync(outDir, { recursive: true });

ensureArtillery(root, say);
if (!v['no-build']) {
  say('building (npm run build)');
  const b = spawnSync('npm', ['run', 'build', '--silent'], {
    cwd: root,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (b.status !== 0) {
    say('build failed');
    process.exit(1);
  }
}

const script = loadScenario(scenarioFile);
if (frameMs !== undefined) {
  for (const sc of script.scenarios)
    for (const step of sc.flow) if (step.voice) (step.voice as Record<string, unknown>).frameMs = frameMs;
}
const scriptFrameMs = (() => {
  for (const sc of script.scenarios)
    for (const step of sc.flow)
      if (step.voice) return Number((step.voice as { frameMs?: number }).frameMs ?? 20);
  return null;
})();

/** Seats per channel of the script's voice or lean steps (channels fill in each worker). */
const seatsPerChannel = (() => {
  for (const sc of script.scenarios)
    for (const step of sc.flow) {
      const v = (step.voice ?? step.lean) as { seats?: number } | undefined;
      if (v) return Number(v.seats ?? 10);
    }
  return null;
})();

async function runOnce(size: RunSize, dir: string): Promise<RunReport> {
  mkdirSync(dir, { recursive: true });
  const w = workers ?? Math.max(1, machineInfo().cpus - 1);
  if (seatsPerChannel !== null && size.users % (seatsPerChannel * w) !== 0) {
    // Artillery splits arrivals evenly over workers and each fills its own channels in order.
    say(
      `note: ${size.users} users over ${w} worker(s) leave a channel with fewer than ${seatsPerChannel} ` +
        `seats (use a multiple of ${seatsPerChannel * w}); its members may hear no talker on some turns`,
    );
  }
  let server: OwnServer | null = null;
  let relay: LossyRelay | null = null;
  const stopAll = async () => {
    await relay?.close();
    relay = null;
    await server?.stop();
    server = null;
  };
  const onSignal = () => {
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    let runTargets = targets;
    if (runTargets.length === 0) {
      server = await startOwnServer({
        root,
        adminToken: ADMIN_TOKEN,
        log: say,
        ...(opusBackend ? { opusBackend } : {}),
        ...(v['cpu-prof'] ? { cpuProfDir: dir } : {}),
      });
      runTargets = [server.url];
      say(`server ${server.url} (udp ${server.udpPort}, pid ${server.pid})`);
    }
    const env: NodeJS.ProcessEnv = {
      VOICE_LT_RUN: Date.now().toString(36).slice(-6),
      VOICE_LT_ADMIN_TOKEN: ADMIN_TOKEN,
    };
    if (workers !== undefined) env.VOICE_LT_WORKERS = String(workers);
    if (jitterMs !== undefined && server) {
      relay = await LossyRelay.start({
        target: { host: '127.0.0.1', port: server.udpPort },
        serverToClient: { jitterMs },
        maxClients: 100_000,
      });
      env.VOICE_LT_UDP_TARGET = `${relay.address.host}:${relay.address.port}`;
      say(`relay ${env.VOICE_LT_UDP_TARGET}: 0-${jitterMs} ms jitter on server-to-client voice`);
    }
    const sized = sizeScript(script, size);
    const scriptPath = join(dir, 'artillery.yml');
    writeFileSync(scriptPath, dumpScript(sized));
    const sampler = new Sampler({ targets: runTargets, ...(server ? { serverPid: server.pid } : {}) });
    sampler.start();
    const checks: RunReport['checks'] = [];
    let inChecks = false;
    const egressLog = join(dir, 'egress.log');
    const startedAt = new Date().toISOString();
    const machine = machineInfo();
    const res = await runArtillery({
      root,
      script: scriptPath,
      target: runTargets.join(','),
      outJson: join(dir, 'artillery.json'),
      logFile: join(dir, 'artillery.log'),
      egressLog,
      env,
      deadlineSeconds: maxSeconds ?? runDeadlineSeconds(sized, size),
      nice,
      onStart: (pid) => sampler.watchGenerator(pid),
      onLine: (l) => {
        if (l.startsWith('Checks:')) inChecks = true;
        const m = /^(ok|fail): (.*)$/.exec(l.trim());
        if (inChecks && m) checks.push({ ok: m[1] === 'ok', text: m[2]! });
        if (/^(Phase|All VUs finished|Checks:)/.test(l) || (inChecks && m)) say(l.trim());
      },
    });
    sampler.stop();
    if (res.timedOut) say('artillery ran past its deadline and was stopped');
    const out = existsSync(join(dir, 'artillery.json'))
      ? (JSON.parse(readFileSync(join(dir, 'artillery.json'), 'utf8')) as ArtilleryOutput)
      : { aggregate: { counters: {}, summaries: {} }, intermediate: [] };
    const egress = existsSync(egressLog)
      ? readFileSync(egressLog, 'utf8')
          .split('\n')
          .filter((l) => l !== '')
      : [];
    const generator = judgeGenerator(out.aggregate.summaries, workers ?? Math.max(1, machine.cpus - 1));
    const report: RunReport = {
      scenario: name,
      frameMs: scriptFrameMs,
      size,
      startedAt,
      command: `npm run loadtest -- ${process.argv.slice(2).join(' ')}`,
      target: runTargets.join(','),
      ownServer: server !== null,
      machine,
      checks,
      artilleryExit: res.code,
      egress,
      generator,
      counters: out.aggregate.counters,
      summaries: out.aggregate.summaries,
      samples: sampler.samples,
      periods: periodsOf(out),
      // Written when the server exits (stopAll above has not run yet: stop it first).
      profile: v['cpu-prof'] && server ? (await server.stop(), summarizeProfiles(dir, root)) : [],
      passed: res.code === 0 && egress.length === 0 && !(v.strict && generator.saturated),
    };
    writeFileSync(join(dir, 'report.json'), JSON.stringify(report, null, 1));
    writeFileSync(join(dir, 'report.html'), renderHtml(report));
    for (const c of charts(report)) writeFileSync(join(dir, `${c.name}.svg`), c.svg);
    if (egress.length > 0) say(`FAIL: ${egress.length} attempts to leave the machine (${egressLog})`);
    say(`generator: ${generator.reason}`);
    if (generator.saturated) say('the generator SATURATED: its figures measure itself, not only the server');
    say(`report: ${join(dir, 'report.html')}`);
    return report;
  } finally {
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const override: Partial<RunSize> = {};
const users = num(v.users, '--users');
const seconds = num(v.seconds, '--seconds');
const ramp = num(v.ramp, '--ramp');
if (users !== undefined) override.users = users;
if (seconds !== undefined) override.seconds = seconds;
if (ramp !== undefined) override.rampSeconds = ramp;
const size = resolveSize(script, v.size, override);

let code: number;
if (v.sweep) {
  const counts = v.sweep.split(',').map((s) => Number(s));
  if (counts.some((n) => !Number.isInteger(n) || n <= 0)) {
    say('--sweep takes user counts: 50,100,200');
    process.exit(2);
  }
  const steps: SweepStep[] = [];
  for (const n of counts) {
    say(`sweep: ${n} users`);
    const r = await runOnce({ ...size, users: n }, join(outDir, `users-${n}`));
    steps.push(summarizeStep(r));
    writeFileSync(join(outDir, 'sweep.json'), JSON.stringify(steps, null, 1));
  }
  writeFileSync(join(outDir, 'sweep.html'), sweepHtml(name, steps));
  for (const c of sweepCharts(steps)) writeFileSync(join(outDir, `sweep-${c.name}.svg`), c.svg);
  for (const s of steps) say(JSON.stringify(s));
  say(`sweep: ${join(outDir, 'sweep.html')}`);
  code = 0;
} else {
  const r = await runOnce(size, outDir);
  code =
    r.artilleryExit !== 0
      ? r.artilleryExit
      : r.egress.length > 0
        ? 3
        : v.strict && r.generator.saturated
          ? 4
          : 0;
}
process.exit(code);
