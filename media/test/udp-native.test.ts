import { createSocket, type Socket } from 'node:dgram';
import { closeSync, openSync } from 'node:fs';
import { constants } from 'node:os';
import { isIPv4 } from 'node:net';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  UDP_META_FIELDS,
  UDP_RESULT_SLOTS,
  UdpBatch,
  UdpResult,
  dgramDescriptor,
  loadNativeUdp,
  parseIPv4,
} from '../src/index.js';
import { GCProfiler } from 'node:v8';
import { newSpaceUsed } from '../../test-support/heap.js';

// scripts/provision.mjs builds the addon before the tests (Linux, libc6-dev): its absence is a failure.
const addon = loadNativeUdp();
const LOOPBACK = parseIPv4('127.0.0.1');

const open: Socket[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function bound(): Promise<Socket> {
  const s = createSocket({ type: 'udp4', recvBufferSize: 1 << 21 });
  open.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

/** Collects what `s` receives until `n` datagrams arrived (or the deadline). */
function collect(s: Socket, n: number, ms = 5_000): Promise<Buffer[]> {
  const got: Buffer[] = [];
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(got), ms);
    s.on('message', (m) => {
      got.push(m);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/** A datagram that names its destination and its place in that destination's order. */
function packet(dest: number, seq: number, length: number): Uint8Array {
  const p = new Uint8Array(length);
  for (let i = 0; i < length; i++) p[i] = (dest * 31 + seq * 7 + i) & 0xff;
  if (length >= 4) {
    new DataView(p.buffer).setUint16(0, seq);
    p[2] = dest;
    p[3] = 0xa5;
  }
  return p;
}

describe('batched UDP send with sendmmsg (media/native/voice_udp.c)', () => {
  it('loads, and finds the descriptor of a bound dgram socket', async () => {
    expect(addon, 'voice_udp.node not built: run scripts/build-native.mjs (Linux, libc6-dev)').not.toBeNull();
    const s = await bound();
    const fd = dgramDescriptor(s);
    expect(fd).toBeGreaterThan(2);
    // The descriptor is the socket's own: a datagram sent through it comes from the socket's port.
    const rx = await bound();
    const got = new Promise<number>((r) => rx.once('message', (_m, info) => r(info.port)));
    const batch = new UdpBatch(addon!, fd!, () => {});
    batch.add(new Uint8Array([1, 2, 3]), 3, LOOPBACK, rx.address().port);
    batch.flush();
    expect(await got).toBe(s.address().port);
  });

  it('delivers byte for byte, in order per destination, a batch larger than one sendmmsg vector', async () => {
    const tx = await bound();
    const receivers = await Promise.all([bound(), bound(), bound(), bound()]);
    const perDest = 100; // 400 datagrams: more than 3 vectors of 128
    const received = receivers.map((r) => collect(r, perDest));
    const results: number[][] = [];
    const batch = new UdpBatch(addon!, dgramDescriptor(tx)!, (r) => results.push([...r]), {
      packets: 512,
      maxPacketBytes: 1032,
    });
    const sent: Uint8Array[][] = receivers.map(() => []);
    for (let seq = 0; seq < perDest; seq++)
      for (let d = 0; d < receivers.length; d++) {
        // Lengths from 0 to 1032 bytes, interleaved destinations.
        const p = packet(d, seq, (seq * 97 + d * 13) % 1033);
        sent[d]!.push(p);
        expect(batch.add(p, p.length, LOOPBACK, receivers[d]!.address().port)).toBe(true);
      }
    expect(batch.size).toBe(400);
    batch.flush();
    expect(batch.size).toBe(0);
    // One flush, one outcome: all 400 accepted by the kernel, no error.
    expect(results).toEqual([[400, 0, 0, 0, 0, 0, 0, 0, 0]]);
    const got = await Promise.all(received);
    for (let d = 0; d < receivers.length; d++) {
      expect(got[d]!.length).toBe(perDest);
      for (let seq = 0; seq < perDest; seq++) expect(new Uint8Array(got[d]![seq]!)).toEqual(sent[d]![seq]);
    }
  });

  it('sends early when the batch is full, and the packets keep their order', async () => {
    const tx = await bound();
    const rx = await bound();
    const received = collect(rx, 50);
    const flushes: number[] = [];
    const batch = new UdpBatch(addon!, dgramDescriptor(tx)!, (r) => flushes.push(r[UdpResult.SENT]!), {
      packets: 8,
      maxPacketBytes: 64,
    });
    for (let seq = 0; seq < 50; seq++) batch.add(packet(0, seq, 64), 64, LOOPBACK, rx.address().port);
    batch.flush();
    expect(flushes).toEqual([8, 8, 8, 8, 8, 8, 2]);
    const got = await received;
    expect(got.map((m) => m.readUInt16BE(0))).toEqual(Array.from({ length: 50 }, (_, i) => i));
    // A packet longer than the batch allows is refused, not truncated.
    expect(batch.add(new Uint8Array(65), 65, LOOPBACK, rx.address().port)).toBe(false);
    expect(batch.size).toBe(0);
  });

  it('counts each failed datagram by reason and still sends the rest', async () => {
    const tx = await bound();
    const rx = await bound();
    const received = collect(rx, 3, 1_000);
    const fd = dgramDescriptor(tx)!;
    const buf = new Uint8Array(70_000).fill(9);
    const meta = new Int32Array(6 * UDP_META_FIELDS);
    const put = (i: number, offset: number, length: number, address: number, port: number) =>
      meta.set([offset, length, address | 0, port], i * UDP_META_FIELDS);
    const port = rx.address().port;
    put(0, 0, 10, LOOPBACK, port); // delivered
    put(1, 0, 10, LOOPBACK, 0); // port 0: EINVAL
    put(2, 0, 10, parseIPv4('255.255.255.255'), port); // broadcast without SO_BROADCAST: EACCES
    put(3, 10, 10, LOOPBACK, port); // delivered
    put(4, 0, 65_508, LOOPBACK, port); // over the IPv4 limit: EMSGSIZE
    put(5, 20, 10, LOOPBACK, port); // delivered
    const result = new Int32Array(UDP_RESULT_SLOTS);
    expect(addon!.send(fd, buf, meta, 6, result)).toBe(3);
    expect(result[UdpResult.SENT]).toBe(3);
    expect(result[UdpResult.BAD_ADDRESS]).toBe(1);
    expect(result[UdpResult.NOT_PERMITTED]).toBe(1);
    expect(result[UdpResult.TOO_LONG]).toBe(1);
    expect([result[UdpResult.WOULD_BLOCK], result[UdpResult.NO_BUFFERS], result[UdpResult.OTHER]]).toEqual([
      0, 0, 0,
    ]);
    expect(result[UdpResult.LAST_ERRNO]).toBeGreaterThan(0);
    expect((await received).length).toBe(3);
  });

  it('counts a whole batch as closed when the descriptor is no longer the socket (EBADF, ENOTSOCK)', async () => {
    const rx = await bound();
    const meta = new Int32Array(3 * UDP_META_FIELDS);
    for (let i = 0; i < 3; i++) meta.set([0, 4, LOOPBACK | 0, rx.address().port], i * UDP_META_FIELDS);
    const nowhere = openSync('/dev/null', 'r');
    try {
      // A descriptor number nothing holds (the socket was closed), and one reused by a file.
      for (const [fd, errno] of [
        [1 << 30, constants.errno.EBADF],
        [nowhere, constants.errno.ENOTSOCK],
      ] as const) {
        const r = new Int32Array(UDP_RESULT_SLOTS);
        expect(addon!.send(fd, new Uint8Array(4), meta, 3, r)).toBe(0);
        expect(r[UdpResult.CLOSED], `errno ${errno}`).toBe(3);
        expect(r[UdpResult.LAST_ERRNO]).toBe(errno);
        expect(r.reduce((a, v) => a + v, 0)).toBe(3 + errno);
      }
    } finally {
      closeSync(nowhere);
    }
  });

  it('refuses bad arguments with a TypeError before sending anything, never a crash', async () => {
    const tx = await bound();
    const rx = await bound();
    let arrived = 0;
    rx.on('message', () => arrived++);
    const fd = dgramDescriptor(tx)!;
    const r = new Int32Array(UDP_RESULT_SLOTS);
    const meta = new Int32Array([0, 4, LOOPBACK, rx.address().port, 2, 4, LOOPBACK, rx.address().port]);
    const send = addon!.send.bind(addon);
    // The second packet runs past the end of the batch: nothing at all is sent.
    expect(() => send(fd, new Uint8Array(5), meta, 2, r)).toThrow(TypeError);
    expect(() => send(fd, new Uint8Array(8), meta, 3, r)).toThrow(TypeError); // count beyond meta
    expect(() => send(fd, new Uint8Array(8), new Uint32Array(8) as never, 2, r)).toThrow(TypeError);
    expect(() => send(fd, new Uint8Array(8), meta, 2, new Int32Array(7))).toThrow(TypeError);
    expect(() => send(-1, new Uint8Array(8), meta, 2, r)).toThrow(TypeError);
    const badPort = new Int32Array([0, 4, LOOPBACK, rx.address().port, 0, 4, LOOPBACK, 65_536]);
    expect(() => send(fd, new Uint8Array(8), badPort, 2, r)).toThrow(TypeError);
    const batch = new UdpBatch(addon!, fd, () => {});
    expect(() => batch.add(new Uint8Array(4), 4, LOOPBACK, -1)).toThrow(TypeError);
    expect(() => batch.add(new Uint8Array(4), 4, -1, 9)).toThrow(TypeError);
    expect(batch.size).toBe(0);
    expect(() => new UdpBatch(addon!, -1, () => {})).toThrow(TypeError);
    await new Promise((res) => setTimeout(res, 100));
    expect(arrived).toBe(0);
  });

  it('allocates nothing per datagram (node:dgram allocates per datagram)', async () => {
    const tx = await bound();
    // Nobody listens to the datagrams during the measure (the loop is synchronous); past the
    // sink's buffer the kernel drops them, silently.
    const sink = await bound();
    const port = sink.address().port;
    const payload = new Uint8Array(132).fill(3);
    const batch = new UdpBatch(addon!, dgramDescriptor(tx)!, () => {}, { packets: 64, maxPacketBytes: 1032 });
    const native = (n: number) => {
      for (let i = 0; i < n; i++) batch.add(payload, 132, LOOPBACK, port);
      batch.flush();
    };
    native(20_000); // warm up: optimised code, no lazy allocations left
    const before = newSpaceUsed();
    native(20_000);
    const nativeBytes = newSpaceUsed() - before;
    // No scavenge can have run (the delta would be negative): 20,000 datagrams left at most a few
    // kilobytes of young objects, i.e. nothing per datagram.
    expect(nativeBytes).toBeGreaterThanOrEqual(0);
    expect(nativeBytes).toBeLessThan(16 * 1024);
    // The measure is not blind: node:dgram's 20,000 sends allocate megabytes, so the young
    // generation grows by that much or is scavenged meanwhile (counted by V8's GC profiler: a delta
    // alone can land anywhere when a scavenge runs mid-loop).
    const buf = Buffer.from(payload);
    const gc = new GCProfiler();
    gc.start();
    const dgramBefore = newSpaceUsed();
    for (let i = 0; i < 20_000; i++) tx.send(buf, 0, 132, port, '127.0.0.1');
    const dgramBytes = newSpaceUsed() - dgramBefore;
    const scavenges = gc.stop().statistics.filter((e) => e.gcType === 'Scavenge').length;
    expect({ grewOver1MB: dgramBytes > 1_000_000, scavenged: scavenges > 0 }).not.toEqual({
      grewOver1MB: false,
      scavenged: false,
    });
  });

  it('parses IPv4 literals as node:net does, allocation-free', () => {
    fc.assert(
      fc.property(fc.ipV4(), (ip) => {
        const [a, b, c, d] = ip.split('.').map(Number) as [number, number, number, number];
        expect(parseIPv4(ip)).toBe(((a << 24) | (b << 16) | (c << 8) | d) >>> 0);
      }),
      { seed: 7, numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 16 }), fc.ipV4Extended(), fc.ipV6()), (s) => {
        expect(parseIPv4(s) >= 0).toBe(isIPv4(s));
      }),
      { seed: 8, numRuns: 2_000 },
    );
    expect(parseIPv4('255.255.255.255')).toBe(0xffff_ffff);
    for (const bad of ['', '1.2.3', '1.2.3.4.', '01.2.3.4', '256.1.1.1', '1..2.3', ' 1.2.3.4', '1.2.3.4a'])
      expect(parseIPv4(bad)).toBe(-1);
  });
});
