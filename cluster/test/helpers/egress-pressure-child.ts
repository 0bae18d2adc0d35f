/**
 * Egress under a full send queue: run inside a network namespace of its own whose loopback has a
 * rate-limited queue (tbf), as a NIC's queue would be (see voice-egress-pressure.test.ts, which
 * starts it). On the server's own voice socket (VoiceSocket: its buffer sizes), one turn blasts
 * datagrams of the largest voice packet size, each carrying its index, through the egress named in argv[2]
 * (`sendmmsg` or `dgram`) to a receiver that reads everything; then, once the queue has drained, it
 * sends one packet per 20 ms tick. Prints one JSON line: how long the blast took, what the egress
 * accepted and counted, and which indices arrived.
 *
 * Run with: node --conditions=source --import tsx cluster/test/helpers/egress-pressure-child.ts <egress>
 */
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { MAX_PACKET_BYTES } from '@voice/protocol';
import { loadNativeUdp, parseIPv4 } from '@voice/media';
import { VoiceCounters } from '../../src/voice/counters.js';
import { BatchEgress } from '../../src/voice/egress-batch.js';
import { DgramEgress } from '../../src/voice/egress-dgram.js';
import type { UdpEgress } from '../../src/voice/egress.js';
import type { VoiceEndpoint } from '../../src/voice/endpoint.js';
import { VoiceSocket } from '../../src/voice/udp.js';

/** The largest voice packet: the fewest fill a queue. */
const PACKET_BYTES = MAX_PACKET_BYTES;
const LATER = 10;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * The voice socket's send buffer: it asks for 4 MiB, the kernel caps that at net.core.wmem_max and
 * doubles it (room for its own overhead). Each queued datagram costs at least its own length.
 */
function sendBufferBytes(): number {
  return 2 * Math.min(1 << 22, Number(readFileSync('/proc/sys/net/core/wmem_max', 'utf8')));
}

async function main(kind: string): Promise<void> {
  // Twice what the send buffer could hold even if a datagram cost only its payload, and never so
  // few that the wire time of what is dropped (the test's bound for a send that would have waited)
  // is short enough for a loaded machine's hiccup.
  const sndbuf = sendBufferBytes();
  const count = Math.max(8192, Math.ceil((2 * sndbuf) / PACKET_BYTES));
  const received: number[] = [];
  const rx = createSocket({ type: 'udp4', recvBufferSize: 1 << 22 });
  rx.on('message', (m) => received.push(m.readUInt32BE(0)));
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));

  const sock = new VoiceSocket(
    () => {},
    (err) => console.error(err),
  );
  await sock.bind('127.0.0.1', 0);
  const counters = new VoiceCounters();
  const reported: string[] = [];
  let egress: UdpEgress;
  if (kind === 'sendmmsg') {
    const addon = loadNativeUdp();
    if (!addon || sock.descriptor === null) throw new Error('voice_udp.node not built, or no descriptor');
    egress = new BatchEgress(addon, sock.descriptor, counters, (e) => reported.push(String(e)));
  } else if (kind === 'dgram') egress = new DgramEgress(sock, counters);
  else throw new Error(`unknown egress ${kind}`);
  const ep = {
    udpAddress: '127.0.0.1',
    udpAddress32: parseIPv4('127.0.0.1'),
    udpPort: rx.address().port,
  } as VoiceEndpoint;

  const packet = Buffer.alloc(PACKET_BYTES, 0x5a);
  let accepted = 0;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    packet.writeUInt32BE(i, 0);
    if (egress.send(packet, PACKET_BYTES, ep)) accepted++;
  }
  egress.flush();
  const blastMs = performance.now() - t0;
  const afterBlast = { ...counters.sendErrorsBy };

  /** Waits until nothing has arrived for 300 ms (the queue drained), 15 s at most. */
  const drained = async () => {
    for (let n = -1, quiet = 0, t = performance.now(); quiet < 300 && performance.now() - t < 15_000;) {
      await sleep(50);
      quiet = received.length === n ? quiet + 50 : 0;
      n = received.length;
    }
  };
  await drained();
  const receivedBlast = received.slice();

  for (let i = 0; i < LATER; i++) {
    packet.writeUInt32BE(count + i, 0);
    egress.send(packet, PACKET_BYTES, ep);
    egress.flush();
    await sleep(20);
  }
  await drained();
  process.stdout.write(
    `${JSON.stringify({
      sndbuf,
      count,
      blastMs,
      accepted,
      afterBlast,
      receivedBlast,
      receivedLater: received.slice(receivedBlast.length),
      errorsAtEnd: { ...counters.sendErrorsBy },
      udpBatches: counters.udpBatches,
      reported,
    })}\n`,
  );
  egress.close();
  await sock.close();
  rx.close();
}

main(process.argv[2] ?? '').catch((err) => {
  console.error(err);
  process.exit(1);
});
