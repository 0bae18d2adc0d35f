/**
 * `npm run bench`: every benchmark, figures printed as `name value` lines grouped by area.
 * Record them with the date and this command in BENCHMARKS.md. `--quick` skips the capacity sweep
 * and the speech-quality runs (real time, about 10 minutes).
 */
import { cpus } from 'node:os';
import { benchMedia } from '../media/bench/index.js';
import { benchChannelTicks } from '../cluster/bench/channel-tick.js';
import { benchAead } from '../cluster/bench/aead.js';
import { benchUdpSend } from '../cluster/bench/udp-send.js';
import { benchCapacity, benchFixedCost } from '../cluster/bench/capacity.js';
import { benchQuality } from '../cluster/bench/quality.js';
import { benchClusterGaps } from '../cluster/bench/cluster-gaps.js';
import { benchSwitchClicks } from '../cluster/bench/switch-clicks.js';
import { benchMumble } from '../cluster/bench/mumble.js';
import { benchFanout } from '../cluster/bench/fanout.js';
import { benchAudioEngine } from '../client/bench/audio.js';

const quick = process.argv.includes('--quick');
const print = (area: string, figures: Record<string, number>) => {
  console.log(`\n## ${area}`);
  for (const [k, v] of Object.entries(figures)) console.log(`${k.padEnd(48)} ${v}`);
};

console.log(
  `# voice benchmarks ${new Date().toISOString()} node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? '?'}`,
);
print('media: jitter buffer, mixer, opus', await benchMedia());
print('client: desktop audio engine per device period', benchAudioEngine());
print('server: voice packet AES-256-GCM, seal + open of a 100-byte payload', benchAead());
print(
  'server: voice UDP send per 132-byte datagram, node:dgram vs sendmmsg batches of 64',
  await benchUdpSend(),
);
print('server: one channel actor tick (real opus, AES-GCM seal)', await benchChannelTicks());
print(
  "listener stream switches (forwarded / shared mix / own mix-minus): broadband click near a switch and the codec's floor elsewhere",
  await benchSwitchClicks(),
);
if (!quick) {
  print(
    'speech quality: PESQ-WB, Opus alone vs through the server (forwarded, mixed, streamed), 3 runs of 8 s',
    await benchQuality({ runs: 3, seconds: 8, log: (l) => console.log(l) }),
  );
  print('server: fixed cost (idle, and one channel of 5 with 2 speaking)', await benchFixedCost());
  print(
    'server: presence fan-out, 300 users joining channels of 10 one after another (every join and member update goes to every session)',
    { ...(await benchFanout(30)) },
  );
  print(
    'side by side with Mumble 1.3 (murmurd): server CPU on the same load, channels of 10 with 2 speaking',
    await benchMumble({ log: (s) => console.log(JSON.stringify(s)) }),
  );
  print(
    'cluster: audio gap heard on failover (kill -9 of the owner) and live drain (SIGTERM), 4 processes, 10 tries each',
    await benchClusterGaps({ tries: 10, log: (l) => console.log(l) }),
  );
  for (const opus of ['libopus', 'native', 'opusscript'] as const) {
    print(
      `server (${opus} opus): capacity, channels of 10 with 2 speaking, server on one core, swarm on the other; largest step with tick lateness p99 < 10 ms, and < 2 ms`,
      await benchCapacity({
        // 100 to 500 members (the goal: 500 per core at p99 < 2 ms); stops at the first failing step.
        steps: [10, 20, 30, 40, 50],
        seconds: 6,
        log: (s) => console.log(JSON.stringify(s)),
        maxP99Ms: 10,
        opus,
      }),
    );
  }
}
