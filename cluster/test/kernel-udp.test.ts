import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { KernelUdpCounters, SnmpFormatError, parseUdpSnmp } from '../src/voice/kernel-udp.js';
import { startTestServer, type TestServer } from '../../test-support/server.js';

/**
 * The kernel's UDP error counters on /metrics (voice/kernel-udp.ts): parsed from /proc/net/snmp as
 * Linux writes it, and rising with drops this test causes for real.
 */

// Copied from this machine's /proc/net/snmp (Debian 12, Linux 6.x), Ip and Icmp lines shortened.
const SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 125972511
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 59234260 2320298 4669447 66578335 4669441 17 6 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`;

const linux = process.platform === 'linux';
let srv: TestServer | null = null;
afterEach(async () => {
  await srv?.stop();
  srv = null;
});

describe('kernel UDP error counters', () => {
  it('parses the Udp lines by field name, not position, and refuses what is not that', () => {
    expect(parseUdpSnmp(SNMP)).toEqual({ inErrors: 4669447, rcvbufErrors: 4669441, sndbufErrors: 17 });
    // Another kernel may order or add fields: names decide.
    const reordered = 'Udp: SndbufErrors Extra InErrors RcvbufErrors\nUdp: 3 9 2 1\n';
    expect(parseUdpSnmp(reordered)).toEqual({ inErrors: 2, rcvbufErrors: 1, sndbufErrors: 3 });
    expect(() => parseUdpSnmp('UdpLite: InErrors\nUdpLite: 0\n')).toThrow(SnmpFormatError);
    expect(() => parseUdpSnmp('Udp: InErrors RcvbufErrors\nUdp: 1 x\n')).toThrow(SnmpFormatError);
    expect(() => parseUdpSnmp('Udp: InErrors RcvbufErrors SndbufErrors\n')).toThrow(SnmpFormatError);
  });

  it.runIf(linux)('reads this host: the file parses, and a reader reports rises from its start', () => {
    expect(() => parseUdpSnmp(readFileSync('/proc/net/snmp', 'utf8'))).not.toThrow();
    let text = SNMP;
    const r = KernelUdpCounters.open('/fake', () => text)!;
    expect(r.sinceStart()).toEqual({ inErrors: 0, rcvbufErrors: 0, sndbufErrors: 0 });
    text = SNMP.replace('4669447 66578335 4669441 17', '4669450 66578335 4669444 20');
    expect(r.sinceStart()).toEqual({ inErrors: 3, rcvbufErrors: 3, sndbufErrors: 3 });
    text = 'garbage';
    expect(r.sinceStart()).toBeNull();
    expect(KernelUdpCounters.open('/fake', () => 'garbage')).toBeNull();
  });

  it.runIf(linux)('/metrics counts datagrams the kernel dropped at a full receive buffer', async () => {
    srv = await startTestServer();
    const m = srv.ctx.metrics;
    const before = {
      rcvbuf: await m.value('voice_kernel_udp_rcvbuf_errors_total'),
      inErrors: await m.value('voice_kernel_udp_in_errors_total'),
    };
    // A receiver with the smallest buffer, and a burst sent without yielding: the receiver cannot
    // read meanwhile (one event loop), so the kernel drops what does not fit.
    const rx = createSocket({ type: 'udp4', recvBufferSize: 1 });
    let received = 0;
    rx.on('message', () => received++);
    await new Promise<void>((r) => rx.bind(0, '127.0.0.1', () => r()));
    const tx = createSocket('udp4');
    await new Promise<void>((r) => tx.bind(0, '127.0.0.1', () => r()));
    const N = 2000;
    const payload = Buffer.alloc(200);
    let sent = 0;
    for (let i = 0; i < N; i++) tx.send(payload, rx.address().port, '127.0.0.1', () => sent++);
    await expect.poll(() => sent, { timeout: 5000 }).toBe(N);
    await new Promise((r) => setTimeout(r, 200)); // the receiver reads what was kept
    const dropped = N - received;
    tx.close();
    rx.close();
    expect(dropped, 'datagrams the kernel dropped (the burst overflowed the buffer)').toBeGreaterThan(N / 2);
    // Host-wide counters: at least our drops (others on this host may add to them).
    expect((await m.value('voice_kernel_udp_rcvbuf_errors_total')) - before.rcvbuf).toBeGreaterThanOrEqual(
      dropped,
    );
    expect((await m.value('voice_kernel_udp_in_errors_total')) - before.inErrors).toBeGreaterThanOrEqual(
      dropped,
    );
    // All three are served on /metrics (on Linux; elsewhere they are absent).
    const text = await (await fetch(`http://127.0.0.1:${srv.httpPort}/metrics`)).text();
    for (const name of ['sndbuf_errors', 'rcvbuf_errors', 'in_errors'])
      expect(text).toMatch(new RegExp(`^voice_kernel_udp_${name}_total \\d+$`, 'm'));
  });
});
