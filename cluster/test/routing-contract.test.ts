import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ProtocolError } from '@voice/protocol';
import { RequestError } from '../src/errors.js';
import { LeaseKeeper } from '../src/routing/lease-keeper.js';
import { LocalLeaseBackend, LocalLeaseStore } from '../src/routing/local-leases.js';
import { LocalRegistryBackend, LocalNodeRegistry } from '../src/routing/local-registry.js';
import { LocalRequestHub, LocalRequestTransport } from '../src/routing/local-requests.js';
import { RedisLeaseStore } from '../src/routing/redis-leases.js';
import { RedisNodeRegistry } from '../src/routing/redis-registry.js';
import { RedisRequestTransport } from '../src/routing/redis-requests.js';
import { TransportRequestChannel, type RequestTransport } from '../src/routing/request-channel.js';
import type { LeaseHolder, LeaseStore, LiveNode, NodeInfo, NodeRegistry } from '../src/routing/types.js';
import { useTestRedis } from '../../test-support/redis.js';

/*
 * Contract suites of the routing interfaces (registry, leases, addressed requests), each run on the
 * local and the Redis implementation with TWO instances over one backend: one process's
 * announcement, lease or request must be seen by the other.
 */

const { server: testRedis, newPrefix } = useTestRedis();

interface Pair<T> {
  a: T;
  b: T;
}
interface Impl<T> {
  name: string;
  pair(): Promise<Pair<T>>;
}

const registryImpls: Impl<NodeRegistry>[] = [
  {
    name: 'LocalNodeRegistry',
    pair: () => {
      const backend = new LocalRegistryBackend();
      return Promise.resolve({ a: new LocalNodeRegistry(backend), b: new LocalNodeRegistry(backend) });
    },
  },
  {
    name: 'RedisNodeRegistry',
    pair: () => {
      const prefix = newPrefix();
      return Promise.resolve({
        a: new RedisNodeRegistry(testRedis().client(), prefix),
        b: new RedisNodeRegistry(testRedis().client(), prefix),
      });
    },
  },
];

const leaseImpls: Impl<LeaseStore>[] = [
  {
    name: 'LocalLeaseStore',
    pair: () => {
      const backend = new LocalLeaseBackend();
      return Promise.resolve({ a: new LocalLeaseStore(backend), b: new LocalLeaseStore(backend) });
    },
  },
  {
    name: 'RedisLeaseStore',
    pair: () => {
      const prefix = newPrefix();
      return Promise.resolve({
        a: new RedisLeaseStore(testRedis().client(), prefix),
        b: new RedisLeaseStore(testRedis().client(), prefix),
      });
    },
  },
];

/** Makes the transport of one node; transports made by one factory reach each other. */
interface TransportImpl {
  name: string;
  network(): (nodeId: string) => Promise<RequestTransport>;
}
const transportImpls: TransportImpl[] = [
  {
    name: 'LocalRequestTransport',
    network: () => {
      const hub = new LocalRequestHub();
      return (nodeId) => Promise.resolve(new LocalRequestTransport(hub, nodeId));
    },
  },
  {
    name: 'RedisRequestTransport',
    network: () => {
      const prefix = newPrefix();
      return async (nodeId) => {
        const t = new RedisRequestTransport(testRedis().client(), testRedis().client(), prefix, nodeId);
        await t.ready();
        return t;
      };
    },
  },
];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const info = (nodeId: string, channels = 0): NodeInfo => ({
  nodeId,
  wsUrl: `ws://127.0.0.1:1/${nodeId}`,
  udpHost: '127.0.0.1',
  udpPort: 4000,
  load: { channels, members: channels * 3, tickLateMs: 0.2, cpu: 0.1 },
  draining: false,
  updatedAt: 1,
});

describe.each(registryImpls)('NodeRegistry contract: $name', (impl) => {
  let a: NodeRegistry;
  let b: NodeRegistry;
  beforeEach(async () => {
    ({ a, b } = await impl.pair());
  });
  afterEach(async () => {
    await a.close();
    await b.close();
  });

  it("shows each node's announcement to the other, replaced by the newest", async () => {
    await a.announce(info('n1', 1), 5000);
    await b.announce(info('n2', 2), 5000);
    const byId = (l: LiveNode[]) =>
      l.sort((x, y) => x.nodeId.localeCompare(y.nodeId)).map(({ ageMs: _, ...n }) => n);
    expect(byId(await b.live())).toEqual([info('n1', 1), info('n2', 2)]);
    await a.announce({ ...info('n1', 7), draining: true }, 5000);
    expect(await b.get('n1')).toEqual({ ...info('n1', 7), draining: true });
    expect(await b.get('n3')).toBeNull();
  });

  it('forgets a node that stops announcing after its TTL, and one that withdraws at once', async () => {
    await a.announce(info('short'), 300);
    await a.announce(info('gone'), 5000);
    await b.announce(info('stays'), 5000);
    await b.withdraw('gone');
    expect((await a.live()).map((n) => n.nodeId).sort()).toEqual(['short', 'stays']);
    await sleep(500);
    expect((await a.live()).map((n) => n.nodeId)).toEqual(['stays']);
    expect(await b.get('short')).toBeNull();
  });

  it("lists each entry's age by the registry's clock: it grows until the node announces again", async () => {
    const ageOf = async (): Promise<number> => (await b.live()).find((n) => n.nodeId === 'n1')!.ageMs;
    // An age is at most the time since the announcement began (plus Redis's millisecond rounding).
    let t0 = performance.now();
    await a.announce(info('n1'), 5000);
    const fresh = await ageOf();
    expect(fresh).toBeGreaterThanOrEqual(0);
    expect(fresh).toBeLessThanOrEqual(performance.now() - t0 + 2);
    await sleep(400);
    const old = await ageOf();
    // Timers fire late, never early (less the clocks' rounding).
    expect(old).toBeGreaterThanOrEqual(390);
    expect(old).toBeLessThanOrEqual(performance.now() - t0 + 2);
    t0 = performance.now();
    await a.announce(info('n1'), 5000);
    expect(await ageOf()).toBeLessThanOrEqual(performance.now() - t0 + 2);
  });
});

describe('RedisNodeRegistry entry ages', () => {
  it('an entry written without its TTL (a node of the previous version) counts as fresh, not as stale', async () => {
    const prefix = newPrefix();
    const redis = testRedis().client();
    const registry = new RedisNodeRegistry(redis, prefix);
    await redis
      .multi()
      .set(`${prefix}node:old`, JSON.stringify(info('old')), 'PX', 5000)
      .sadd(`${prefix}nodes`, 'old')
      .exec();
    await registry.announce(info('new'), 5000);
    await sleep(300);
    const ages = new Map((await registry.live()).map((n) => [n.nodeId, n.ageMs]));
    expect(ages.get('old')).toBe(0);
    expect(ages.get('new')).toBeGreaterThanOrEqual(290);
    expect(await registry.get('new')).toEqual(info('new'));
  });
});

describe.each(leaseImpls)('LeaseStore contract: $name', (impl) => {
  let a: LeaseStore;
  let b: LeaseStore;
  beforeEach(async () => {
    ({ a, b } = await impl.pair());
  });
  afterEach(async () => {
    await a.close();
    await b.close();
  });

  it('grants a raced lease to exactly one of many acquirers on two instances', async () => {
    const tries = Array.from({ length: 16 }, (_, i) => (i % 2 ? b : a).acquire('chan-x', `node-${i}`, 5000));
    const won = (await Promise.all(tries)).filter((h): h is LeaseHolder => h !== null);
    expect(won).toHaveLength(1);
    expect(await a.holder('chan-x')).toEqual(won[0]);
    expect(await b.holder('chan-x')).toEqual(won[0]);
    // Even the winner cannot take it a second time.
    expect(await b.acquire('chan-x', won[0]!.nodeId, 5000)).toBeNull();
  });

  it('renews and releases only for the exact holder (compare-and-set)', async () => {
    const h = (await a.acquire('r', 'n1', 5000))!;
    expect(h.nodeId).toBe('n1');
    expect(await b.renew('r', { nodeId: 'n2', token: h.token }, 5000)).toBe(false);
    expect(await b.renew('r', { nodeId: 'n1', token: h.token + 1 }, 5000)).toBe(false);
    expect(await b.release('r', { nodeId: 'n2', token: h.token })).toBe(false);
    expect(await b.renew('r', h, 5000)).toBe(true);
    expect(await b.holder('r')).toEqual(h);
    expect(await b.release('r', h)).toBe(true);
    expect(await a.holder('r')).toBeNull();
    expect(await a.renew('r', h, 5000)).toBe(false);
  });

  it('expires an unrenewed lease; the next holder gets a larger fencing token; the old one cannot renew', async () => {
    const first = (await a.acquire('r', 'n1', 200))!;
    expect(await b.acquire('r', 'n2', 200)).toBeNull();
    await sleep(350);
    expect(await b.holder('r')).toBeNull();
    const second = (await b.acquire('r', 'n2', 5000))!;
    expect(second.token).toBeGreaterThan(first.token);
    expect(await a.renew('r', first, 5000)).toBe(false);
    expect(await a.release('r', first)).toBe(false);
    expect(await a.holder('r')).toEqual(second);
    // Release, then a new acquire: tokens keep increasing.
    await b.release('r', second);
    const third = (await a.acquire('r', 'n1', 5000))!;
    expect(third.token).toBeGreaterThan(second.token);
  });

  it('LeaseKeeper keeps a lease alive past its TTL by renewing, and gives it back on release', async () => {
    const keeper = (await LeaseKeeper.acquire(a, 'k', 'n1', { ttlMs: 300, onLost: () => {} }))!;
    await sleep(700);
    expect(keeper.held).toBe(true);
    expect(await b.holder('k')).toEqual(keeper.holder);
    expect(await LeaseKeeper.acquire(b, 'k', 'n2', { ttlMs: 300, onLost: () => {} })).toBeNull();
    await keeper.release();
    await keeper.release();
    expect(await b.holder('k')).toBeNull();
  });

  it('LeaseKeeper reports the loss once when another node took the lease', async () => {
    const lost: LeaseHolder[] = [];
    // Renewing slower than the TTL lets the lease lapse so that b can take it.
    const keeper = (await LeaseKeeper.acquire(a, 'k', 'n1', {
      ttlMs: 150,
      renewMs: 450,
      onLost: (h) => lost.push(h),
    }))!;
    await vi.waitFor(async () => expect(await b.acquire('k', 'n2', 5000)).not.toBeNull(), {
      timeout: 2000,
      interval: 20,
    });
    await vi.waitFor(() => expect(lost).toHaveLength(1), { timeout: 2000 });
    expect(keeper.held).toBe(false);
    expect(lost[0]!.nodeId).toBe('n1');
    expect((await a.holder('k'))!.token).toBeGreaterThan(lost[0]!.token);
    await sleep(500);
    expect(lost).toHaveLength(1);
  });
});

describe.each(transportImpls)('RequestChannel contract over $name', (impl) => {
  let network: (nodeId: string) => Promise<RequestTransport>;
  const open: TransportRequestChannel[] = [];
  const node = async (nodeId: string, opts: { timeoutMs?: number; maxPending?: number } = {}) => {
    const ch = new TransportRequestChannel({ nodeId, transport: await network(nodeId), ...opts });
    open.push(ch);
    return ch;
  };
  beforeEach(() => {
    network = impl.network();
  });
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  it('delivers a request to the addressed node only and returns its reply, with the sender', async () => {
    const a = await node('a');
    const b = await node('b');
    const c = await node('c');
    const seenByC: string[] = [];
    c.handle((op) => {
      seenByC.push(op);
      return Promise.resolve(null);
    });
    b.handle((op, args, from) => {
      const { i, bytes } = args as { i: number; bytes: Uint8Array };
      return Promise.resolve({ op, i, bytes: [...bytes], from, at: 'b' });
    });
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => a.request('b', 'echo', { i, bytes: new Uint8Array([i, 1]) })),
    );
    replies.forEach((r, i) => expect(r).toEqual({ op: 'echo', i, bytes: [i, 1], from: 'a', at: 'b' }));
    expect(seenByC).toEqual([]);
    expect(a.pending).toBe(0);
  });

  it('carries a protocol error code back as a ProtocolError, other codes as REMOTE', async () => {
    const a = await node('a');
    const b = await node('b');
    b.handle((op) => {
      if (op === 'full') throw new ProtocolError('CHANNEL_FULL', 'the channel is full (2 members)');
      if (op === 'nested') throw new RequestError('TIMEOUT', 'the owner did not answer');
      throw new Error('handler bug');
    });
    const full = await a.request('b', 'full', null).catch((e: unknown) => e);
    expect(full).toBeInstanceOf(ProtocolError);
    expect(full).toMatchObject({ code: 'CHANNEL_FULL', message: 'the channel is full (2 members)' });
    const nested = await a.request('b', 'nested', null).catch((e: unknown) => e);
    expect(nested).toBeInstanceOf(RequestError);
    expect(nested).toMatchObject({
      code: 'REMOTE',
      remoteCode: 'TIMEOUT',
      message: 'the owner did not answer',
    });
    // A bug without a code reaches the client as INTERNAL.
    const bug = await a.request('b', 'bug', null).catch((e: unknown) => e);
    expect(bug).toBeInstanceOf(ProtocolError);
    expect(bug).toMatchObject({ code: 'INTERNAL', message: 'handler bug' });
  });

  it('fails at once for a node nobody listens for, and by timeout for one that does not answer', async () => {
    const a = await node('a', { timeoutMs: 200 });
    const b = await node('b');
    const t0 = Date.now();
    await expect(a.request('nobody', 'x', null)).rejects.toMatchObject({ code: 'UNREACHABLE' });
    expect(Date.now() - t0).toBeLessThan(150);
    b.handle(() => new Promise(() => {}));
    await expect(a.request('b', 'x', null)).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(a.pending).toBe(0);
  });

  it('tells whether a node listens, without sending it anything; a closed node stops listening at once', async () => {
    const a = await node('a');
    const b = await node('b');
    const seen: string[] = [];
    b.handle((op) => {
      seen.push(op);
      return Promise.resolve(null);
    });
    expect(await a.reachable('b')).toBe(true);
    expect(await a.reachable('nobody')).toBe(false);
    await b.close();
    expect(await a.reachable('b')).toBe(false);
    expect(seen).toEqual([]);
  });

  it('answers UNAVAILABLE from a node without a handler', async () => {
    const a = await node('a');
    await node('b');
    await expect(a.request('b', 'x', null)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });

  it('bounds the pending requests: over the limit fails with OVERLOADED, never queues', async () => {
    const a = await node('a', { maxPending: 3, timeoutMs: 5000 });
    const b = await node('b');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    b.handle(async (op) => {
      await gate;
      return op;
    });
    const held = ['1', '2', '3'].map((op) => a.request('b', op, null));
    await expect(a.request('b', '4', null)).rejects.toMatchObject({ code: 'OVERLOADED' });
    release();
    expect(await Promise.all(held)).toEqual(['1', '2', '3']);
    expect(await a.request('b', '5', null)).toBe('5');
  });

  it('close fails pending requests with CLOSED and is idempotent', async () => {
    const a = await node('a');
    const b = await node('b');
    b.handle(() => new Promise(() => {}));
    const p = a.request('b', 'x', null).catch((e: unknown) => e);
    await a.close();
    await a.close();
    expect(await p).toMatchObject({ code: 'CLOSED' });
    await expect(a.request('b', 'x', null)).rejects.toBeInstanceOf(RequestError);
  });
});
