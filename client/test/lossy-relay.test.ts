import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { LossyRelay, mulberry32 } from '../../test-support/lossy-relay.js';

const sockets: Socket[] = [];
let relay: LossyRelay | null = null;

afterEach(async () => {
  await relay?.close();
  relay = null;
  for (const s of sockets.splice(0)) s.close();
});

async function udp(): Promise<{ socket: Socket; port: number; got: Buffer[] }> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 1 << 22 });
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const got: Buffer[] = [];
  socket.on('message', (m) => got.push(m));
  return { socket, port: socket.address().port, got };
}

const packet = (i: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(i, 0);
  return b;
};
const ids = (got: Buffer[]): number[] => got.map((b) => b.readUInt32BE(0));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sends n numbered packets in small bursts (loopback drops nothing at this pace). */
async function sendAll(from: Socket, port: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    from.send(packet(i), port, '127.0.0.1');
    if (i % 50 === 49) await sleep(2);
  }
}

async function until(cond: () => boolean, timeoutMs = 3000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeoutMs) throw new Error('timed out');
    await sleep(10);
  }
}

describe('lossy relay', () => {
  it('mulberry32 is reproducible and uniform enough', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 10_000 }, () => a());
    expect(xs.slice(0, 5)).toEqual(Array.from({ length: 5 }, () => b()));
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.48);
    expect(mean).toBeLessThan(0.52);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
  });

  it('forwards both ways untouched without impairments', async () => {
    const server = await udp();
    const client = await udp();
    relay = await LossyRelay.start({ target: { host: '127.0.0.1', port: server.port } });
    // The server answers each packet to whoever sent it (the relay's upstream socket for this client).
    server.socket.on('message', (m, r) => server.socket.send(m, r.port, r.address));
    await sendAll(client.socket, relay.port, 100);
    await until(() => client.got.length === 100);
    expect(ids(server.got)).toEqual([...Array(100).keys()]);
    expect(ids(client.got)).toEqual([...Array(100).keys()]);
    expect(relay.stats().clientToServer).toMatchObject({ received: 100, forwarded: 100, dropped: 0 });
    expect(relay.clientCount).toBe(1);
  });

  it('drops about the configured fraction, reproducibly with a seed', async () => {
    const counts: number[] = [];
    for (const _ of [1, 2]) {
      const server = await udp();
      const client = await udp();
      const r = await LossyRelay.start({
        target: { host: '127.0.0.1', port: server.port },
        clientToServer: { loss: 0.2 },
        seed: 7,
      });
      await sendAll(client.socket, r.port, 2000);
      await until(() => r.stats().clientToServer.received === 2000);
      const st = r.stats().clientToServer;
      await until(() => server.got.length === st.forwarded);
      expect(st.dropped + st.forwarded).toBe(2000);
      // 2000 * 0.2 = 400, standard deviation ~18.
      expect(st.dropped).toBeGreaterThan(330);
      expect(st.dropped).toBeLessThan(470);
      counts.push(st.dropped);
      await r.close();
    }
    expect(counts[0]).toBe(counts[1]);
  });

  it('duplicates and reorders, counting each', async () => {
    const server = await udp();
    const client = await udp();
    relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: server.port },
      clientToServer: { duplicate: 0.1, reorder: 0.1 },
      seed: 3,
    });
    await sendAll(client.socket, relay.port, 1000);
    const st = () => relay!.stats().clientToServer;
    await until(() => server.got.length === st().forwarded && st().received === 1000);
    const got = ids(server.got);
    const s = st();
    expect(s.duplicated).toBeGreaterThan(60);
    expect(s.duplicated).toBeLessThan(140);
    expect(got.length).toBe(1000 + s.duplicated);
    expect(new Set(got).size).toBe(1000);
    expect(s.reordered).toBeGreaterThan(50);
    expect(s.reordered).toBeLessThan(150);
    // Every held packet arrives after its successor: count descents in the distinct arrival order.
    const firstSeen: number[] = [];
    const seen = new Set<number>();
    for (const id of got) {
      if (seen.has(id)) continue;
      seen.add(id);
      firstSeen.push(id);
    }
    let descents = 0;
    for (let i = 1; i < firstSeen.length; i++) if (firstSeen[i]! < firstSeen[i - 1]!) descents++;
    expect(descents).toBe(s.reordered);
  });

  it('impairs the server-to-client direction independently, with jitter', async () => {
    const server = await udp();
    const client = await udp();
    relay = await LossyRelay.start({
      target: { host: '127.0.0.1', port: server.port },
      serverToClient: { loss: 0.5, jitterMs: 30 },
    });
    const sentAt = new Map<number, number>();
    const delays: number[] = [];
    server.socket.on('message', (m, r) => server.socket.send(m, r.port, r.address));
    client.socket.on('message', (m) => delays.push(performance.now() - sentAt.get(m.readUInt32BE(0))!));
    for (let i = 0; i < 400; i++) {
      sentAt.set(i, performance.now());
      client.socket.send(packet(i), relay.port, '127.0.0.1');
      if (i % 20 === 19) await sleep(5);
    }
    const st = () => relay!.stats();
    await until(() => st().serverToClient.received === 400);
    await until(() => client.got.length === st().serverToClient.forwarded);
    expect(st().clientToServer).toMatchObject({ received: 400, forwarded: 400, dropped: 0 });
    expect(st().serverToClient.dropped).toBeGreaterThan(150);
    expect(st().serverToClient.dropped).toBeLessThan(250);
    expect(st().serverToClient.delayed).toBe(st().serverToClient.forwarded);
    delays.sort((a, b) => a - b);
    // Uniform 0..30 ms on top of loopback: the spread covers most of the range.
    expect(
      delays[Math.floor(delays.length * 0.9)]! - delays[Math.floor(delays.length * 0.1)]!,
    ).toBeGreaterThan(15);
    expect(delays[delays.length - 1]!).toBeLessThan(200);
  });

  it('validates conditions and closes idempotently', async () => {
    const server = await udp();
    await expect(
      LossyRelay.start({ target: { host: '127.0.0.1', port: server.port }, clientToServer: { loss: 2 } }),
    ).rejects.toThrow(TypeError);
    relay = await LossyRelay.start({ target: { host: '127.0.0.1', port: server.port } });
    expect(() => relay!.setConditions('serverToClient', { jitterMs: -1 })).toThrow(TypeError);
    await relay.close();
    await relay.close();
  });
});
