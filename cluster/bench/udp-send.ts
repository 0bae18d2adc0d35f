/**
 * Voice UDP egress: CPU time and young-generation bytes per 132-byte datagram (a sealed 100-byte
 * Opus payload), node:dgram (one send and one completion callback per datagram, from the egress's
 * ring of slots) against the batched sendmmsg addon (one call per batch of 64, nothing allocated).
 * Datagrams go from the server's VoiceSocket to a closed loopback port: the kernel drops them.
 *
 *   node --conditions=source --import tsx cluster/bench/udp-send.ts
 */
import v8 from 'node:v8';
import { UdpBatch, loadNativeUdp, parseIPv4 } from '@voice/media';
import { isMain, nowNs, printFigures } from '../../media/bench/util.js';
import { VoiceSocket } from '../src/voice/udp.js';

const newSpace = () => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;
const BYTES = 132;
const BATCH = 64;

/** The server's voice socket (its own IPv4 `lookup`, as egress-dgram.ts sends through it). */
async function voiceSocket(): Promise<VoiceSocket> {
  const s = new VoiceSocket(
    () => {},
    (err) => {
      throw err;
    },
  );
  await s.bind('127.0.0.1', 0);
  return s;
}

/** `rounds` batches of `BATCH` datagrams, each batch awaited (dgram completes asynchronously). */
type Sender = (rounds: number) => Promise<void>;

/** Best of 5 runs of at least ~60 ms: CPU µs (user + system) per datagram, completions included. */
async function cpuPerDatagram(send: Sender): Promise<number> {
  let rounds = 10;
  for (;;) {
    const t0 = nowNs();
    await send(rounds);
    if (Number(nowNs() - t0) / 1e6 >= 60) break;
    rounds *= 2;
  }
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 5; r++) {
    const c0 = process.cpuUsage();
    await send(rounds);
    const c = process.cpuUsage(c0);
    // The user/system split of getrusage is sampled (unreliable at this scale): the sum is not.
    best = Math.min(best, (c.user + c.system) / (rounds * BATCH));
  }
  return best;
}

/** Young bytes per datagram over a 512-datagram window (short enough that no scavenge runs in it). */
async function youngBytesPerDatagram(send: Sender): Promise<number> {
  let best = Number.POSITIVE_INFINITY;
  for (let r = 0; r < 5; r++) {
    const before = newSpace();
    await send(512 / BATCH);
    const d = newSpace() - before;
    if (d >= 0) best = Math.min(best, d / 512);
  }
  return Math.round(best);
}

export async function benchUdpSend(): Promise<Record<string, number>> {
  const tx = await voiceSocket();
  // A port nobody holds: the kernel drops the datagrams, nothing in this process reads them.
  const closed = await voiceSocket();
  const port = closed.port;
  await closed.close();
  const packet = new Uint8Array(BYTES).fill(7);
  // dgram as egress-dgram.ts sends: a preallocated slot per datagram, a callback made once per slot.
  const slots = Array.from({ length: BATCH }, () => Buffer.alloc(BYTES, 7));
  let pending = 0;
  let wake: () => void = () => {};
  const done = Array.from({ length: BATCH }, () => () => {
    if (--pending === 0) wake();
  });
  const dgram: Sender = async (rounds) => {
    for (let r = 0; r < rounds; r++) {
      pending = BATCH;
      const all = new Promise<void>((res) => (wake = res));
      for (let i = 0; i < BATCH; i++) tx.send(slots[i]!, BYTES, port, '127.0.0.1', done[i]!);
      await all;
    }
  };
  const figures: Record<string, number> = {};
  await dgram(200); // warm up
  figures.udp_send_dgram_cpu_us_per_datagram = await cpuPerDatagram(dgram);
  figures.udp_send_dgram_young_bytes_per_datagram = await youngBytesPerDatagram(dgram);

  const addon = loadNativeUdp();
  const fd = tx.descriptor;
  if (addon && fd !== null) {
    const batch = new UdpBatch(addon, fd, () => {}, { packets: BATCH, maxPacketBytes: 1032 });
    const to = parseIPv4('127.0.0.1');
    const native: Sender = (rounds) => {
      for (let r = 0; r < rounds; r++) {
        for (let i = 0; i < BATCH; i++) batch.add(packet, BYTES, to, port);
        batch.flush();
      }
      return Promise.resolve();
    };
    await native(200);
    figures.udp_send_sendmmsg_cpu_us_per_datagram = await cpuPerDatagram(native);
    figures.udp_send_sendmmsg_young_bytes_per_datagram = await youngBytesPerDatagram(native);
  }
  await tx.close();
  return figures;
}

if (isMain(import.meta.url)) {
  printFigures('udp send (132-byte datagrams, batches of 64)', await benchUdpSend());
}
